"""Photometric pose refinement with exact depth: one start vs. two starts (vs. rotation probes), 3 vs. 4 levels.

Streams the frames of synthetic "loop" scenes (the fastest-turning camera paths of the
generator: 8-11 degrees a frame over 40 frames) through `mem4d.model.pose_refinement.refine_pose`
with ground-truth depth, intrinsics and moving-object masks standing in for the network's
outputs, and reports the mean / max rotation error of each frame-to-frame motion and the
number of frames off by more than 1 degree, per scene and setting. What the numbers isolate is
the alignment itself (its start and pyramid), not the depth network.

    .venv/bin/python bench/bench_pose_refinement.py [--scenes 4] [--frames 40]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from mem4d.data.synthetic import make_scene
from mem4d.geometry.camera import depth_to_pts_cam
from mem4d.geometry.rotation import rotation_angle
from mem4d.geometry.se3 import cam_a2cam_b
from mem4d.model.outputs import FrameOutput
from mem4d.model.pose_refinement import refine_pose
from mem4d.model.state import StreamState

SETTINGS = {  # name -> (levels, iterations per level, two starts, rotation probes)
    "3 levels, velocity start": (3, (12, 8, 6), False, False),
    "3 levels, two starts (shipped)": (3, (12, 8, 6), True, False),
    "3 levels, two starts + 8 rotation probes": (3, (12, 8, 6), True, True),
    "4 levels, velocity start": (4, (12, 12, 8, 6), False, False),
    "4 levels, two starts": (4, (12, 12, 8, 6), True, False),
}


def _output(depth: torch.Tensor, K: torch.Tensor, moving: torch.Tensor) -> FrameOutput:
    pts = depth_to_pts_cam(depth, K)
    one = torch.ones_like(depth)
    return FrameOutput(pts_world=pts, conf_world=one, pts_cam=pts, conf_cam=one, depth=depth, intrinsics=K,
                       cam2world=torch.eye(4)[None], fov_x=torch.ones(1), quat_wxyz=torch.tensor([[1.0, 0, 0, 0]]),
                       translation=torch.zeros(1, 3), dynamic_prob=moving.float())


def run(scene, levels: int, iters: tuple[int, ...], two_starts: bool, probes: bool = False) -> torch.Tensor:
    """Rotation error (degrees) of each frame-to-frame motion, (T-1,)."""
    state = StreamState(batch_size=1, image_size=tuple(scene.images.shape[-2:]))
    poses = []
    for t in range(scene.num_frames):
        out = _output(scene.depth[t][None], scene.intrinsics[t][None], scene.dynamic_mask[t][None])
        out, state = refine_pose(scene.images[t][None], out, state, dataclasses.replace(state, frame_index=t + 1),
                                 levels=levels, iters=iters, two_starts=two_starts, probes=probes)
        poses.append(out.cam2world[0])
    est = torch.stack(poses)
    rel_est = cam_a2cam_b(est[:-1], est[1:])
    rel_gt = cam_a2cam_b(scene.cam2world[:-1], scene.cam2world[1:])
    return rotation_angle((torch.linalg.inv(rel_gt) @ rel_est)[:, :3, :3]).rad2deg()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"photometric refinement with exact depth, {args.scenes} loop scenes x {args.frames} frames at 96x128\n")
    print("| setting | " + " | ".join(f"seed {s}: mean / max / >1° " for s in range(args.scenes)) + " | ms/frame |")
    print("|---|" + "---|" * (args.scenes + 1))
    scenes = [make_scene(s, args.frames, (96, 128), camera_path="loop", dynamic=True) for s in range(args.scenes)]
    for name, (levels, iters, two, probes) in SETTINGS.items():
        cells, start = [], time.perf_counter()
        for scene in scenes:
            err = run(scene, levels, iters, two, probes)
            cells.append(f"{err.mean():.2f} / {err.max():.1f} / {int((err > 1).sum())}")
        ms = 1000 * (time.perf_counter() - start) / (args.scenes * args.frames)
        print(f"| {name} | " + " | ".join(cells) + f" | {ms:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
