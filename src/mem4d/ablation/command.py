"""The ablation study's command line (``bench/ablation.py``): parse, plan, run.

    .venv/bin/python bench/ablation.py --config configs/ablation-tiny.yaml --study ../runs-ablation/tiny

Rerun the same command to continue an interrupted study. ``main(argv)`` returns the exit status:
0 done, 2 bad input (the message says what to do), 1 a training run failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mem4d.config import VARIANTS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/ablation.py",
        description="Decoupled vs unified memory (issue 15): train the variants of one preset with one recipe, "
        "the same steps and data, from scratch; score each on the evaluation harness's benchmarks and a "
        "long-range loop probe; count parameters, time CPU ms per frame; write STUDY/study.json and "
        "STUDY/table.md. Resumable: rerun the same command.",
    )
    p.add_argument("--config", required=True, help="training recipe, e.g. configs/ablation-tiny.yaml (no init_from)")
    p.add_argument("--study", required=True, help="study folder (created; rerun on it to continue)")
    p.add_argument("--variants", default=",".join(("full", "unified", "no_tdm", "no_psm", "no_tca")),
                   help=f"comma-separated rows of the table (default all: {','.join(VARIANTS)})")
    p.add_argument("--seeds", default=None, metavar="VARIANT=N,...",
                   help="training seeds per variant, e.g. full=2,unified=2 (the default); variants not named get "
                   "--other-seeds")
    p.add_argument("--other-seeds", type=int, default=1, help="seeds of the variants --seeds does not name (default 1)")
    p.add_argument("--steps", type=int, default=None, help="training steps of every run (default: the recipe's)")
    p.add_argument("--camera-pose", default="procrustes", choices=("procrustes", "absolute"),
                   help="heads.camera_pose of every variant: procrustes (the project's pose from the network's own "
                   "correspondences and pointmaps; default) or absolute (the paper's camera head)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe override for every run, e.g. data.image_size=[48,64] (repeatable)")
    p.add_argument("--eval-size", type=int, default=None,
                   help="long side of the evaluation input (default: the recipe's data.image_size long side)")
    p.add_argument("--benchmarks", default="synthetic-dynamic,synthetic-static,7scenes-sample",
                   help="comma-separated evaluation benchmarks (default: the three of issue 15)")
    p.add_argument("--limit-seqs", type=int, default=None, help="only the first N sequences of each benchmark (smoke)")
    p.add_argument("--max-frames", type=int, default=None, help="only the first T frames of each sequence (smoke)")
    p.add_argument("--probe-scenes", type=int, default=4, help="loop-probe scenes (default 4)")
    p.add_argument("--probe-frames", type=int, default=60, help="frames of each loop-probe scene (default 60)")
    p.add_argument("--probe-loop", type=int, default=48,
                   help="frames a probe loop takes to close (default 48: the camera is back after 43.5 frames)")
    p.add_argument("--speed-frames", type=int, default=40, help="frames per timed stream (default 40)")
    p.add_argument("--speed-rounds", type=int, default=3, help="timed streams per variant, interleaved (default 3)")
    p.add_argument("--no-floor", action="store_true", help="leave out the constant-depth, fixed-camera floor row")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained side by side, each a one-thread child process (default 1; 2 on a 2-core CPU); "
                   "scoring stays one at a time")
    p.add_argument("--no-train", action="store_true", help="only score and tabulate the runs already trained")
    p.add_argument("--keep-predictions", action="store_true", help="keep the prediction folders after scoring")
    return p


def _settings(args: argparse.Namespace):
    from mem4d.ablation.loop_probe import LoopProbeSettings
    from mem4d.ablation.plan import StudySettings, parse_seeds, plan_runs, recipe_sha256
    from mem4d.train.recipe import Recipe

    recipe = Recipe.from_yaml(args.config, args.overrides)  # a bad recipe or override fails here
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    runs = plan_runs(variants, parse_seeds(args.seeds, variants, args.other_seeds))
    settings = StudySettings(
        recipe_sha256=recipe_sha256(args.config),
        overrides=tuple(args.overrides),
        steps=args.steps if args.steps is not None else recipe.train.steps,
        camera_pose=args.camera_pose,
        eval_size=args.eval_size if args.eval_size is not None else max(recipe.data.image_size),
        benchmarks=tuple(b.strip() for b in args.benchmarks.split(",") if b.strip()),
        limit_seqs=args.limit_seqs,
        max_frames=args.max_frames,
        probe=LoopProbeSettings(scenes=args.probe_scenes, frames=args.probe_frames, loop_frames=args.probe_loop),
        speed_frames=args.speed_frames,
        speed_rounds=args.speed_rounds,
        floors=not args.no_floor,
    )
    from mem4d.eval.benchmarks import get_benchmark

    for name in settings.benchmarks:
        get_benchmark(name)
    return settings, runs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mem4d.ablation.study import Study, run_study

    try:
        settings, runs = _settings(args)
        study = Study(args.study, args.config, settings, runs, command=["bench/ablation.py", *(argv or sys.argv[1:])])
        run_study(study, train=not args.no_train, keep_predictions=args.keep_predictions, jobs=args.jobs)
    except (ValueError, FileNotFoundError) as err:
        print(f"ablation: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        print(f"ablation: {err}", file=sys.stderr)
        return 1
    print(Path(args.study, "table.md").read_text())
    return 0
