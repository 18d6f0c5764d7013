"""Streaming speed of the Mem4D network on this machine: the two reference CPU configurations.

Runs ``mem4d.model.benchmark.benchmark`` (what ``mem4d bench`` runs) for ``tiny`` at 96x128
(HxW) and ``small`` at 192x256, a few times each with fixed threads, and prints one line per
run plus the median over runs (PROTOCOLS.md §2: 3 runs, median). Targets on the 2-core CI
machine: tiny >= 15 FPS, small >= 2.5 FPS (steady state, batch 1).

    .venv/bin/python bench/bench_model.py                       # 3 runs, 2 threads, 40 frames
    .venv/bin/python bench/bench_model.py --threads 1 --runs 1 --json bench_model.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

RUNS = {"tiny": (96, 128), "small": (192, 256)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=40, help="streamed frames per run (steady state after the ramp)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from mem4d.config import Mem4DConfig
    from mem4d.model.benchmark import benchmark

    results = {}
    for preset in args.presets:
        cfg = Mem4DConfig.preset(preset)
        reports = []
        for run in range(args.runs):
            r = benchmark(cfg, RUNS[preset], args.frames, threads=args.threads, count_flops=run == 0)
            s = r["steady"] or r["all"]
            print(f"{preset:5s} {RUNS[preset][0]}x{RUNS[preset][1]} run {run}: median {s['median_ms']:.1f} ms "
                  f"p90 {s['p90_ms']:.1f} p99 {s['p99_ms']:.1f} -> {s['fps']:.2f} FPS, GEMM {r['gemm_gflops']:.0f} GFLOP/s, "
                  f"peak RSS {r['checkpoints'][-1]['peak_rss'] / 2**20:.0f} MiB", flush=True)
            reports.append(r)
        fps = [(r["steady"] or r["all"])["fps"] for r in reports]
        print(f"{preset:5s} median over {len(fps)} runs: {statistics.median(fps):.2f} FPS "
              f"({reports[0].get('gflop_per_step', float('nan')):.2f} GFLOP/step, threads={torch.get_num_threads()})")
        results[preset] = reports
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
