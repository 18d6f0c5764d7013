"""Camera-pose error of `mem4d reconstruct` on the real 7-Scenes sample at several `--size`s.

Runs `mem4d reconstruct` (in-process, the shipped model unless `--ckpt`) on the shared 60-frame
7-Scenes redkitchen excerpt at each size and stride, and scores `trajectory.txt` against the
ground-truth poses (ATE after Sim(3) alignment, RPE, `mem4d.eval.score.pose_scores`). A stride
above 1 makes the camera move that many times farther between frames, a stand-in for faster
real footage. What it isolates: how the photometric pose refinement's pyramid behaves as the
processed image grows (issue 14, item 10).

    .venv/bin/python bench/bench_pose_pyramid.py [--sizes 128,256,512] [--strides 1,4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from mem4d.cli.main import main as mem4d_main
from mem4d.eval.score import pose_scores
from mem4d.eval.trajectory_io import read_tum_trajectory

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "7scenes_redkitchen_f000-059"


def score_clip(clip: Path, size: int, stride: int, ckpt: str, work: Path) -> dict:
    """Reconstructs ``clip`` at ``size`` / ``stride`` and returns its pose scores (metres, degrees)."""
    out = work / f"recon_{size}_{stride}"
    rc = mem4d_main(["reconstruct", str(clip / "frame-*.color.jpg"), "--out", str(out), "--ckpt", ckpt,
                     "--size", str(size), "--stride", str(stride), "--no-progress", "--no-video", "--no-glb",
                     "--no-colmap", "--no-nerfstudio", "--no-pointmaps", "--threads", "1"])
    if rc != 0:
        raise SystemExit(f"mem4d reconstruct failed at --size {size} (exit code {rc})")
    pred = read_tum_trajectory(out / "trajectory.txt").cam2world.double().numpy()
    names = [line.split()[3] for line in (out / "frames.txt").read_text().splitlines() if not line.startswith("#")]
    gt = np.stack([np.loadtxt(clip / name.replace(".color.jpg", ".pose.txt")) for name in names])
    meta = json.loads((out / "meta.json").read_text())
    s = pose_scores(pred, gt)
    return {"size": size, "stride": stride, "frames": len(names), "processed_hw": meta["size"],
            "ate_cm": 100 * s["ate"], "rpe_trans_cm": 100 * s["rpe_trans"], "rpe_rot_deg": s["rpe_rot"],
            "frames_per_second": meta["frames_per_second"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a 7-Scenes-style folder (color.jpg + pose.txt)")
    p.add_argument("--ckpt", default="default")
    p.add_argument("--sizes", default="128,256,512")
    p.add_argument("--strides", default="1,4")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stride in (int(s) for s in args.strides.split(",")):
            for size in (int(s) for s in args.sizes.split(",")):
                row = score_clip(args.clip, size, stride, args.ckpt, Path(tmp))
                rows.append(row)
                print(f"--size {size:4d} ({row['processed_hw'][0]}x{row['processed_hw'][1]} HxW) --stride {stride}: "
                      f"{row['frames']} frames, ATE {row['ate_cm']:.2f} cm, RPE {row['rpe_trans_cm']:.2f} cm / "
                      f"{row['rpe_rot_deg']:.2f} deg, {row['frames_per_second']:.1f} frames/s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
