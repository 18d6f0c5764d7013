"""Cost of the correspondence head (`heads.camera_pose: procrustes`): its two correlation routes.

Times one forward and backward of `mem4d.model.correspondence.CorrespondenceHead` on a frame pair
at each size, once with the all-pairs volume route of `mem4d.layers.local_corr` (what training
sizes take) and once forced onto the feature-sampling route (what maps beyond `VOLUME_LIMIT`
take), interleaved so that a busy machine slows both alike; reports CPU ms and the ratio. Both
routes give the same numbers (`tests/layers/test_local_corr.py`).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_local_corr.py [--sizes 96x128,144x144,192x256] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mem4d.layers import local_corr
from mem4d.model.correspondence import CorrespondenceHead


def _step(head: CorrespondenceHead, a: torch.Tensor, b: torch.Tensor, tokens: torch.Tensor, grid) -> float:
    start = time.process_time()
    flow, weight = head(head.features(a), head.features(b), tokens, grid)
    (flow.square().mean() + weight.mean()).backward()
    return 1000 * (time.process_time() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="96x128,144x144,192x256", help="HxW sizes, comma-separated")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    head = CorrespondenceHead(dim=128)
    default_limit = local_corr.VOLUME_LIMIT
    print("| size (HxW) | volume route ms | feature route ms | ratio |")
    print("|---|---|---|---|")
    for size in args.sizes.split(","):
        H, W = (int(v) for v in size.lower().split("x"))
        a, b = torch.rand(args.batch, 3, H, W), torch.rand(args.batch, 3, H, W)
        grid = (H // 16, W // 16)
        tokens = torch.randn(args.batch, grid[0] * grid[1], 128)
        times: dict[str, list[float]] = {"volume": [], "features": []}
        for _ in range(args.reps + 1):  # the first round warms up and is dropped
            for route, limit in (("volume", 2**62), ("features", 0)):
                local_corr.VOLUME_LIMIT = limit
                head.zero_grad(set_to_none=True)
                times[route].append(_step(head, a, b, tokens, grid))
        local_corr.VOLUME_LIMIT = default_limit
        vol, feat = (statistics.median(times[k][1:]) for k in ("volume", "features"))
        print(f"| {H}x{W} | {vol:.0f} | {feat:.0f} | {feat / vol:.1f}x |")


if __name__ == "__main__":
    main()
