"""Throughput of the synthetic scene generator (`mem4d.data.synthetic.make_scene`).

Measures frames per second of complete clips (scene sampling + rendering + ground truth, i.e.
what on-the-fly training data costs) at 128x96 and 256x192, median over a few scenes, and the
render-only rate, for the default look and the realistic appearance (`appearance="realistic"`:
its clip rate includes the camera effects, its render-only rate does not). The texture bank,
photo textures included, is warmed up first (a one-off cost per process, reported).

    .venv/bin/python bench/bench_synthetic.py                 # defaults: 6 scenes x 32 frames
    .venv/bin/python bench/bench_synthetic.py --threads 1 2 --scenes 8 --frames 48
    .venv/bin/python bench/bench_synthetic.py --appearances realistic --sizes 96x128

`torch.get_num_threads()` of the process is printed; each row states the threads it ran with.
Besides wall-clock rates it reports frames per CPU-second of the process (`time.process_time`),
which a busy machine disturbs much less (with one thread, the rate an idle core would give).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=6, help="scenes per size (median is reported)")
    parser.add_argument("--frames", type=int, default=32, help="frames per scene")
    parser.add_argument("--sizes", nargs="+", default=["96x128", "192x256"], help="HxW sizes")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch intra-op threads to try (default 1, make_scene's default: on a busy 2-core machine more "
        "threads are many times slower; parallelise with processes instead)",
    )
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--appearances", nargs="+", default=["default", "realistic"],
                        help="looks to measure: default and/or realistic")
    args = parser.parse_args(argv)

    from mem4d.data.synthetic import make_scene
    from mem4d.data.synthetic.generate import build_layout
    from mem4d.data.synthetic.render import Renderer
    from mem4d.data.synthetic.textures import BANK_SIZE, bank

    realistic = "realistic" in args.appearances
    if set(args.appearances) - {"default", "realistic"}:
        parser.error(f"--appearances takes default and/or realistic, got {args.appearances}")
    t0 = time.perf_counter()
    for i in range(BANK_SIZE):
        bank().ensure(i)
    warm = time.perf_counter() - t0
    print(f"texture bank warm-up: {warm:.2f} s for {BANK_SIZE} textures (once per process)")
    if realistic:
        from mem4d.data.synthetic.textures import TOTAL_BANK_SIZE

        t0 = time.perf_counter()
        for i in range(BANK_SIZE, TOTAL_BANK_SIZE):
            bank().ensure(i)
        warm = time.perf_counter() - t0
        print(f"realistic textures warm-up: {warm:.2f} s for {TOTAL_BANK_SIZE - BANK_SIZE} natural and photo "
              f"textures (once per process, the photo packages' import included)")
    print(
        f"torch {torch.__version__}, process default torch.get_num_threads() = {torch.get_num_threads()}, "
        f"{args.scenes} scenes x {args.frames} frames per size, median; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (other processes slow this down)\n"
    )
    print("| appearance | threads | size (WxH) | clip frames/s | clip frames/CPU-s | render-only frames/s | ms/frame |")
    print("|---|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)  # make_scene(num_threads=...) below sets the same during rendering
        for size in args.sizes:
            H, W = (int(v) for v in size.lower().split("x"))
            for look in args.appearances:
                # the default look passes no appearance argument: the bench runs on older versions too
                look_kw = {} if look == "default" else {"appearance": look}
                make_scene(args.seed - 1, 4, (H, W), num_threads=threads, **look_kw)  # warm-up
                full, cpu, render_only = [], [], []
                for k in range(args.scenes):
                    seed = args.seed + k
                    t, c = time.perf_counter(), time.process_time()
                    make_scene(seed, args.frames, (H, W), num_threads=threads, **look_kw)
                    full.append(args.frames / (time.perf_counter() - t))
                    cpu.append(args.frames / (time.process_time() - c))
                    # render-only: the same scene, layout sampled outside the timer
                    if look == "default":
                        layout, _ = build_layout(seed, args.frames, (H, W))
                    else:
                        from mem4d.data.synthetic.appearance import resolve_appearance

                        layout, _ = build_layout(seed, args.frames, (H, W), appearance=resolve_appearance(look))
                    t = time.perf_counter()
                    Renderer(layout, (H, W)).render()
                    render_only.append(args.frames / (time.perf_counter() - t))
                f, c, r = statistics.median(full), statistics.median(cpu), statistics.median(render_only)
                print(f"| {look} | {threads} | {W}x{H} | {f:.0f} | {c:.0f} | {r:.0f} | {1000 / f:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
