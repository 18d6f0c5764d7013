"""`mem4d demo`: the day-one demo. Renders a synthetic dynamic scene, reconstructs it with Mem4D and
scores the result against the scene's ground truth, with an HTML report.

    mem4d demo                          # -> demo_out/report.html (about a minute on a laptop CPU)
    mem4d demo --ckpt runs/ship/final   # a model you trained
    mem4d demo --out d --frames 16 --size 64 --overwrite   # 48x64 (HxW)

1. A synthetic scene (fixed seed, hand-held moving camera, three moving objects) is rendered;
   its frames are the input (``frames/``), its depth, moving-pixel masks and camera path the
   ground truth (``depth/``, ``dynamic_mask/``, ``camera_path.png``, ``overview.png``, ``scene.json``).
2. With a model (``--ckpt DIR``, or the shipped ``default`` when this install has it) the frames
   are streamed through `mem4d reconstruct` into ``reconstruction/`` (every output it writes:
   depth, pointmaps, trajectory.txt, static.ply, scene.glb, COLMAP, transforms.json, ...), which
   is scored against the ground truth next to the evaluation harness's no-information baselines
   (`mem4d.demo.evaluate`); the table is printed and saved (``metrics.json``).
3. Without a model (an install whose package data lacks the shipped weights) the demo shows the
   ground truth only and says how to train one.

``report.html`` (self-contained: images embedded) shows the frames, depth, motion, the camera
trajectory and the table; ``mem4d view OUT/reconstruction`` opens the 3D viewer.

Output folder: everything is written to a hidden temporary folder beside ``--out`` and renamed
into place at the end, so a failure or Ctrl-C leaves the previous result untouched. An existing
``--out`` is replaced without asking when it is empty or is an earlier ``mem4d demo`` result (so
``make demo`` can be rerun); any other existing folder needs ``--overwrite``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mem4d.cli.output_dir import check_writable
from mem4d.cli.sizes import SIZE_HELP_SYNTHETIC, format_hw
from mem4d.cli.synth import parse_size
from mem4d.cli.threads import add_threads_argument

PROG = "mem4d demo"
MARKER = "demo.json"  # written last; marks a folder as a demo result that a rerun may replace
SCENE_KNOBS = {"num_objects": 3, "camera_path": "handheld"}
TRAIN_HINT = ("mem4d train --config configs/ship-tiny.yaml --out runs/ship", "mem4d demo --ckpt runs/ship/final")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="render a synthetic dynamic scene, reconstruct it with Mem4D and score it (HTML report)",
        description="Renders a synthetic dynamic scene (walkers, moving objects, a hand-held camera), writes its "
        "frames and ground truth (depth, moving-pixel masks, camera path) to --out, reconstructs it with Mem4D "
        "(--ckpt, or the shipped model when there is one) into --out/reconstruction, scores depth and camera "
        "poses against the ground truth and no-information baselines, and writes --out/report.html. Without a "
        "model it shows the ground truth only. An earlier demo result in --out is replaced; any other existing "
        "non-empty folder needs --overwrite.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out/)")
    parser.add_argument("--ckpt", default=None, metavar="DIR",
                        help="model folder written by save_pretrained (e.g. runs/ship/final), or 'default' for the "
                        "shipped model (default: the shipped model if this install has one, else ground truth only)")
    parser.add_argument("--no-model", action="store_true", help="show the ground truth only, even if a model exists")
    parser.add_argument("--frames", type=int, default=32, help="number of frames (default 32)")
    parser.add_argument("--size", default="128",
                        help=f"image size: {SIZE_HELP_SYNTHETIC} (default 128: 96x128, the shipped model's training "
                        "size); with a model both sides must be multiples of its patch size (16)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, ...")
    add_threads_argument(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even if it is not an earlier demo result")
    parser.set_defaults(run=run)
    return parser


# ----------------------------------------------------------------------------------------------
# figures of the ground truth (unchanged from the ground-truth-only demo)
# ----------------------------------------------------------------------------------------------


def camera_plot(sample, path: Path):
    """Top view (x right, z forward of the first camera) of camera centres, view directions and points,
    saved to ``path``; returns the matplotlib Figure. The legend, one entry per moving object in its
    colour, sits beside the axes so that it covers no data."""
    import math

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mem4d.data.synthetic import world_pointmap

    c2w = sample.cam2world.double().numpy()
    centres = c2w[:, :3, 3]
    pts = world_pointmap(sample).numpy()
    valid = sample.valid.numpy()
    dyn = sample.dynamic_mask.numpy()
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(9.5, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    static = pts[valid & ~dyn]
    if len(static):
        sub = static[rng.choice(len(static), size=min(len(static), 20000), replace=False)]
        sub = sub[np.linalg.norm(sub - centres.mean(0), axis=-1) < 25.0]
        ax.scatter(sub[:, 0], sub[:, 2], s=0.4, color="0.45", alpha=0.35, linewidths=0, label="static scene points")
    moving = pts[valid & dyn]
    ids = sample.instance_ids.numpy()[valid & dyn]
    if len(moving):
        from matplotlib import colormaps

        pick = rng.choice(len(moving), size=min(len(moving), 6000), replace=False)
        colours = colormaps["tab10"]
        kinds = list(sample.meta.get("object_kinds", []))  # instance k (1, 2, ...) is the k-th object
        for k, obj in enumerate(np.unique(ids[pick])):  # one legend entry per object, in its own colour
            sel = pick[ids[pick] == obj]
            kind = f" ({kinds[int(obj) - 1]})" if 1 <= int(obj) <= len(kinds) else ""
            ax.scatter(moving[sel, 0], moving[sel, 2], s=1.0, color=colours(k % 10), linewidths=0,
                       label=f"moving object {int(obj)}{kind}, all frames")
    ax.plot(centres[:, 0], centres[:, 2], "-", color="tab:blue", lw=1.5, label="camera path")
    K = sample.intrinsics[0].double().numpy()
    W = sample.image_size[1]
    half = math.atan((W / 2) / K[0, 0])
    span = np.concatenate([centres[:, [0, 2]], static[:, [0, 2]] if len(static) else centres[:, [0, 2]]])
    extent = 0.06 * float(np.percentile(span, 95, axis=0).max() - np.percentile(span, 5, axis=0).min() + 1.0)
    every = max(1, len(c2w) // 12)
    for t in range(0, len(c2w), every):
        R, c = c2w[t, :3, :3], centres[t]
        for sx in (-1, 1):
            ray = R @ np.array([sx * math.tan(half), 0.0, 1.0])
            ray = ray / np.linalg.norm(ray[[0, 2]])
            ax.plot(
                [c[0], c[0] + extent * ray[0]],
                [c[2], c[2] + extent * ray[2]],
                color="tab:orange",
                lw=0.8,
                label="view frustum (every few frames)" if t == 0 and sx < 0 else None,
            )
        fwd = R[:, 2] / max(np.linalg.norm(R[[0, 2], 2]), 1e-9)
        ax.plot(
            [c[0], c[0] + 1.3 * extent * fwd[0]],
            [c[2], c[2] + 1.3 * extent * fwd[2]],
            color="tab:red",
            lw=1.0,
            label="viewing direction" if t == 0 else None,
        )
    ax.scatter(centres[:1, 0], centres[:1, 2], color="k", s=20, zorder=5, label="frame 0")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, right of the first camera)")
    ax.set_ylabel("z (m, forward of the first camera)")
    m = sample.meta
    ax.set_title(f"{m.get('environment')} / {m.get('camera_path')} camera, {m.get('num_objects')} moving object(s)")
    legend = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, borderaxespad=0.0)  # beside the data
    for handle in legend.legend_handles:
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([16.0])
            handle.set_alpha(1.0)
    fig.tight_layout()
    fig.savefig(path)
    return fig


def _overview(frames, depth_rgb, masks, path: Path) -> None:
    import numpy as np
    from PIL import Image

    T = len(frames)
    picks = sorted({0, T // 3, (2 * T) // 3, T - 1})
    rows = []
    for t in picks:
        mask_rgb = np.repeat(masks[t][..., None], 3, axis=-1)
        tinted = frames[t].copy()
        tinted[masks[t] > 0] = (0.5 * tinted[masks[t] > 0] + 0.5 * np.array([255, 40, 40])).astype(np.uint8)
        rows.append(np.concatenate([frames[t], depth_rgb[t], tinted, mask_rgb], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def _is_demo_result(path: Path) -> bool:
    if (path / MARKER).is_file():
        return True
    # written by the ground-truth-only demo of earlier versions (no marker)
    return (path / "scene.json").is_file() and (path / "camera_path.png").is_file() and (path / "frames").is_dir()


def _check_out(out: Path, overwrite: bool) -> None:
    if out.is_symlink() and not out.exists():
        raise ValueError(f"--out {out} is a broken link; choose another folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; choose another path")
    if overwrite or _is_demo_result(out) or not any(out.iterdir()):
        return
    raise ValueError(f"--out {out} exists, is not empty and is not an earlier demo result; pass --overwrite to "
                     "replace it, or choose another folder")


def _resolve_ckpt(args: argparse.Namespace) -> str | None:
    """The checkpoint to use, or None for the ground-truth-only demo."""
    from mem4d.model import pretrained

    if args.no_model:
        if args.ckpt is not None:
            raise ValueError("give either --ckpt or --no-model, not both")
        return None
    if args.ckpt is not None:
        return str(args.ckpt)
    return "default" if (pretrained.DEFAULT_DIR / pretrained.WEIGHTS_NAME).is_file() else None


def _replace_dir(tmp: Path, out: Path) -> None:
    from mem4d.cli.output_dir import replace_dir

    replace_dir(tmp, out)


def _ground_truth(sample, out: Path) -> dict[str, Any]:
    """Writes frames/, depth/, dynamic_mask/, camera_path.png, overview.png, scene.json; returns arrays."""
    import numpy as np
    from PIL import Image

    from mem4d.demo.report import colourise_depth

    for sub in ("frames", "depth", "dynamic_mask"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    frames = (sample.images.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    depth = sample.depth.numpy()
    valid = sample.valid.numpy()
    lo, hi = np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    masks = sample.dynamic_mask.numpy().astype(np.uint8) * 255
    depth_rgb = []
    for t in range(sample.num_frames):
        name = f"{t:06d}"
        Image.fromarray(frames[t]).save(out / "frames" / f"{name}.png")
        np.save(out / "depth" / f"{name}.npy", depth[t].astype(np.float32))
        depth_rgb.append(colourise_depth(depth[t], valid[t], float(lo), float(hi)))
        Image.fromarray(depth_rgb[-1]).save(out / "depth" / f"{name}.png")
        Image.fromarray(masks[t]).save(out / "dynamic_mask" / f"{name}.png")
    camera_plot(sample, out / "camera_path.png")
    _overview(frames, depth_rgb, masks, out / "overview.png")
    info = {k: v for k, v in sample.meta.items()}
    info["depth_colour_range_m"] = [float(lo), float(hi)]
    (out / "scene.json").write_text(json.dumps(info, indent=1, default=str))
    return {"frames": frames, "depth": depth, "valid": valid, "masks": masks, "depth_rgb": depth_rgb,
            "lo": float(lo), "hi": float(hi)}


def _reconstruct(frames_dir: Path, recon: Path, ckpt: str, size: int, device: str,
                 threads: int | None) -> dict[str, Any]:
    """Runs `mem4d reconstruct` in-process (its engine, writers and atomic output); returns meta.json."""
    from mem4d.cli import reconstruct

    parser = argparse.ArgumentParser(prog="mem4d")
    reconstruct.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["reconstruct", str(frames_dir), "--out", str(recon), "--ckpt", ckpt,
                              "--size", str(size), "--device", device, "--no-progress",
                              "--threads", "auto" if threads is None else str(threads)])
    log = io.StringIO()
    try:  # its messages name the demo's temporary folder; its warnings are passed on, our summary follows
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(log):
            rc = reconstruct.run(args)
    finally:
        for line in log.getvalue().splitlines():
            if "warning:" in line:
                print(line, file=sys.stderr)
    if rc == 130:
        raise KeyboardInterrupt
    if rc != 0:
        raise ValueError(f"the reconstruction failed (exit code {rc})")
    return json.loads((recon / "meta.json").read_text())


def _check_model(ckpt: str, H: int, W: int) -> dict[str, Any]:
    """Loads the model once to fail early (exit 2) on a bad --ckpt or a size it cannot take."""
    from mem4d.cli.reconstruct import load_model

    try:
        model = load_model(ckpt, "cpu")
    except ValueError as err:
        if ckpt == "default":
            raise ValueError(f"{err}. Train one: {TRAIN_HINT[0]}, then {TRAIN_HINT[1]}") from err
        raise
    patch = int(model.config.encoder.patch_size)
    if H % patch or W % patch or min(H, W) < 32:
        raise ValueError(f"--size {format_hw(H, W)} (HxW): with a model both sides must be multiples of its patch "
                         f"size {patch} and at least 32 (e.g. --size 128, which is 96x128)")
    return {"patch_size": patch, "image_size": list(model.config.image_size), "variant": model.config.variant,
            "dim": model.config.dim}


def run(args: argparse.Namespace) -> int:
    H, W = parse_size(args.size)
    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2, got {args.frames}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    out: Path = args.out.expanduser()
    _check_out(out, args.overwrite)
    check_writable(out)
    ckpt = _resolve_ckpt(args)
    model_info = _check_model(ckpt, H, W) if ckpt is not None else None

    import matplotlib

    matplotlib.use("Agg")

    from mem4d.data.synthetic import make_scene

    start = time.perf_counter()
    sample = make_scene(args.seed, args.frames, (H, W), dynamic=True, **SCENE_KNOBS)
    gen_time = time.perf_counter() - start
    T = sample.num_frames
    m = sample.meta
    scene_text = (f"Synthetic {m['environment']} scene (seed {args.seed}), {m['camera_path']} camera, "
                  f"{m['num_objects']} moving object(s) ({', '.join(m['object_kinds'])}); {T} frames at "
                  f"{format_hw(H, W)} (HxW).")
    print(f"{PROG}: {scene_text[0].lower()}{scene_text[1:-1]}, rendered in {gen_time:.1f} s")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as err:
        raise ValueError(f"--out {out}: cannot write in {out.parent} ({err.strerror or err}); choose a folder you "
                         "can write to") from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
        gt = _ground_truth(sample, tmp)
        result: dict[str, Any] = {"format": "mem4d.demo/1", "seed": args.seed, "frames": T, "size": [H, W],
                                  "scene": SCENE_KNOBS, "ckpt": ckpt, "model": model_info,
                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if ckpt is not None:
            print(f"{PROG}: reconstructing with the model {'shipped with mem4d' if ckpt == 'default' else ckpt} ...",
                  flush=True)
            meta = _reconstruct(tmp / "frames", tmp / "reconstruction", ckpt, max(H, W), args.device, args.threads)
            result.update(_score_and_report(sample, gt, tmp, meta, scene_text, out))
        else:
            _ground_truth_report(sample, gt, tmp, scene_text, args.no_model)
        (tmp / MARKER).write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    elapsed = time.perf_counter() - start
    _print_summary(out, T, ckpt, result, elapsed, args.no_model)
    return 0


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _json_default(o: Any) -> Any:
    import math

    if isinstance(o, float) and not math.isfinite(o):
        return None
    return str(o)


def _finite(o: Any) -> Any:
    import math

    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_finite(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def viewer_available() -> bool:
    """Whether `mem4d view` can run here (the viewer extra, viser, is installed)."""
    import importlib.util

    return importlib.util.find_spec("viser") is not None


def _viewer_html(out: Path, files: list[str]) -> str:
    import html

    recon = html.escape(str(out / "reconstruction"))
    needs = "" if viewer_available() else " (needs the viewer extra: <code>pip install 'mem4d[viewer]'</code>)"
    written = " ".join(f"<code>{html.escape(f)}</code>" for f in files)
    return (f"<p>Explore the reconstruction in 3D: <code>mem4d view {recon}</code> and open the printed address"
            f"{needs}. What the reconstruction wrote to <code>{recon}</code>: {written} "
            "(docs/OUTPUTS.md describes each).</p>")


def _score_and_report(sample, gt: dict[str, Any], tmp: Path, meta: dict[str, Any], scene_text: str,
                      out: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from mem4d.demo.evaluate import evaluate, format_table, load_prediction, motion_summary
    from mem4d.demo.report import (
        build_report,
        colourise_depth,
        depth_colourbar_png,
        grey,
        pick_frames,
        trajectory_png,
    )
    from mem4d.eval.metrics import PoseAlignmentError, align_trajectory, resize_depth

    T = sample.num_frames
    pred = load_prediction(tmp / "reconstruction", T)
    rows = evaluate(pred, sample)
    (tmp / "metrics.json").write_text(json.dumps(_finite(rows), indent=1) + "\n")
    table = format_table(rows)

    depth = resize_depth(torch.from_numpy(pred.depth), tuple(gt["depth"].shape[-2:])).numpy()
    scale = rows[0].get("depth_scale")
    scale = scale if scale is not None and np.isfinite(scale) else 1.0
    try:
        aligned, _, _, _ = align_trajectory(pred.cam2world, sample.cam2world.double(), "sim3")
        aligned_np: np.ndarray | None = aligned.numpy()
    except PoseAlignmentError:
        aligned_np = None
    strips = []
    for t in pick_frames(T):
        ok = np.isfinite(depth[t]) & (depth[t] > 0)
        cells = [gt["frames"][t], gt["depth_rgb"][t], colourise_depth(scale * depth[t], ok, gt["lo"], gt["hi"])]
        if pred.dynamic is not None:
            dyn = resize_depth(torch.from_numpy(pred.dynamic[t][None]), tuple(gt["depth"].shape[-2:]))[0].numpy()
            cells.append(grey(dyn))
        cells.append(grey(gt["masks"][t] / 255.0))
        strips.append((t, cells))
    columns = ["input frame", "true depth", "predicted depth (scale-aligned)"]
    if pred.dynamic is not None:
        columns.append("predicted moving probability")
    columns.append("true moving pixels")
    traj_title = ("camera path: prediction (Sim(3)-aligned) vs ground truth" if aligned_np is not None
                  else "camera path: ground truth (the prediction could not be aligned)")
    speed = meta.get("frames_per_second")
    note = (f"Reconstructed {T} frames in {meta.get('elapsed_s', float('nan')):.1f} s "
            f"({speed:.1f} frames/s) on {meta.get('device')} with the model "
            f"<code>{_esc(meta.get('ckpt'))}</code>.") if isinstance(speed, (int, float)) else ""
    html_text = build_report(
        title="Mem4D demo", scene_text=scene_text, columns=columns, strips=strips,
        trajectory=trajectory_png(sample.cam2world.double().numpy(), aligned_np, traj_title), rows=rows,
        note_html=note, footer_html=_viewer_html(out, list(meta.get("files", []))),
        depth_colourbar=depth_colourbar_png(gt["lo"], gt["hi"], "true and predicted depth (m)"),
        motion_text=motion_summary(rows[0]) if pred.dynamic is not None else "",
        trajectory_caption="Camera centres seen from above: the prediction, Sim(3)-aligned to the ground truth "
        "(one rotation, translation and scale for the whole path, as for ATE), against the ground truth; thin lines "
        "join the same frame." if aligned_np is not None else "The predicted path could not be Sim(3)-aligned "
        "(degenerate), so only the ground truth is drawn.",
        extra_figures=[("The scene from above (ground truth)", (tmp / "camera_path.png").read_bytes())])
    (tmp / "report.html").write_text(html_text, encoding="utf-8")
    return {"metrics": _finite(rows), "table": table, "motion": motion_summary(rows[0]), "reconstruction": {
        k: meta.get(k) for k in ("elapsed_s", "frames_per_second", "device", "static_points", "files")}}


def _esc(x: Any) -> str:
    import html

    return html.escape(str(x))


def _no_model_html() -> str:
    from mem4d.model import pretrained

    return ("<strong>No trained model ships with mem4d yet</strong> "
            f"(<code>{_esc(pretrained.DEFAULT_DIR)}</code> is empty), so this report shows the ground truth the "
            "reconstruction will be compared with. Train the default model (CPU, resumable) and rerun the demo "
            f"with it:<br><code>{_esc(TRAIN_HINT[0])}</code><br><code>{_esc(TRAIN_HINT[1])}</code>")


def _ground_truth_report(sample, gt: dict[str, Any], tmp: Path, scene_text: str, no_model: bool) -> None:
    from mem4d.demo.report import build_report, grey, pick_frames, trajectory_png

    strips = [(t, [gt["frames"][t], gt["depth_rgb"][t], grey(gt["masks"][t] / 255.0)])
              for t in pick_frames(sample.num_frames)]
    html_text = build_report(
        title="Mem4D demo (ground truth only)", scene_text=scene_text,
        columns=["input frame", "true depth", "true moving pixels"], strips=strips,
        trajectory=trajectory_png(sample.cam2world.double().numpy(), None, "camera path (ground truth)"),
        rows=None, note_html="Ground truth only (<code>--no-model</code>)." if no_model else _no_model_html(),
        extra_figures=[("The scene from above (ground truth)", (tmp / "camera_path.png").read_bytes())])
    (tmp / "report.html").write_text(html_text, encoding="utf-8")


def _print_summary(out: Path, T: int, ckpt: str | None, result: dict[str, Any], elapsed: float,
                   no_model: bool) -> None:
    report = out / "report.html"
    if ckpt is not None:
        rec = result["reconstruction"]
        print(f"{PROG}: reconstructed {T} frames in {rec['elapsed_s']:.1f} s ({rec['frames_per_second']:.1f} "
              f"frames/s, {rec['device']}); accuracy against the ground truth:")
        print()
        print(result["table"])
        print(result["motion"])
        print()
    print(f"wrote to {out}/ in {elapsed:.0f} s:")
    last = f"{T - 1:06d}"
    listing = [
        ("report.html", f"the report: open {report.resolve().as_uri()}"),
        (f"frames/000000.png .. {last}.png", "input frames"),
        (f"depth/000000.png|.npy .. {last}", "true z-depth (coloured PNG, near = red; .npy in metres)"),
        (f"dynamic_mask/000000.png .. {last}.png", "true moving pixels"),
        ("camera_path.png", "top view: camera path, view directions, scene points"),
        ("overview.png", "frame | depth | moving objects | mask, at 4 times"),
        ("scene.json", "the scene's description (seed, knobs, objects)"),
    ]
    if ckpt is not None:
        written = " ".join(rec["files"] or [])
        listing += [("reconstruction/", f"what `mem4d reconstruct` wrote (docs/OUTPUTS.md): {written}"),
                    ("metrics.json", "the table above")]
    width = max(len(name) for name, _ in listing) + 2
    for name, what in listing:
        print(f"  {name.ljust(width)}{what}")
    if ckpt is not None:
        needs = "" if viewer_available() else "   (needs: pip install 'mem4d[viewer]')"
        print(f"3D viewer: mem4d view {out / 'reconstruction'}{needs}")
    elif not no_model:
        print()
        print(f"{PROG}: NO TRAINED MODEL SHIPS WITH MEM4D YET, so this demo shows the ground truth only.")
        print("  Train the default model (CPU, resumable with --resume), then rerun the demo with it:")
        print(f"    {TRAIN_HINT[0]}")
        print(f"    {TRAIN_HINT[1]}")
