"""Which part of the correspondence pose (``heads.camera_pose == "procrustes"``) fails: matches,
depth, weights or the fit.

    OMP_NUM_THREADS=1 .venv/bin/python bench/diagnose_procrustes.py --ckpt RUN/final --seqs 8

Streams the first ``--seqs`` scenes of ``synthetic-dynamic`` (48 frames, long side ``--size``)
through the model and, for every frame t >= 1, refits the frame t -> t-1 motion with one
ingredient at a time swapped for the ground truth (`mem4d.losses.flow.flow_targets` gives the
true cell flow of the static, visible cells):

| row | matches | 3D points | weights |
|---|---|---|---|
| network | the model's own motion (its ``cam2world``s), as configured | | |
| true flow | true | predicted (``heads.fit_points``) | predicted (0 where no true flow) |
| true depth | predicted | true | predicted |
| true flow + depth | true | true | predicted |
| oracle | true | true | 1 on static visible cells |
| the pointmap's own points | predicted | ``pts_cam`` as predicted | predicted |
| the depth on the true intrinsics' rays | predicted | predicted depth, true rays | predicted |
| reprojection only | predicted | predicted, frame t only | predicted |

Prints, per row, the mean and median rotation error per frame (degrees) and the translation
direction error (degrees, frames that move more than 1 cm), plus the flow's end-point error
(pixels of a 128-wide image) over the cells the network weights and over all true cells. The
row whose error drops is the ingredient to improve.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from mem4d.cli.reconstruct import load_model
from mem4d.eval.benchmarks import get_benchmark
from mem4d.geometry.camera import depth_to_pts_cam, depth_to_pts_world
from mem4d.geometry.rotation import rotation_angle
from mem4d.geometry.se3 import se3_inverse
from mem4d.losses.flow import flow_targets
from mem4d.model.procrustes_pose import (REPROJECTION_PX, _sample, cell_centres, fit_points, procrustes_motion,
                                         reprojection_refine)


def _errors(motion: torch.Tensor, gt: torch.Tensor) -> tuple[float, float | None]:
    """Rotation error (deg) and translation direction error (deg, None when the camera barely moves)."""
    rot = float(torch.rad2deg(rotation_angle(motion[:3, :3] @ gt[:3, :3].T)))
    tg, tp = gt[:3, 3], motion[:3, 3]
    if tg.norm() < 0.01:
        return rot, None
    cos = torch.dot(tg, tp) / (tg.norm() * tp.norm()).clamp_min(1e-9)
    return rot, float(torch.rad2deg(torch.arccos(cos.clamp(-1, 1))))


def _record(rows: dict, trans: dict, key: str, motion: torch.Tensor, gt: torch.Tensor) -> None:
    r, d = _errors(motion, gt)
    rows.setdefault(key, []).append(r)
    trans.setdefault(key, [])
    if d is not None:
        trans[key].append(d)


def _reprojection_only(pts: torch.Tensor, flow: torch.Tensor, weight: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """The reprojection Gauss-Newton alone, from no motion (frame t-1's depth unused)."""
    B, h4, w4 = flow.shape[:3]
    centres = cell_centres(h4, w4, flow.device).expand(B, h4, w4, 2)
    p = _sample(pts, centres).reshape(B, -1, 3)
    target = (centres + flow).reshape(B, -1, 2)
    eye = torch.eye(4).expand(B, 4, 4)
    return reprojection_refine(eye, p, target, weight.reshape(B, -1), intrinsics, 20, REPROJECTION_PX * pts.shape[2] / 128)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", default="default")
    ap.add_argument("--seqs", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    model = load_model(args.ckpt, "cpu")
    if model.config.heads.camera_pose != "procrustes":
        raise SystemExit("the checkpoint's heads.camera_pose is not 'procrustes'")
    iters = model.config.heads.reprojection_iters
    bench = get_benchmark("synthetic-dynamic")
    rows: dict[str, list] = {}
    trans: dict[str, list] = {}
    epe_w, epe_all, fov_err, ray_err = [], [], [], []
    for name in bench.sequences(limit_seqs=args.seqs):
        s = bench.prepare(bench.load(name, size=args.size), args.size)
        T, H, W = s.depth.shape
        gt_pts = depth_to_pts_cam(s.depth, s.intrinsics)  # (T, H, W, 3)
        world = depth_to_pts_world(s.depth, s.intrinsics, s.cam2world)
        flow_gt, sup, static_vis, _ = flow_targets(world[None], s.depth[None], s.valid[None], s.cam2world[None],
                                                  s.intrinsics[None], None if s.dynamic_mask is None else s.dynamic_mask[None])
        state = model.init_state(1, (H, W))
        prev = None
        for t in range(T):
            out, state = model.step(s.images[t:t + 1], state)
            if t > 0:
                gt = (se3_inverse(s.cam2world[t - 1:t].double()) @ s.cam2world[t:t + 1].double())[0].float()  # cam t -> t-1
                f_gt, ok = flow_gt[0, t - 1:t].float(), sup[0, t - 1:t]
                w_net = out.flow_weight
                K_gt = s.intrinsics[t - 1:t]
                pts_t = fit_points(out.pts_cam, out.intrinsics, model.config.heads.fit_points, 1.0)
                pts_p = fit_points(prev.pts_cam, prev.intrinsics, model.config.heads.fit_points, 1.0)
                own = se3_inverse(prev.cam2world.double()) @ out.cam2world.double()
                variants = {
                    "true flow": (pts_t, pts_p, f_gt, w_net * ok, prev.intrinsics),
                    "true depth": (gt_pts[t:t + 1], gt_pts[t - 1:t], out.flow, w_net, K_gt),
                    "true flow + depth": (gt_pts[t:t + 1], gt_pts[t - 1:t], f_gt, w_net * ok, K_gt),
                    "oracle": (gt_pts[t:t + 1], gt_pts[t - 1:t], f_gt, ok.float(), K_gt),
                    "the pointmap's own points": (out.pts_cam, prev.pts_cam, out.flow, w_net, prev.intrinsics),
                    "the depth on the true intrinsics' rays": (depth_to_pts_cam(out.depth, K_gt),
                                                              depth_to_pts_cam(prev.depth, K_gt), out.flow, w_net, K_gt),
                }
                _record(rows, trans, f"network (fit_points={model.config.heads.fit_points})", own[0].float(), gt)
                for key, (p, q, f, w, K) in variants.items():
                    _record(rows, trans, key, procrustes_motion(p, q, f, w, intrinsics=K, reprojection_iters=iters)[0], gt)
                _record(rows, trans, "reprojection only (20 steps from no motion)",
                        _reprojection_only(pts_t, out.flow, w_net, prev.intrinsics)[0], gt)
                ray_err.append(float((out.pts_cam - depth_to_pts_cam(out.depth, out.intrinsics)).norm(dim=-1)
                                     .div(out.depth.clamp_min(1e-6)).mean()))
                err = (out.flow[0] - f_gt[0]).norm(dim=-1) * (128 / W)
                okm = ok[0]
                if okm.any():
                    epe_all.append(float(err[okm].mean()))
                    wm = w_net[0] * okm
                    epe_w.append(float((err * wm).sum() / wm.sum().clamp_min(1e-9)))
            fov_err.append(float(torch.rad2deg((out.fov_x[0] - 2 * torch.atan(W / (2 * s.intrinsics[t, 0, 0]))).abs())))
            prev = out
        print(f"{name}: done", flush=True)
    print(f"\n{args.ckpt} at long side {args.size}, {args.seqs} synthetic-dynamic scenes, reprojection_iters={iters}")
    print("| fit | rotation error mean / median (deg) | translation direction error mean / median (deg) |")
    print("|---|---|---|")
    for key in rows:
        r, d = np.array(rows[key]), np.array(trans[key])
        print(f"| {key} | {r.mean():.2f} / {np.median(r):.2f} | {d.mean():.1f} / {np.median(d):.1f} |")
    print(f"\nflow end-point error (px @128): {np.mean(epe_all):.2f} over true cells, {np.mean(epe_w):.2f} weighted "
          f"by the network's weights; |fov error| {np.mean(fov_err):.2f} deg; "
          f"|pts_cam - depth * K^-1 (u, v, 1)| / depth {np.mean(ray_err):.3f}")


if __name__ == "__main__":
    main()
