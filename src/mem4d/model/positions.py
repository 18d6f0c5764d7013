"""3D RoPE positions (t, y, x) of frame tokens and of compressed (pooled) tokens.

Units: t in frames relative to the frame being predicted (current = 0, a past frame at
distance k = -k), y and x in patches of the full-resolution grid. A token that summarises a
block of the grid sits at the centre of the part of the block that lies inside the grid, and
a token that summarises several frames at their mean time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["frame_positions", "pooled_grid", "pooled_positions"]


def pooled_grid(grid: tuple[int, int], ky: int, kx: int) -> tuple[int, int]:
    """Size of an (h, w) grid after (ky, kx) pooling with zero padding at the bottom/right."""
    return math.ceil(grid[0] / ky), math.ceil(grid[1] / kx)


def _centres(n: int, k: int, device: torch.device | str | None) -> Tensor:
    start = torch.arange(0, n, k, device=device, dtype=torch.float32)
    end = torch.clamp(start + k, max=n) - 1
    return (start + end) / 2


def pooled_positions(grid: tuple[int, int], ky: int, kx: int, t: float, device: torch.device | str | None = None) -> Tensor:
    """(h'*w', 3) float32 positions (t, y, x) of the tokens of a (ky, kx)-pooled grid, row-major."""
    cy, cx = _centres(grid[0], ky, device), _centres(grid[1], kx, device)
    yy, xx = torch.meshgrid(cy, cx, indexing="ij")
    tt = torch.full_like(yy, float(t))
    return torch.stack([tt, yy, xx], dim=-1).reshape(-1, 3)


def frame_positions(grid: tuple[int, int], t: float, device: torch.device | str | None = None) -> Tensor:
    """(h*w, 3) float32 positions (t, y, x) of a full-resolution frame's tokens, row-major."""
    return pooled_positions(grid, 1, 1, t, device)
