"""Cost of a training step across the clip shapes a mixed-size recipe draws (`data.sizes`).

For a recipe, draws the clip shapes (T, H, W) of its first steps, picks five from the smallest
to the largest image, and times one forward + backward of the model (batch of the recipe, one
thread) and the clips' generation for each. A flat step time means the token budget does its
job. It also fits time per frame = a + b * tokens over the five and prints a / b, the model's
per-frame work in tokens (`data.sizes.frame_overhead`).

    .venv/bin/python bench/bench_size_mix.py --config configs/realistic-tiny.yaml
    .venv/bin/python bench/bench_size_mix.py --config configs/realistic-tiny.yaml --set data.sizes.frame_overhead=0
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a training recipe with data.sizes")
    parser.add_argument("--set", action="append", default=[], help="recipe override, e.g. data.sizes.token_budget=600")
    parser.add_argument("--steps", type=int, default=200, help="steps whose shapes are drawn")
    parser.add_argument("--repeats", type=int, default=2, help="timed forward+backward passes per shape (min)")
    args = parser.parse_args(argv)

    from mem4d.losses.objective import Mem4DObjective
    from mem4d.train.batches import SyntheticBatches
    from mem4d.train.recipe import Recipe
    from mem4d.train.trainer import _stack, build_model

    torch.set_num_threads(1)
    recipe = Recipe.from_yaml(args.config, args.set)
    if recipe.data.sizes.long_side is None:
        parser.error(f"{args.config} has no data.sizes.long_side: every step has the same shape")
    model = build_model(recipe)
    objective = Mem4DObjective(recipe.loss)
    batches = SyntheticBatches(recipe.data, recipe.train.batch_size)
    first_step: dict[tuple[int, int], int] = {}
    for step in range(args.steps):
        first_step.setdefault(batches.clip_shape(step)[1:], step)
    by_area = sorted(first_step.items(), key=lambda kv: kv[0][0] * kv[0][1])
    picks = [by_area[round(q * (len(by_area) - 1))] for q in (0.0, 0.25, 0.5, 0.75, 1.0)]
    sizes = recipe.data.sizes
    print(f"{args.config} {' '.join(args.set)}: token_budget {sizes.token_budget}, frame_overhead "
          f"{sizes.frame_overhead}, batch {recipe.train.batch_size}; one thread, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| size (WxH) | frames | tokens/frame | forward+backward s | generation s |")
    print("|---|---|---|---|---|")
    rows = []
    for (H, W), step in picks:
        T = batches.clip_shape(step)[0]
        t = time.perf_counter()
        clips = batches.batch(step)
        generation = time.perf_counter() - t
        clip, targets = _stack(clips, torch.device("cpu"))
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            loss, _ = objective(model(clip), targets)
            loss.backward()
            times.append(time.perf_counter() - t)
        tokens = (H // sizes.multiple) * (W // sizes.multiple)
        rows.append((T, tokens, min(times)))
        print(f"| {W}x{H} | {T} | {tokens} | {min(times):.2f} | {generation:.2f} |", flush=True)
    T, tokens, seconds = (np.array(v, dtype=np.float64) for v in zip(*rows))
    b, a = np.polyfit(tokens, seconds / T, 1)
    print(f"\nper frame: {a * 1000:.0f} ms + {b * 1000:.2f} ms x tokens -> frame_overhead ~ {a / b:.0f} tokens"
          if b > 0 else "\nper-frame time does not grow with the tokens here: no overhead estimate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
