"""The ``unified`` variant: one CUT3R-style recurrent state in place of TDM + PSM.

A fixed set of S learnable state tokens (B, S, D) is *read* by both blocks of every decoder
stage (as memory tokens) and *updated* after each frame by blocks whose queries are the state
tokens and whose extra keys/values are the frame's final decoder tokens; each block is
residual, so ``state <- state + update``. The state tokens sit on a fixed near-square grid at
t = -1 (RoPE needs positions; they carry no image geometry). Default depth of the update
= TDM layers + E_p layers, so the variant has about the dual memory's parameter budget.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mem4d.config import Mem4DConfig
from mem4d.layers.block import Block
from mem4d.layers.rope import RotaryEmbedding
from mem4d.model.checkpointing import CheckpointedBlocks
from mem4d.model.positions import frame_positions

__all__ = ["UnifiedMemory"]


def _near_square(n: int) -> tuple[int, int]:
    h = int(math.isqrt(n))
    while n % h:
        h -= 1
    return h, n // h


class UnifiedMemory(CheckpointedBlocks, nn.Module):
    """Learnable initial state + update blocks."""

    def __init__(self, cfg: Mem4DConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        S, D = cfg.unified.num_state_tokens, cfg.dim
        layers = cfg.unified.num_layers or (cfg.tdm.num_layers + cfg.psm.num_layers)
        self.grid = _near_square(S)
        self.state_tokens = nn.Parameter(torch.zeros(1, S, D))
        self.blocks = nn.ModuleList(Block(D, cfg.num_heads, cfg.mlp_ratio, rope=rope) for _ in range(layers))

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.state_tokens, std=0.02)

    def positions(self, device: torch.device | str | None = None) -> Tensor:
        """(S, 3) positions of the state tokens."""
        return frame_positions(self.grid, -1.0, device)

    def initial(self, batch_size: int) -> Tensor:
        """(B, S, D) state before frame 0."""
        return self.state_tokens.expand(batch_size, -1, -1)

    def update(self, state: Tensor, frame_tokens: Tensor, frame_pos: Tensor) -> Tensor:
        """state (B, S, D), frame tokens (B, N+1, D) at positions (B, N+1, 3) -> new state (B, S, D)."""
        pos = self.positions(state.device).unsqueeze(0).expand(state.shape[0], -1, -1)
        x = state
        for block in self.blocks:
            x = self.run_block(block, x, pos, frame_tokens, frame_pos)
        return x
