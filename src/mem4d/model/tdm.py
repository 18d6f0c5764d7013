"""Transient Dynamics Memory, TDM (paper §3.2, Eq. 3-4).

For each of the M_d most recent past frames k = 1..M_d: the correlation of the current
features with frame t-k's (``layers/corr.py``: 4-level average-pooled pyramid read in a
radius-r window around the same location -> levels*(2r+1)^2 = 324 channels), an MLP
324 -> D (a motion map per past frame), then a motion encoder of self-attention blocks with
3D RoPE over both maps jointly (map k at t = -k). Output: the TDM tokens (k*N, D).
Computed afresh every step; nothing persists but the past features (kept in the state).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mem4d.config import Mem4DConfig
from mem4d.layers.block import Block
from mem4d.layers.corr import corr_features
from mem4d.layers.mlp import Mlp
from mem4d.layers.rope import RotaryEmbedding
from mem4d.model.checkpointing import CheckpointedBlocks
from mem4d.model.positions import frame_positions

__all__ = ["TransientDynamicsMemory"]


class TransientDynamicsMemory(CheckpointedBlocks, nn.Module):
    """Current (B, N, D) + past features -> TDM tokens (B, k*N, D) and positions (k*N, 3)."""

    def __init__(self, cfg: Mem4DConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        D = cfg.dim
        self.num_past, self.levels, self.radius = cfg.tdm.num_past, cfg.tdm.levels, cfg.tdm.radius
        self.proj = Mlp(cfg.tdm.corr_channels, D, D)
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio, rope=rope, use_mem_norm=False) for _ in range(cfg.tdm.num_layers)
        )

    def forward(self, current: Tensor, past: list[Tensor], grid: tuple[int, int]) -> tuple[Tensor, Tensor] | None:
        """
        Args:
            current: (B, N, D) projected encoder features of frame t.
            past: earlier frames' features, oldest first; the last ``num_past`` are used.
            grid: (h, w).

        Returns:
            (tokens (B, k*N, D) with the most recent past frame's rows first, positions
            (k*N, 3)), or None when there is no past frame (frame 0).
        """
        recent = list(reversed(past[-self.num_past:]))
        if not recent:
            return None
        maps, pos = [], []
        for k, feat in enumerate(recent, start=1):
            corr = corr_features(current, feat, grid, self.levels, self.radius)  # float32
            maps.append(self.proj(corr.to(current.dtype)))
            pos.append(frame_positions(grid, -float(k), current.device))
        x = torch.cat(maps, dim=1)
        p = torch.cat(pos, dim=0)
        pb = p.unsqueeze(0).expand(x.shape[0], -1, -1)
        for block in self.blocks:
            x = self.run_block(block, x, pb)
        return x, p
