"""`mem4d train`: train Mem4D from a recipe (configs/*.yaml); single process or under torchrun."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a recipe",
        description="Train Mem4D from a YAML recipe. Multi-GPU / multi-node: launch with torchrun "
        "(e.g. torchrun --nproc_per_node 8 -m mem4d.cli.main train --config ... --out ...).",
    )
    p.add_argument("--config", required=True, help="recipe YAML, e.g. configs/tiny-synthetic.yaml")
    p.add_argument("--out", required=True, help="run folder (metrics.jsonl, checkpoints/, final/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe entry, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mem4d.train.recipe import Recipe
    from mem4d.train.trainer import train

    recipe = Recipe.from_yaml(args.config, args.overrides)
    row = train(recipe, args.out, resume=args.resume, progress=not args.no_progress)
    if row:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return 0
