"""Frames/s of trained checkpoints side by side: the speed figure of a candidate against the shipped model.

Streams one synthetic scene through ``Mem4D.step`` (batch 1, one thread by default) for every
checkpoint, in alternating passes so that a busy or drifting machine loads every checkpoint
alike, and reports the median frames/s over the passes and its ratio to the first checkpoint.
Each checkpoint runs with its own config (its ``heads.pose_refinement`` and
``heads.refine_select_after``), and, with ``--no-refinement-too``, also with the refinement off,
which shows what the refinement costs.

    .venv/bin/python bench/bench_checkpoint_speed.py default RUN/final [--size 96x128] [--frames 40] \
        [--passes 6] [--no-refinement-too] [--json out.json]

``default`` names the shipped model. Random-weight speed of the presets is `mem4d bench`'s job;
this one needs the trained heads (a correspondence head, the refinement's starts) to be there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from mem4d.cli.sizes import SIZE_HELP_SYNTHETIC, synthetic_size
from mem4d.data.synthetic import make_scene
from mem4d.model.mem4d import Mem4D


def load(name: str, refinement: str | None = None) -> Mem4D:
    """A checkpoint folder or ``default``; ``refinement`` overrides ``heads.pose_refinement``."""
    model = Mem4D.from_pretrained(name).eval()
    if refinement is not None:
        heads = dataclasses.replace(model.config.heads, pose_refinement=refinement)
        model.config = dataclasses.replace(model.config, heads=heads)
    return model


def frames_per_second(model: Mem4D, frames: torch.Tensor) -> float:
    """One streamed pass over ``frames`` (T, 3, H, W) in [0, 1]."""
    state = model.init_state(1, tuple(frames.shape[-2:]))
    start = time.perf_counter()
    with torch.no_grad():
        for t in range(frames.shape[0]):
            _, state = model.step(frames[t:t + 1], state)
    return frames.shape[0] / (time.perf_counter() - start)


def run(ckpts: list[str], size: tuple[int, int] = (96, 128), frames: int = 40, passes: int = 6,
        threads: int = 1, seed: int = 5, no_refinement_too: bool = False) -> list[dict]:
    """Per setting: {"ckpt", "refinement", "fps" (per pass), "fps_median", "ratio_to_first"}."""
    if frames < 2 or passes < 1:
        raise ValueError(f"--frames must be >= 2 and --passes >= 1, got {frames} and {passes}")
    torch.set_num_threads(threads)
    clip = make_scene(seed, frames, size).images.float()
    settings = []
    for name in ckpts:
        model = load(name)
        settings.append({"ckpt": name, "refinement": model.config.heads.pose_refinement, "model": model})
        if no_refinement_too and model.config.heads.pose_refinement != "none":
            settings.append({"ckpt": name, "refinement": "none", "model": load(name, "none")})
    for s in settings:
        s["fps"] = []
    frames_per_second(settings[0]["model"], clip[:2])  # warm-up
    for _ in range(passes):
        for s in settings:
            s["fps"].append(frames_per_second(s["model"], clip))
    first = statistics.median(settings[0]["fps"])
    rows = []
    for s in settings:
        median = statistics.median(s["fps"])
        rows.append({"ckpt": s["ckpt"], "refinement": s["refinement"], "fps": s["fps"], "fps_median": median,
                     "ratio_to_first": median / first})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpts", nargs="+", help="checkpoint folders, or 'default' for the shipped model")
    ap.add_argument("--size", type=synthetic_size, default=(96, 128),
                    help=f"{SIZE_HELP_SYNTHETIC} (default 96x128, the shipped size)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--passes", type=int, default=6, help="alternating passes per setting (median reported)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-refinement-too", action="store_true",
                    help="also run every refined checkpoint with heads.pose_refinement = none")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = run(args.ckpts, args.size, args.frames, args.passes, args.threads, no_refinement_too=args.no_refinement_too)
    H, W = args.size
    print(f"model.step frames/s at {H}x{W}, {args.frames} frames, {args.passes} alternating passes, "
          f"{args.threads} thread(s)\n")
    print("| checkpoint | refinement | frames/s (median) | ratio to the first | passes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ckpt']} | {r['refinement']} | {r['fps_median']:.1f} | {r['ratio_to_first']:.2f} | "
              f"{' '.join(f'{v:.1f}' for v in r['fps'])} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
