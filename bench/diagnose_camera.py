"""Why does a checkpoint learn no camera motion? Four measurements (issue 12, item 1).

    .venv/bin/python bench/diagnose_camera.py --ckpt src/mem4d/weights/default --json diag.json

1. **Gradient share**: on training-like clips, the gradient norm each loss term sends to each
   component (camera head, camera token, decoder, TDM, PSM, TCA, DPT heads, encoder).
2. **PSM readout zeroed**: the same held-out scenes with the spatial memory withheld from the
   decoder; how much depth, world points and poses change.
3. **Where the camera token looks**: the camera token's attention mass on the current frame's
   tokens, on itself and on the memory tokens (TDM in the MotionReadBlock, PSM in the
   SpatialReadBlock), per block.
4. **Is the motion in there?** Ridge probes from features of frame t to the ground-truth
   motion from frame t-1 to t (translation / s, rotation vector): the final camera token, the
   mean-pooled TDM tokens of the last frame, the raw correlation lookups, the encoder
   features (a control). R^2 on held-out clips; 0 means the feature says nothing about motion.

Everything runs the network with ``pose_refinement`` off: these are the network's own figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from mem4d.data.synthetic import make_scene
from mem4d.geometry.rotation import matrix_to_axis_angle
from mem4d.geometry.se3 import cam_a2cam_b
from mem4d.layers import attention as attention_module
from mem4d.layers.corr import corr_features
from mem4d.losses.objective import Mem4DObjective, Targets
from mem4d.model.mem4d import Mem4D

GROUPS = ("camera_head", "camera_token", "decoder", "tdm", "psm", "tca", "head_world", "head_cam", "motion_head",
          "encoder", "proj")


def _load(path: str) -> Mem4D:
    model = Mem4D.from_pretrained(path)
    if model.config.heads.pose_refinement != "none":
        cfg = replace(model.config, heads=replace(model.config.heads, pose_refinement="none"))
        weights = model.state_dict()
        model = Mem4D(cfg)
        model.load_state_dict(weights)
    return model


def _clip(seed: int, frames: int, size: tuple[int, int], speed: float, loop_frames: int | None = 48):
    return make_scene(seed, frames, image_size=size, dynamic=True, camera_speed=speed, loop_frames=loop_frames)


def gradient_share(model: Mem4D, size, clips: int, seed: int) -> dict:
    """Per loss term, the gradient norm reaching each parameter group (summed over clips)."""
    model.train()
    objective = Mem4DObjective()
    params = {g: [p for n, p in model.named_parameters() if n.split(".")[0] == g and p.requires_grad] for g in GROUPS}
    sums: dict[str, dict[str, float]] = {}
    rng = np.random.default_rng(seed)
    for c in range(clips):
        s = _clip(seed + c, int(rng.integers(6, 15)), size, float(rng.uniform(1, 3)))
        pred = model(s.images[None])
        _, terms = objective(pred, Targets.from_samples([s]))
        for name, value in terms.items():
            if name == "total" or not value.requires_grad:
                continue
            row = sums.setdefault(name, {g: 0.0 for g in GROUPS})
            for g, ps in params.items():
                if not ps:
                    continue
                grads = torch.autograd.grad(value, ps, retain_graph=True, allow_unused=True)
                row[g] += math.sqrt(sum(float((x * x).sum()) for x in grads if x is not None))
    model.eval()
    return {k: {g: v / clips for g, v in row.items()} for k, row in sums.items()}


def _run(model: Mem4D, images: torch.Tensor, zero_psm: bool):
    psm = model.psm
    if zero_psm:
        model.psm = None  # the decoder's SpatialReadBlocks fall back to self-attention
    try:
        with torch.no_grad():
            return model(images[None])
    finally:
        model.psm = psm


def psm_ablation(model: Mem4D, size, scenes: int, frames: int, seed: int) -> dict:
    """Relative change of depth / world points / camera centres when the PSM readout is withheld."""
    d_depth, d_world, d_trans, ate = [], [], [], []
    from mem4d.eval.metrics import pose_metrics

    for i in range(scenes):
        s = make_scene(seed + i, frames, image_size=size, dynamic=True)
        a, b = _run(model, s.images, False), _run(model, s.images, True)
        d_depth.append(float(((a.depth - b.depth).abs() / a.depth.abs().clamp_min(1e-6)).median()))
        d_world.append(float((a.pts_world - b.pts_world).norm(dim=-1).median() / a.pts_world.norm(dim=-1).median()))
        d_trans.append(float((a.translation - b.translation).norm(dim=-1).mean()))
        ate.append((pose_metrics(a.cam2world[0].double(), s.cam2world.double())["ate"],
                    pose_metrics(b.cam2world[0].double(), s.cam2world.double())["ate"]))
    return {"depth_rel_change_median": float(np.mean(d_depth)), "world_rel_change_median": float(np.mean(d_world)),
            "camera_centre_change_m": float(np.mean(d_trans)), "ate_with_psm": float(np.mean([x[0] for x in ate])),
            "ate_without_psm": float(np.mean([x[1] for x in ate]))}


@contextlib.contextmanager
def _record_attention(store: list):
    """Records, for every attention call, the last query row's softmax weights (the camera token)."""
    original = F.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        w = torch.softmax((q[..., -1:, :] @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)  # (B, h, 1, M)
        store.append((q.shape[-2], w[..., 0, :].mean(dim=(0, 1))))
        return original(q, k, v, *args, **kwargs)

    attention_module.F.scaled_dot_product_attention = recording
    try:
        yield
    finally:
        attention_module.F.scaled_dot_product_attention = original


def camera_attention(model: Mem4D, size, scenes: int, frames: int, seed: int) -> dict:
    """Mean attention mass of the camera token on frame tokens / itself / memory, per decoder block."""
    blocks = [blk for pair in zip(model.decoder.motion_blocks, model.decoder.spatial_blocks) for blk in pair]
    names = [f"{type(b).__name__}[{i // 2}]" for i, b in enumerate(blocks)]
    acc = {n: np.zeros(3) for n in names}
    count = {n: 0 for n in names}
    for i in range(scenes):
        s = make_scene(seed + i, frames, image_size=size, dynamic=True)
        state = model.init_state(1, size)
        for t in range(frames):
            store: list = []
            hooks = [b.attn.register_forward_pre_hook(lambda m, a, n=n: store.append(n)) for b, n in zip(blocks, names)]
            with torch.no_grad(), _record_attention(store):
                _, state = model.step(s.images[t][None], state)
            for h in hooks:
                h.remove()
            # store holds: name, (nq, weights) pairs for decoder blocks (other attention calls have no name before them)
            for j, item in enumerate(store):
                if isinstance(item, str) and t > 0:
                    nq, w = store[j + 1]
                    acc[item] += np.array([float(w[: nq - 1].sum()), float(w[nq - 1]), float(w[nq:].sum())])
                    count[item] += 1
    return {n: dict(zip(("frame_tokens", "itself", "memory"), (acc[n] / max(count[n], 1)).round(4).tolist()))
            for n in names}


def _features(model: Mem4D, s) -> list[dict[str, np.ndarray]]:
    """Per frame t >= 1: candidate features and the ground-truth motion t-1 -> t."""
    from mem4d.losses.pointmap import gt_scale

    tgt = Targets.from_samples([s])
    scale = float(gt_scale(tgt.pts_world, tgt.valid)[0])
    rows, caught = [], {}
    decoder_forward = model.decoder.forward

    def keep_stages(*args, **kwargs):
        stages = decoder_forward(*args, **kwargs)
        caught["cam"] = stages[-1][0, -1]
        return stages

    model.decoder.forward = keep_stages
    tdm_forward = model.tdm.forward

    def keep_tdm(current, past, grid):
        out = tdm_forward(current, past, grid)
        if out is not None:
            N = current.shape[1]
            caught["tdm"] = out[0][0, :N].mean(0)
            caught["corr"] = corr_features(current, past[-1], grid, model.tdm.levels, model.tdm.radius)[0].mean(0)
            caught["enc"] = current[0].mean(0)
        return out

    model.tdm.forward = tdm_forward if model.tdm is None else keep_tdm
    try:
        state = model.init_state(1, s.image_size)
        with torch.no_grad():
            for t in range(s.num_frames):
                _, state = model.step(s.images[t][None], state)
                if t == 0:
                    continue
                rel = cam_a2cam_b(s.cam2world[t][None].double(), s.cam2world[t - 1][None].double())[0]  # cam t -> cam t-1
                target = np.concatenate([rel[:3, 3].numpy() / scale, matrix_to_axis_angle(rel[:3, :3]).numpy()])
                rows.append({k: v.double().numpy() for k, v in caught.items()} | {"target": target})
    finally:
        model.decoder.forward = decoder_forward
        model.tdm.forward = tdm_forward
    return rows


def _ridge_r2(xtr, ytr, xte, yte, lam: float) -> np.ndarray:
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    ym = ytr.mean(0)
    A = xtr.T @ xtr + lam * np.eye(xtr.shape[1])
    W = np.linalg.solve(A, xtr.T @ (ytr - ym))
    pred = xte @ W + ym
    return 1 - ((yte - pred) ** 2).sum(0) / ((yte - yte.mean(0)) ** 2).sum(0)


def motion_probe(model: Mem4D, size, clips: int, frames: int, seed: int) -> dict:
    """R^2 of ridge probes (features -> motion t-1 -> t), fit on 3/4 of the clips, tested on the rest."""
    model.eval()
    rng = np.random.default_rng(seed)
    per_clip = [_features(model, _clip(seed + c, frames, size, float(rng.uniform(1, 3)))) for c in range(clips)]
    split = clips * 3 // 4
    out = {}
    for key in ("cam", "tdm", "corr", "enc"):
        xtr = np.stack([r[key] for rows in per_clip[:split] for r in rows])
        ytr = np.stack([r["target"] for rows in per_clip[:split] for r in rows])
        xte = np.stack([r[key] for rows in per_clip[split:] for r in rows])
        yte = np.stack([r["target"] for rows in per_clip[split:] for r in rows])
        best = max((_ridge_r2(xtr, ytr, xte, yte, lam) for lam in (1.0, 10.0, 100.0, 1000.0)), key=lambda r: r.mean())
        out[key] = {"translation_r2": best[:3].round(3).tolist(), "rotation_r2": best[3:].round(3).tolist(),
                    "mean_r2": round(float(best.mean()), 3)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default="src/mem4d/weights/default")
    ap.add_argument("--size", default="96x128", help="HxW")
    ap.add_argument("--grad-clips", type=int, default=6)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--probe-clips", type=int, default=80)
    ap.add_argument("--seed", type=int, default=5_000_000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default="grad,psm,attn,probe")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    model = _load(args.ckpt)
    only = set(args.only.split(","))
    report: dict = {"ckpt": args.ckpt, "size": list(size)}
    if "grad" in only:
        report["gradient_share"] = gradient_share(model, size, args.grad_clips, args.seed)
        print("gradient norm per term (rows) and component (columns)")
        cols = [g for g in GROUPS if any(r[g] for r in report["gradient_share"].values())]
        print("term".ljust(12) + "".join(c[:11].rjust(12) for c in cols))
        for term, row in report["gradient_share"].items():
            print(term.ljust(12) + "".join(f"{row[c]:12.4f}" for c in cols))
    model.eval()
    if "psm" in only and model.psm is not None:
        report["psm_zeroed"] = psm_ablation(model, size, args.scenes, 48, args.seed + 100)
        print("PSM readout withheld:", report["psm_zeroed"])
    if "attn" in only:
        report["camera_token_attention"] = camera_attention(model, size, args.scenes, args.frames, args.seed + 200)
        print("camera token attention mass:", json.dumps(report["camera_token_attention"]))
    if "probe" in only and model.tdm is not None:
        report["motion_probe_r2"] = motion_probe(model, size, args.probe_clips, 8, args.seed + 300)
        print("motion probes (R^2, held-out clips):", json.dumps(report["motion_probe_r2"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
