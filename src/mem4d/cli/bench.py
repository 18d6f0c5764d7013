"""``mem4d bench``: streaming latency, FPS and peak memory of the network (PROTOCOLS.md §2).

Thin wrapper over :func:`mem4d.model.benchmark.benchmark`. Example::

    mem4d bench --preset small --size 256 --frames 60 --threads 2     # 192x256 (HxW)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mem4d.cli.sizes import SIZE_HELP_SYNTHETIC, synthetic_size


def _size(text: str) -> tuple[int, int]:
    try:
        return synthetic_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure streaming latency / FPS / peak memory of the model",
        description="Streams synthetic frames through model.step (batch 1 unless --batch) and reports per-frame "
        "latency (median, p90, p99), FPS and peak memory at several frame counts, plus the machine's "
        "GEMM GFLOP/s. Random weights: speed does not depend on them. On a shared CPU, set "
        "OMP_WAIT_POLICY=PASSIVE in the environment for multi-thread runs (spin-waiting threads collapse when "
        "other processes compete for the cores); the report records it and the load average.",
    )
    p.add_argument("--preset", choices=["tiny", "small", "paper"], default="tiny",
                   help="model size: tiny (4.4 M parameters, the shipped model's), small (47 M) or paper (530 M); "
                   "random weights (default tiny)")
    p.add_argument("--variant", default="full", help="full | no_tdm | no_psm | no_tca | unified")
    p.add_argument("--size", type=_size, default=None,
                   help=f"frame size: {SIZE_HELP_SYNTHETIC}; multiples of 16 (default: the preset's, e.g. 192x256 "
                   "for small)")
    p.add_argument("--frames", type=int, default=50, help="frames in the measured stream (default 50)")
    p.add_argument("--warmup", type=int, default=None, help="throw-away frames first (default 3 CPU / 20 CUDA)")
    p.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast dtype (fp32: none)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (reported)")
    p.add_argument("--batch", type=int, default=1, help="lockstep streams per step (default 1: streaming)")
    p.add_argument("--checkpoints", default="10,100,200,1000,10000",
                   help="comma-separated frame counts at which to report latency and memory")
    p.add_argument("--tf32", action="store_true", help="allow TF32 on CUDA (CUT3R's released setting)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count of one step")
    p.add_argument("--profile", type=int, default=0, metavar="K", help="also list the top K ops and time per module")
    p.add_argument("--gemm-seconds", type=float, default=0.5, help="duration of the GEMM GFLOP/s measurement")
    p.add_argument("--json", type=Path, default=None, help="write the full report to this JSON file")
    p.set_defaults(run=run)


def _fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def format_report(r: dict) -> str:
    """Human-readable summary of a benchmark report."""
    H, W = r["image_size"]
    lines = [
        f"mem4d bench: preset={r['preset']} variant={r['variant']} size={H}x{W} (HxW) batch={r['batch']} "
        f"frames={r['frames']} warmup={r['warmup_frames']}",
        f"device={r['device']} ({r['device_name']}) dtype={r['dtype']} threads={r['threads']} torch={r['torch']} "
        f"params={r['parameters'] / 1e6:.2f}M GEMM={r['gemm_gflops']:.1f} GFLOP/s",
        f"load average start={r.get('load_average_start')} end={r.get('load_average_end')} "
        f"OMP_WAIT_POLICY={r.get('omp_wait_policy')} (CPU timings are only comparable on an otherwise idle machine)",
    ]
    if "gflop_per_step" in r:
        lines.append(f"model: {r['gflop_per_step']:.2f} GFLOP/step -> {r['achieved_gflops']:.1f} GFLOP/s "
                     f"({100 * r['fraction_of_gemm']:.0f}% of GEMM)")
    mem_key = "max_memory_allocated" if r["device"].startswith("cuda") else "peak_rss"
    lines.append(f"{'frames':>12} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'FPS':>7} {mem_key:>21} {'state':>10}")
    for c in r["checkpoints"]:
        span = f"..{c['at_frame']}"
        lines.append(f"{span:>12} {c['median_ms']:10.1f} {c['p90_ms']:8.1f} {c['p99_ms']:8.1f} {c['fps']:7.2f} "
                     f"{_fmt_bytes(c.get(mem_key)):>21} {_fmt_bytes(c['state_bytes']):>10}")
    for name in ("ramp", "steady", "all"):
        s = r.get(name)
        if s and s["frames"]:
            label = f"{name} ({s['frames']})"
            lines.append(f"{label:>12} {s['median_ms']:10.1f} {s['p90_ms']:8.1f} {s['p99_ms']:8.1f} {s['fps']:7.2f}")
    for row in r.get("profile", []):
        ms = row.get("total_ms_per_step", row.get("self_ms_per_step"))
        kind = "module total" if "total_ms_per_step" in row else "op self"
        lines.append(f"  {kind:>12} {ms:8.2f} ms/step  x{row['calls_per_step']:.0f}  {row['name']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from mem4d.cli.reconstruct import resolve_device
    from mem4d.config import Mem4DConfig
    from mem4d.model.benchmark import benchmark

    config = Mem4DConfig.preset(args.preset, variant=args.variant)
    try:
        checkpoints = tuple(int(c) for c in args.checkpoints.split(",") if c.strip())
    except ValueError:
        raise ValueError(f"--checkpoints must be comma-separated integers, got {args.checkpoints!r}") from None
    report = benchmark(
        config,
        args.size or config.image_size,
        args.frames,
        device=str(resolve_device(args.device)),
        dtype=args.dtype,
        threads=args.threads,
        warmup=args.warmup,
        batch=args.batch,
        checkpoints=checkpoints,
        tf32=args.tf32,
        count_flops=not args.no_flops,
        profile_top=args.profile,
        gemm_seconds=args.gemm_seconds,
    )
    report = {"preset": args.preset, **report}
    print(format_report(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    return 0
