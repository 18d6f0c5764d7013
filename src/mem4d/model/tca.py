"""Temporal Context Aggregator, TCA (paper §3.1, Eq. 1-2).

The past frame at distance k in the window (k = 1..W) is compressed by a 2D conv whose
kernel = stride = ``s(k) = 2 ** floor(log2 k)`` (1, 2, 2, 4, 4 for W = 5; one conv per
distinct stride, grids zero-padded at the bottom/right to a multiple of it). The current
tokens (t = 0) and the compressed past tokens (t = -k, each at the centre of the region it
covers) pass through self-attention blocks with 3D RoPE over (t, y, x); the current frame's
rows are kept: the enriched tokens x_t (the last block computes only those rows).

Token count per step: N * (1 + sum_k 1/s(k)^2) = 2.625 N for W = 5 (full window).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.config import Mem4DConfig, TCAConfig
from mem4d.layers.block import Block
from mem4d.layers.rope import RotaryEmbedding
from mem4d.model.checkpointing import CheckpointedBlocks
from mem4d.model.positions import frame_positions, pooled_positions

__all__ = ["TemporalContextAggregator"]


class TemporalContextAggregator(CheckpointedBlocks, nn.Module):
    """(B, N, D) current features + up to W past ones -> (B, N, D) enriched tokens."""

    def __init__(self, cfg: Mem4DConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        D = cfg.dim
        self.window = cfg.tca.window
        strides = sorted({TCAConfig.stride(k) for k in range(1, self.window + 1)})
        self.compress = nn.ModuleDict({str(s): nn.Conv2d(D, D, kernel_size=s, stride=s) for s in strides})
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio, rope=rope, use_mem_norm=False) for _ in range(cfg.tca.num_layers)
        )

    def forward(self, current: Tensor, past: list[Tensor], grid: tuple[int, int]) -> Tensor:
        """
        Args:
            current: (B, N, D) projected encoder features of frame t.
            past: projected features of earlier frames, oldest first, each (B, N, D); the last
                ``window`` are used (the most recent is at distance 1).
            grid: (h, w) token grid, N = h*w.
        """
        B, N, D = current.shape
        h, w = grid
        tokens, pos = [current], [frame_positions(grid, 0.0, current.device)]
        for k, feat in enumerate(reversed(past[-self.window:]), start=1):
            s = TCAConfig.stride(k)
            x = feat.transpose(1, 2).reshape(B, D, h, w)
            x = F.pad(x, (0, -w % s, 0, -h % s))
            tokens.append(self.compress[str(s)](x).flatten(2).transpose(1, 2))
            pos.append(pooled_positions(grid, s, s, -float(k), current.device))
        x = torch.cat(tokens, dim=1)
        p = torch.cat(pos, dim=0).unsqueeze(0).expand(B, -1, -1)
        for block in self.blocks[:-1]:
            x = self.run_block(block, x, p)
        # Last layer: only the current rows are kept, so the past rows are keys/values only. The
        # blocks have no norm_mem (memory shares norm1), so this equals full self-attention.
        if x.shape[1] == N:
            return self.run_block(self.blocks[-1], x, p)
        return self.run_block(self.blocks[-1], x[:, :N], p[:, :N], x[:, N:], p[:, N:])
