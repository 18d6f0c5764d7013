"""CPU cost of a recipe's training steps per variant, and the hours a run at its budget would take.

Runs the recipe's first steps as `mem4d train` would (the same clips, model, objective, AdamW
step; one thread, no validation) for each variant, the variants interleaved step by step on the
same clips, and measures per step the process's CPU seconds (`time.process_time`, what the step
costs one free core whatever else the machine is doing) and the wall-clock seconds. Clip
generation is timed once per step (every variant trains on the same clips). The projection:
train.steps x (mean model CPU s/step + mean generation CPU s/step), on one core.

    .venv/bin/python bench/bench_train_cost.py --config configs/ablation-tiny.yaml --steps 16
    .venv/bin/python bench/bench_train_cost.py --config configs/ablation-tiny.yaml --variants full \
        --set model.overrides.heads.camera_pose=absolute
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="training recipe")
    parser.add_argument("--set", action="append", default=[], help="recipe override, e.g. train.batch_size=1")
    parser.add_argument("--variants", default="full,unified", help="comma-separated variants (default full,unified)")
    parser.add_argument("--steps", type=int, default=16, help="steps measured (the recipe's first; default 16)")
    args = parser.parse_args(argv)

    import torch

    from mem4d.losses.objective import Mem4DObjective
    from mem4d.train.batches import make_batches
    from mem4d.train.optim import build_optimizer
    from mem4d.train.recipe import Recipe
    from mem4d.train.trainer import _stack, build_model

    torch.set_num_threads(1)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    recipes = {v: Recipe.from_yaml(args.config, [*args.set, f"model.overrides.variant={v}"]) for v in variants}
    first = recipes[variants[0]]
    data = make_batches(first.data, first.train.batch_size)
    state = {}
    for v, r in recipes.items():
        torch.manual_seed(r.train.seed)
        model = build_model(r).train()
        state[v] = (model, build_optimizer(model, r.train.lr, r.train.weight_decay, r.train.betas),
                    Mem4DObjective(r.loss))
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    generation: list[float] = []
    load = os.getloadavg()[0]
    for step in range(args.steps):
        c = time.process_time()
        clip, targets = _stack(data.batch(step), torch.device("cpu"))
        generation.append(time.process_time() - c)
        for v in variants:
            model, optimizer, objective = state[v]
            c, w = time.process_time(), time.perf_counter()
            loss, _ = objective(model(clip), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), first.train.grad_clip)
            optimizer.step()
            cpu[v].append(time.process_time() - c)
            wall[v].append(time.perf_counter() - w)
        T, H, W = clip.shape[1], clip.shape[-2], clip.shape[-1]
        print(f"step {step}: {T}x{H}x{W} generation {generation[-1]:.2f} CPU-s; "
              + ", ".join(f"{v} {cpu[v][-1]:.2f} CPU-s / {wall[v][-1]:.2f} s" for v in variants), flush=True)
    gen = statistics.mean(generation)
    print(f"\n{args.config} {' '.join(args.set)}: {args.steps} steps, batch {first.train.batch_size}, one thread, "
          f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}; clip generation {gen:.2f} CPU-s/step (mean)\n")
    print(f"| variant | CPU s/step (mean) | median | wall s/step (mean) | CPU h for {first.train.steps} steps |")
    print("|---|---|---|---|---|")
    for v in variants:
        mean = statistics.mean(cpu[v])
        hours = first.train.steps * (mean + gen) / 3600
        print(f"| {v} | {mean:.2f} | {statistics.median(cpu[v]):.2f} | {statistics.mean(wall[v]):.2f} | {hours:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
