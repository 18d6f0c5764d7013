"""Local correlation of two dense feature maps and its soft-argmax (for dense correspondence).

Unlike `mem4d.layers.corr` (all pairs of the 1/16 token grid, then pooled), this reads, for
every cell of a finer map, a (2r+1)^2 window of the other map around the same location at
several pooled levels, so its cost grows linearly with the number of cells::

    C_l(i, j, dy, dx) = <f1(i, j), pool_l(f2)(c_l(i) + dy, c_l(j) + dx)> / sqrt(C)

with level-l cell centres ``c_l(i) = (i + 0.5) / 2^l - 0.5`` (bilinear, zero outside).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["local_correlation", "soft_argmax_offset"]


def _window(radius: int, device: torch.device) -> tuple[Tensor, Tensor]:
    d = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return dy.reshape(-1), dx.reshape(-1)  # (K,) row-major (dy, dx)


def local_correlation(f1: Tensor, f2: Tensor, radius: int, levels: int) -> list[Tensor]:
    """Correlation windows at ``levels`` pooled levels of ``f2``.

    Args:
        f1, f2: (B, C, h, w) feature maps of the current and the earlier frame.
        radius: r; each level reads (2r+1)^2 offsets.
        levels: level l pools ``f2`` by 2^l (level 0 = same resolution).

    Returns:
        ``levels`` tensors (B, (2r+1)^2, h, w), offsets row-major (dy, dx) in level-l cells.
    """
    if f1.shape != f2.shape or f1.dim() != 4:
        raise ValueError(f"local_correlation expects two (B, C, h, w) maps of equal shape, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    B, C, h, w = f1.shape
    dy, dx = _window(radius, f1.device)
    K = dy.numel()
    ys = torch.arange(h, device=f1.device, dtype=torch.float32)
    xs = torch.arange(w, device=f1.device, dtype=torch.float32)
    query = f1.float().reshape(B, C, h * w, 1)
    out, level = [], f2.float()
    for lvl in range(levels):
        if lvl:
            ph, pw = level.shape[-2] % 2, level.shape[-1] % 2
            level = F.avg_pool2d(F.pad(level, (0, pw, 0, ph), mode="replicate") if ph or pw else level, 2)
        hl, wl = level.shape[-2:]
        s = 2.0**lvl
        cy = ((ys + 0.5) / s - 0.5)[:, None, None] + dy  # (h, 1, K)
        cx = ((xs + 0.5) / s - 0.5)[None, :, None] + dx  # (1, w, K)
        cy, cx = torch.broadcast_tensors(cy, cx)
        g = torch.stack([(2 * cx + 1) / wl - 1, (2 * cy + 1) / hl - 1], dim=-1).reshape(1, h * w, K, 2)
        sampled = F.grid_sample(level, g.expand(B, -1, -1, -1), mode="bilinear", padding_mode="zeros",
                                align_corners=False)  # (B, C, h*w, K)
        corr = (query * sampled).sum(1) / math.sqrt(C)  # (B, h*w, K)
        out.append(corr.transpose(1, 2).reshape(B, K, h, w))
    return out


def soft_argmax_offset(corr: Tensor, radius: int) -> Tensor:
    """Expected (dx, dy) offset of a correlation window under its softmax: (B, K, h, w) -> (B, 2, h, w)."""
    dy, dx = _window(radius, corr.device)
    p = torch.softmax(corr, dim=1)
    return torch.stack([(p * dx.view(1, -1, 1, 1)).sum(1), (p * dy.view(1, -1, 1, 1)).sum(1)], dim=1)
