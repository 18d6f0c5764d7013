"""ATE / RPE of the streamed trajectory against ``trajectory_loop_corrected.txt``'s, side by side.

`mem4d reconstruct` writes the poses as the model streams them (``trajectory.txt``: causal, the
frame that closes a loop jumps) and, after the stream, the same with each loop closure spread over
the frames since its keyframe (``trajectory_loop_corrected.txt``,
`mem4d.scene.loop_correction.correct_trajectory`). This streams every sequence of the synthetic
benchmarks (at the model's size, 96x128) and of the scene-memory loops (seeds 0-15 of
``bench/bench_scene_memory_model.py``, 40 frames) through the model and scores both trajectories
with `mem4d.eval.score.pose_scores` (Sim(3)-aligned ATE, RPE per frame), as `mem4d eval score` does.

    .venv/bin/python bench/bench_loop_corrected_trajectory.py [--ckpt default] \
        [--benchmarks synthetic-dynamic,synthetic-realistic,loops] [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mem4d.eval.score import pose_scores
from mem4d.model.mem4d import Mem4D
from mem4d.scene.loop_correction import correct_trajectory

LOOP_SEEDS = range(16)  # the scene-memory bench's loops: seeds 0-3 (its default) and 4-15 (--seed0 4 --scenes 12)


def stream(model: Mem4D, images: torch.Tensor) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]]]:
    """Streams ``images`` (T, 3, H, W) in [0, 1]: the poses (T, 4, 4) and the closures (t, t_key, correction)."""
    state = model.init_state(1, tuple(images.shape[-2:]))
    poses, closures = [], []
    with torch.inference_mode():
        for t in range(images.shape[0]):
            out, state = model.step(images[t][None], state)
            poses.append(out.cam2world[0].double().numpy())
            if out.loop_keyframe is not None and int(out.loop_keyframe[0]) >= 0:
                closures.append((t, int(out.loop_keyframe[0]), out.loop_correction[0].double().numpy()))
    return np.stack(poses), closures


def sequences(benchmark: str, limit: int | None) -> list[tuple[str, torch.Tensor, np.ndarray]]:
    """(name, images (T, 3, 96, 128), ground-truth cam2world (T, 4, 4)) of ``benchmark``, or of the loops."""
    if benchmark == "loops":
        from mem4d.data.synthetic import make_scene

        scenes = [(f"loop-{s}", make_scene(s, 40, image_size=(96, 128), dynamic=True, camera_path="loop"))
                  for s in list(LOOP_SEEDS)[:limit]]
        return [(n, sc.images, sc.cam2world.double().numpy()) for n, sc in scenes]
    from mem4d.eval.benchmarks import get_benchmark

    bench = get_benchmark(benchmark)
    out = []
    for seq in list(bench.sequences())[:limit]:
        sample = bench.load(seq, size=128)
        out.append((str(seq), sample.images, sample.cam2world.double().numpy()))
    return out


def run(ckpt: str = "default", benchmarks: tuple[str, ...] = ("synthetic-dynamic", "synthetic-realistic", "loops"),
        limit: int | None = None) -> dict[str, Any]:
    """Per benchmark: mean ATE / RPE of both trajectories, the closures and the sequences that had one."""
    model = Mem4D.from_pretrained(ckpt).eval()
    results: dict[str, Any] = {}
    for benchmark in benchmarks:
        rows: dict[str, list[dict[str, float]]] = {"streamed": [], "loop_corrected": []}
        closed = {}
        for name, images, gt in sequences(benchmark, limit):
            poses, closures = stream(model, images)
            rows["streamed"].append(pose_scores(poses, gt))
            rows["loop_corrected"].append(pose_scores(correct_trajectory(poses, closures), gt))
            if closures:
                closed[name] = {"closures": [[t, k] for t, k, _ in closures],
                                "ate": [rows["streamed"][-1]["ate"], rows["loop_corrected"][-1]["ate"]]}
        results[benchmark] = {
            **{side: {k: float(np.mean([r[k] for r in rs])) for k in ("ate", "rpe_trans", "rpe_rot")}
               for side, rs in rows.items()},
            "sequences": len(rows["streamed"]), "closures": sum(len(c["closures"]) for c in closed.values()),
            "closed_sequences": closed,
        }
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="default", help="checkpoint folder or 'default' (the shipped model)")
    ap.add_argument("--benchmarks", default="synthetic-dynamic,synthetic-realistic,loops",
                    help="comma-separated: synthetic benchmarks (mem4d eval list) and/or 'loops'")
    ap.add_argument("--limit", type=int, default=None, help="first N sequences of each")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    results = run(args.ckpt, tuple(b for b in args.benchmarks.split(",") if b), args.limit)
    print("| benchmark | sequences (closures) | ATE streamed / corrected | RPE trans | RPE rot (deg) |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        s, c = r["streamed"], r["loop_corrected"]
        print(f"| {name} | {r['sequences']} ({r['closures']}) | {s['ate']:.4f} / {c['ate']:.4f} | "
              f"{s['rpe_trans']:.4f} / {c['rpe_trans']:.4f} | {s['rpe_rot']:.3f} / {c['rpe_rot']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
