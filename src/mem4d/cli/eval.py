"""`mem4d eval`: the two-stage evaluation harness (predict, then score) and its tables.

    mem4d eval list
    mem4d eval predict --benchmark synthetic-dynamic --ckpt runs/tiny/final --out preds/tiny-synth
    mem4d eval score --pred preds/tiny-synth --out results/tiny-synth
    mem4d eval table results/tiny-synth results/floor-synth --out table.md

Library functions: :func:`mem4d.eval.predict.predict`, :func:`mem4d.eval.score.score`,
:func:`mem4d.eval.report.render_tables`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mem4d.cli.threads import add_threads_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a benchmark (predict, then score)",
        description="Two-stage evaluation: `predict` streams a checkpoint (or baseline) over a benchmark "
        "and writes one .npz per sequence + manifest.json; `score` compares them with the ground truth "
        "and writes results.json + results.md. `list` shows the benchmarks, `table` merges results.",
    )
    p.set_defaults(run=run, eval_parser=p)
    ev = p.add_subparsers(dest="eval_command", metavar="STAGE")

    ls = ev.add_parser("list", help="list the benchmarks")
    ls.set_defaults(eval_run=_run_list)

    pr = ev.add_parser("predict", help="stage 1: run a checkpoint over a benchmark, write predictions")
    pr.add_argument("--benchmark", required=True, help="benchmark name (see `mem4d eval list`)")
    pr.add_argument("--ckpt", required=True,
                    help="checkpoint folder (config.json + model.safetensors), 'default' (the shipped model), or "
                    "baseline:NAME: baseline:constant-depth (the median true depth everywhere, identity poses), "
                    "baseline:identity-pose (1 m everywhere, identity poses), baseline:oracle (the ground truth "
                    "itself: a check of the harness, which must score it near zero error)")
    pr.add_argument("--out", required=True, help="prediction folder to create")
    pr.add_argument("--data-root", default=None, help="dataset root (default: $MEM4D_DATA)")
    pr.add_argument("--size", type=_long_side, default=None, metavar="N",
                    help="long side of the model input in pixels, a multiple of 16; the short side follows the "
                    "benchmark's frames (default: the benchmark's, 512 for the protocols)")
    pr.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:N")
    add_threads_argument(pr)
    pr.add_argument("--limit-seqs", type=int, default=None, help="only the first N sequences (smoke runs)")
    pr.add_argument("--max-frames", type=int, default=None, help="only the first T frames of each sequence")
    pr.add_argument("--label", default=None, help="method name in tables (default: checkpoint folder name)")
    pr.add_argument("--save-points", action="store_true", help="also store pts_world when not needed for scoring")
    pr.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    pr.add_argument("--quiet", action="store_true", help="no per-sequence progress lines")
    pr.set_defaults(eval_run=_run_predict)

    sc = ev.add_parser("score", help="stage 2: score a prediction folder, write results.json + results.md")
    sc.add_argument("--pred", required=True, help="folder written by `mem4d eval predict`")
    sc.add_argument("--out", required=True, help="results folder to create")
    sc.add_argument("--data-root", default=None,
                    help="dataset root (default: $MEM4D_DATA, else the one recorded by predict)")
    sc.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    sc.add_argument("--quiet", action="store_true", help="no per-sequence progress lines")
    sc.set_defaults(eval_run=_run_score)

    tb = ev.add_parser("table", help="paper-style tables from several results folders")
    tb.add_argument("results", nargs="+", help="results folders (or results.json files)")
    tb.add_argument("--out", default=None, help="write the markdown here (default: print)")
    tb.set_defaults(eval_run=_run_table)


def _long_side(text: str) -> int:
    from mem4d.cli.sizes import long_side_only

    try:
        return int(long_side_only(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    if getattr(args, "eval_command", None) is None:
        args.eval_parser.print_help()
        return 2
    return int(args.eval_run(args) or 0)


def _log(args: argparse.Namespace):
    return None if args.quiet else (lambda msg: print(msg, flush=True))


def _run_list(args: argparse.Namespace) -> int:
    from mem4d.eval.benchmarks import BENCHMARKS

    width = max(len(n) for n in BENCHMARKS)
    tasks = {name: f"[{', '.join(b.tasks)}]" for name, b in BENCHMARKS.items()}
    twidth = max(len(t) for t in tasks.values())
    for name, b in BENCHMARKS.items():
        print(f"{name:<{width}}  {tasks[name]:<{twidth}}  {b.description}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from mem4d.cli.output_dir import check_writable
    from mem4d.cli.threads import default_threads
    from mem4d.eval.predict import predict

    check_writable(Path(args.out))
    threads = default_threads() if args.threads is None else args.threads
    out = predict(
        args.benchmark, args.ckpt, args.out, data_root=args.data_root, size=args.size, device=args.device,
        limit_seqs=args.limit_seqs, max_frames=args.max_frames, threads=threads, overwrite=args.overwrite,
        label=args.label, save_points=True if args.save_points else None, log=_log(args),
    )
    print(f"predictions written to {out}")
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from mem4d.cli.output_dir import check_writable
    from mem4d.eval.report import render_tables
    from mem4d.eval.score import score

    check_writable(Path(args.out))
    results = score(args.pred, args.out, data_root=args.data_root, overwrite=args.overwrite, log=_log(args))
    if not args.quiet:
        print(render_tables([results]))
    print(f"results written to {args.out}")
    return 0


def _run_table(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from mem4d.eval.report import render_tables
    from mem4d.eval.score import RESULTS_JSON

    results = []
    for item in args.results:
        path = Path(item)
        path = path / RESULTS_JSON if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (pass folders written by `mem4d eval score`)")
        try:
            results.append(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from err
        if results[-1].get("kind") != "mem4d-eval-results":
            raise ValueError(f"{path} is not a mem4d results.json")
    text = render_tables(results)
    if args.out:
        Path(args.out).write_text(text)
        print(f"table written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0
