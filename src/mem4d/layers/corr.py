"""All-pairs correlation, its average-pooled pyramid and a RAFT-style local lookup.

For token grids ``f1, f2`` of size h x w (paper Eq. 3)::

    C(i, j, m, n) = <f1(i, j), f2(m, n)> / sqrt(C)

Level l of the pyramid pools the last two dims (m, n) by 2^l (grids of odd size are
replicate-padded to even before each pooling, so every level has ceil(h / 2^l) rows). The
lookup reads, for every query location (i, j) and level l, a (2r+1) x (2r+1) window of
level l centred on the *same* location, expressed in level-l cells:
``c_l = (i + 0.5) / 2^l - 0.5`` (cell centres), offsets -r..r cells, bilinear, zero outside.
Output: ``levels * (2r+1)^2`` channels per location (324 for 4 levels, r = 4), whatever the
image size. Computed in float32 even under autocast.

Example:
    >>> f1, f2 = torch.randn(1, 12, 8), torch.randn(1, 12, 8)    # (B, h*w, C), h, w = 3, 4
    >>> corr_features(f1, f2, (3, 4), levels=4, radius=4).shape
    torch.Size([1, 12, 324])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["corr_pyramid", "corr_features", "lookup_local"]


def corr_pyramid(f1: Tensor, f2: Tensor, grid: tuple[int, int], levels: int) -> list[Tensor]:
    """Correlation volume and its pooled pyramid.

    Args:
        f1: (B, N, C) query features, N = h*w row-major.
        f2: (B, N, C) target features on the same grid.
        grid: (h, w).
        levels: number of levels (level 0 = full resolution).

    Returns:
        ``levels`` tensors of shape (B*N, 1, h_l, w_l).
    """
    h, w = grid
    B, N, C = f1.shape
    if N != h * w or f2.shape != f1.shape:
        raise ValueError(f"corr_pyramid: f1 {tuple(f1.shape)} / f2 {tuple(f2.shape)} do not match grid {grid}")
    # float32 whatever the autocast dtype: the volume is small, and bilinear lookups need exact coordinates.
    with torch.autocast(f1.device.type, enabled=False):
        corr = torch.einsum("bnc,bmc->bnm", f1.float(), f2.float()) / math.sqrt(C)
    level = corr.reshape(B * N, 1, h, w)
    pyramid = [level]
    for _ in range(levels - 1):
        ph, pw = level.shape[-2] % 2, level.shape[-1] % 2
        if ph or pw:
            level = F.pad(level, (0, pw, 0, ph), mode="replicate")
        level = F.avg_pool2d(level, 2)
        pyramid.append(level)
    return pyramid


def lookup_local(pyramid: list[Tensor], grid: tuple[int, int], radius: int) -> Tensor:
    """Reads a (2r+1)^2 window around each query's own location at every pyramid level.

    Args:
        pyramid: output of :func:`corr_pyramid`, each (B*N, 1, h_l, w_l).
        grid: (h, w) of the query grid (N = h*w).
        radius: r.

    Returns:
        (B, N, levels * (2r+1)^2); per level the window is ordered row-major (dy, dx).
    """
    h, w = grid
    BN = pyramid[0].shape[0]
    N = h * w
    device = pyramid[0].device
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    d = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(d, d, indexing="ij")  # window (2r+1, 2r+1)
    out = []
    for lvl, corr in enumerate(pyramid):
        hl, wl = corr.shape[-2:]
        scale = 2.0**lvl
        cy = (ys.reshape(N, 1, 1) + 0.5) / scale - 0.5 + dy  # (N, 2r+1, 2r+1) in level cells
        cx = (xs.reshape(N, 1, 1) + 0.5) / scale - 0.5 + dx
        # grid_sample with align_corners=False: pixel p <-> normalised (2p + 1) / size - 1.
        g = torch.stack([(2 * cx + 1) / wl - 1, (2 * cy + 1) / hl - 1], dim=-1)
        g = g.unsqueeze(0).expand(BN // N, -1, -1, -1, -1).reshape(BN, 2 * radius + 1, 2 * radius + 1, 2)
        sampled = F.grid_sample(corr, g, mode="bilinear", padding_mode="zeros", align_corners=False)
        out.append(sampled.reshape(BN // N, N, -1))
    return torch.cat(out, dim=-1)


def corr_features(f1: Tensor, f2: Tensor, grid: tuple[int, int], levels: int = 4, radius: int = 4) -> Tensor:
    """Pyramid + local lookup in one call: (B, N, C) x 2 -> (B, N, levels * (2r+1)^2)."""
    return lookup_local(corr_pyramid(f1, f2, grid, levels), grid, radius)
