"""Local correlation of two dense feature maps and its soft-argmax (for dense correspondence).

Unlike `mem4d.layers.corr` (all pairs of the 1/16 token grid, then pooled), this reads, for
every cell of a finer map, a (2r+1)^2 window of the other map at several pooled levels, so its
cost grows linearly with the number of cells::

    C_l(i, j, dy, dx) = <f1(i, j), pool_l(f2)(c_l(i + v_i) + dy, c_l(j + u_j) + dx)> / sqrt(C)

with level-l cell centres ``c_l(i) = (i + 0.5) / 2^l - 0.5`` (bilinear, zero outside) and an
optional per-cell window centre offset ``(u, v)`` in level-0 cells (zero: the same location),
e.g. a coarser estimate of the motion in a coarse-to-fine search.

Two ways to the same numbers. Small maps (``h*w * h_l*w_l`` up to `VOLUME_LIMIT`, every training
size) take RAFT's route: one matrix product gives all pairs of level 0, pooling it over frame
t-1's cells gives the coarser levels (the correlation is linear in f2), and each cell samples its
window from its own one-channel map. Larger maps sample the C-channel features directly, whose
memory grows with ``h*w`` only. The volume route makes the correspondence head's forward and
backward 2.9x cheaper at 96x128 and 1.6x at 192x256 (`bench/bench_local_corr.py`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VOLUME_LIMIT", "correlation_volume", "correlation_window", "local_correlation", "pool_pyramid",
           "soft_argmax_offset", "volume_window", "window_reader"]

VOLUME_LIMIT = 2**24  # all-pairs entries per batch element (64 MiB in float32) beyond which windows
# are sampled from the features instead


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


def _window_grid(B: int, h: int, w: int, hl: int, wl: int, level: int, radius: int, centre: Tensor | None,
                 device: torch.device) -> Tensor:
    """grid_sample coordinates (B, h*w, K, 2) of every cell's window in a level-l map of (hl, wl)."""
    dy, dx = _window(radius, device)
    s = 2.0**level
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    if centre is not None:
        xs = xs + centre[:, 0].float()
        ys = ys + centre[:, 1].float()
    cx = ((xs + 0.5) / s - 0.5).expand(B, h, w)[..., None] + dx  # (B, h, w, K)
    cy = ((ys + 0.5) / s - 0.5).expand(B, h, w)[..., None] + dy
    return torch.stack([(2 * cx + 1) / wl - 1, (2 * cy + 1) / hl - 1], dim=-1).reshape(B, h * w, dy.numel(), 2)


def correlation_volume(f1: Tensor, f2: Tensor) -> Tensor:
    """All pairs: (B, C, h, w) x (B, C, h2, w2) -> (B, h*w, h2, w2), ``<f1(i), f2(j)> / sqrt(C)``."""
    B, C, h, w = f1.shape
    vol = torch.bmm((f1.float() / math.sqrt(C)).flatten(2).transpose(1, 2), f2.float().flatten(2))
    return vol.reshape(B, h * w, *f2.shape[-2:])


def volume_window(volume: Tensor, grid: tuple[int, int], level: int, radius: int, centre: Tensor | None = None) -> Tensor:
    """The (2r+1)^2 window of every cell, read from its own row of a (pooled) correlation volume.

    Args:
        volume: (B, h*w, h_l, w_l) `correlation_volume` pooled to ``level`` over its last two dims.
        grid: (h, w) of the query cells.
        level, radius, centre: as in `correlation_window`.

    Returns:
        (B, (2r+1)^2, h, w), equal to `correlation_window` of the features the volume came from.
    """
    B, N, hl, wl = volume.shape
    h, w = grid
    g = _window_grid(B, h, w, hl, wl, level, radius, centre, volume.device)  # (B, N, K, 2)
    K = g.shape[2]
    sampled = F.grid_sample(volume.reshape(B * N, 1, hl, wl), g.reshape(B * N, 1, K, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)  # (B*N, 1, 1, K)
    return sampled.reshape(B, N, K).transpose(1, 2).reshape(B, K, h, w)


def _use_volume(f1: Tensor, f2_level: Tensor) -> bool:
    return f1.shape[-2] * f1.shape[-1] * f2_level.shape[-2] * f2_level.shape[-1] <= VOLUME_LIMIT


def window_reader(f1: Tensor, f2_level: Tensor, level: int):
    """``read(radius, centre)`` -> `correlation_window` ``(f1, f2_level, level, radius, centre)``, the
    volume (when small) computed once for every read (e.g. the reads of a coarse-to-fine search)."""
    if not _use_volume(f1, f2_level):
        return lambda radius, centre=None: correlation_window(f1, f2_level, level, radius, centre)
    volume = correlation_volume(f1, f2_level)
    return lambda radius, centre=None: volume_window(volume, f1.shape[-2:], level, radius, centre)


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
    if _use_volume(f1, f2_level):
        return volume_window(correlation_volume(f1, f2_level), (h, w), level, radius, centre)
    g = _window_grid(B, h, w, hl, wl, level, radius, centre, f1.device)
    K = g.shape[2]
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
    if _use_volume(f1, f2):  # pooling the volume over f2's cells = correlating with the pooled f2
        B, _, h, w = f1.shape
        vol = correlation_volume(f1, f2)
        pooled = pool_pyramid(vol.reshape(B * h * w, 1, *f2.shape[-2:]), levels)
        return [volume_window(v.reshape(B, h * w, *v.shape[-2:]), (h, w), lvl, radius, centre)
                for lvl, v in enumerate(pooled)]
    return [correlation_window(f1, f2_l, lvl, radius, centre) for lvl, f2_l in enumerate(pool_pyramid(f2, levels))]


def soft_argmax_offset(corr: Tensor, radius: int) -> Tensor:
    """Expected (dx, dy) offset of a correlation window under its softmax: (B, K, h, w) -> (B, 2, h, w)."""
    dy, dx = _window(radius, corr.device)
    p = torch.softmax(corr, dim=1)
    return torch.stack([(p * dx.view(1, -1, 1, 1)).sum(1), (p * dy.view(1, -1, 1, 1)).sum(1)], dim=1)
