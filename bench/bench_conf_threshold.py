"""How much of real frames each `--conf-threshold` keeps, and what the scene memory then renders.

On the shared 60-frame 7-Scenes redkitchen excerpt (real video, static scene), with the shipped
model unless ``--ckpt``:

1. `mem4d reconstruct` of all 60 frames (no scene memory) gives the model's poses, intrinsics
   and processed frames (the stream is causal, so frames 0-49 come out the same in step 2);
2. for each threshold, `mem4d reconstruct --max-frames 50 --scene-memory --conf-threshold T`
   writes the memory from frames 0-49; reported: the share of pixels per frame that passed
   (``meta.json`` ``confident_fraction``), the median confidence, the static.ply points;
3. the memory is rendered at the model's poses of frames 50-59 (`SceneMemory.render`):
   coverage (share of pixels drawn) and PSNR of the drawn pixels against the processed frames.

    .venv/bin/python bench/bench_conf_threshold.py [--thresholds 1.5,1.0,auto:0.1,auto:0.3] \\
        [--pose-refinement none] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mem4d.cli.main import main as mem4d_main
from mem4d.eval.trajectory_io import read_tum_trajectory

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "7scenes_redkitchen_f000-059"
WRITE, QUERY = 50, 10


def _reconstruct(clip: Path, out: Path, *extra: str) -> dict:
    rc = mem4d_main(["reconstruct", str(clip / "frame-*.color.jpg"), "--out", str(out), "--no-progress",
                     "--no-video", "--no-glb", "--no-colmap", "--no-nerfstudio", "--no-pointmaps", "--threads", "1",
                     *extra])
    if rc != 0:
        raise SystemExit(f"mem4d reconstruct failed (exit code {rc})")
    return json.loads((out / "meta.json").read_text())


def main(argv: list[str] | None = None) -> int:
    from mem4d.scene import SceneMemory

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    p.add_argument("--ckpt", default="default")
    p.add_argument("--size", default="128")
    p.add_argument("--thresholds", default="1.5,1.0,auto:0.1,auto:0.3")
    p.add_argument("--pose-refinement", default=None, choices=["none", "photometric"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    model = ["--ckpt", args.ckpt, "--size", args.size]
    if args.pose_refinement:
        model += ["--pose-refinement", args.pose_refinement]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        full = Path(tmp) / "full"
        _reconstruct(args.clip, full, *model)
        poses = read_tum_trajectory(full / "trajectory.txt").cam2world.double().numpy()
        intr = np.loadtxt(full / "intrinsics.txt", comments="#", ndmin=2)
        for threshold in args.thresholds.split(","):
            out = Path(tmp) / f"mem_{threshold}"
            meta = _reconstruct(args.clip, out, *model, "--max-frames", str(WRITE), "--scene-memory",
                                "--conf-threshold", threshold)
            memory = SceneMemory.load(out / "scene_memory")
            coverage, sq_err, drawn = [], 0.0, 0
            for t in range(WRITE, WRITE + QUERY):
                fx, fy, cx, cy = intr[t]
                K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
                truth = np.asarray(Image.open(full / "rgb" / f"{t:06d}.png")).astype(np.float64) / 255
                view = memory.render(poses[t], K, truth.shape[:2])
                mask = view.mask[0]
                coverage.append(float(mask.mean()))
                sq_err += float(((view.rgb[0][mask] - truth[mask]) ** 2).sum())
                drawn += int(mask.sum()) * 3
            psnr = 10 * np.log10(1.0 / (sq_err / drawn)) if drawn else float("nan")
            row = {"threshold": threshold, "confident_fraction": meta["confident_fraction"],
                   "median_confidence": meta["median_confidence"], "static_points": meta["static_points"],
                   "render_coverage": float(np.mean(coverage)), "render_psnr_db": psnr,
                   "pose_refinement": args.pose_refinement or "model default"}
            rows.append(row)
            print(f"--conf-threshold {threshold:>8}: {100 * row['confident_fraction']:5.1f} % of pixels kept "
                  f"(median confidence {row['median_confidence']:.3f}), static.ply {row['static_points']:,} points; "
                  f"memory of frames 0-{WRITE - 1} rendered at frames {WRITE}-{WRITE + QUERY - 1}: coverage "
                  f"{100 * row['render_coverage']:.0f} %, PSNR {psnr:.1f} dB", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
