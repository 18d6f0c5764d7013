"""Local correlation of two dense feature maps and its soft-argmax (for dense correspondence).

Unlike `mem4d.layers.corr` (all pairs of the 1/16 token grid, then pooled), this reads, for
every cell of a finer map, a (2r+1)^2 window of the other map at several pooled levels, so its
cost grows linearly with the number of cells::

    C_l(i, j, dy, dx) = <f1(i, j), pool_l(f2)(c_l(i + v_i) + dy, c_l(j + u_j) + dx)> / sqrt(C)

with level-l cell centres ``c_l(i) = (i + 0.5) / 2^l - 0.5`` (bilinear, zero outside) and an
optional per-cell window centre offset ``(u, v)`` in level-0 cells (zero: the same location),
e.g. a coarser estimate of the motion in a coarse-to-fine search.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["correlation_window", "local_correlation", "pool_pyramid", "soft_argmax_offset"]


def _window(radius: int, device: torch.device) -> tuple[Tensor, Tensor]:
    d = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    return dy.reshape(-1), dx.reshape(-1)  # (K,) row-major (dy, dx)


def pool_pyramid(f: Tensor, levels: int) -> list[Tensor]:
    """``levels`` maps: level l is ``f`` (B, C, h, w) average-pooled by 2^l (odd sizes replicate-padded)."""
    out, level = [f.float()], f.float()
    for _ in range(levels - 1):
        ph, pw = level.shape[-2] % 2, level.shape[-1] % 2
        level = F.avg_pool2d(F.pad(level, (0, pw, 0, ph), mode="replicate") if ph or pw else level, 2)
        out.append(level)
    return out


def correlation_window(f1: Tensor, f2_level: Tensor, level: int, radius: int, centre: Tensor | None = None) -> Tensor:
    """The (2r+1)^2 window of one pooled level.

    Args:
        f1: (B, C, h, w) query features (level 0).
        f2_level: (B, C, h_l, w_l) the other frame's features pooled to ``level``.
        level: l (cells of f2_level are 2^l level-0 cells).
        radius: r.
        centre: (B, 2, h, w) window centre offsets (dx, dy) in level-0 cells, or None (zero).

    Returns:
        (B, (2r+1)^2, h, w), offsets row-major (dy, dx) in level-l cells around the centre.
    """
    B, C, h, w = f1.shape
    hl, wl = f2_level.shape[-2:]
    dy, dx = _window(radius, f1.device)
    K = dy.numel()
    s = 2.0**level
    ys = torch.arange(h, device=f1.device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=f1.device, dtype=torch.float32).view(1, 1, w)
    if centre is not None:
        xs = xs + centre[:, 0].float()
        ys = ys + centre[:, 1].float()
    cx = ((xs + 0.5) / s - 0.5).expand(B, h, w)[..., None] + dx  # (B, h, w, K)
    cy = ((ys + 0.5) / s - 0.5).expand(B, h, w)[..., None] + dy
    g = torch.stack([(2 * cx + 1) / wl - 1, (2 * cy + 1) / hl - 1], dim=-1).reshape(B, h * w, K, 2)
    sampled = F.grid_sample(f2_level.float(), g, mode="bilinear", padding_mode="zeros", align_corners=False)
    corr = (f1.float().reshape(B, C, h * w, 1) * sampled).sum(1) / math.sqrt(C)  # (B, h*w, K)
    return corr.transpose(1, 2).reshape(B, K, h, w)


def local_correlation(f1: Tensor, f2: Tensor, radius: int, levels: int, centre: Tensor | None = None) -> list[Tensor]:
    """Correlation windows at ``levels`` pooled levels of ``f2``.

    Args:
        f1, f2: (B, C, h, w) feature maps of the current and the earlier frame.
        radius: r; each level reads (2r+1)^2 offsets.
        levels: level l pools ``f2`` by 2^l (level 0 = same resolution).
        centre: optional (B, 2, h, w) window centre offsets in level-0 cells (see `correlation_window`).

    Returns:
        ``levels`` tensors (B, (2r+1)^2, h, w), offsets row-major (dy, dx) in level-l cells.
    """
    if f1.shape != f2.shape or f1.dim() != 4:
        raise ValueError(f"local_correlation expects two (B, C, h, w) maps of equal shape, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    return [correlation_window(f1, f2_l, lvl, radius, centre) for lvl, f2_l in enumerate(pool_pyramid(f2, levels))]


def soft_argmax_offset(corr: Tensor, radius: int) -> Tensor:
    """Expected (dx, dy) offset of a correlation window under its softmax: (B, K, h, w) -> (B, 2, h, w)."""
    dy, dx = _window(radius, corr.device)
    p = torch.softmax(corr, dim=1)
    return torch.stack([(p * dx.view(1, -1, 1, 1)).sum(1), (p * dy.view(1, -1, 1, 1)).sum(1)], dim=1)
