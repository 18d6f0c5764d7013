"""Motion head (not in the paper): per-pixel probability of independent motion.

Input per token: the final decoder token and the TDM token of the most recent past frame
(zeros when there is none: frame 0, or a variant without TDM). An MLP predicts the p x p
logits of the token's patch, unfolded to (B, H, W), then a sigmoid.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mem4d.layers.mlp import Mlp

__all__ = ["MotionHead"]


class MotionHead(nn.Module):
    """(B, N, D) decoder tokens + (B, N, D) or None TDM tokens -> (B, H, W) in (0, 1)."""

    def __init__(self, dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.mlp = Mlp(2 * dim, dim, patch_size * patch_size)

    def forward(self, tokens: Tensor, motion: Tensor | None, grid: tuple[int, int]) -> Tensor:
        if motion is None:
            motion = torch.zeros_like(tokens)
        logits = self.mlp(torch.cat([tokens, motion], dim=-1)).float()  # (B, N, p*p)
        B, (h, w), p = tokens.shape[0], grid, self.patch_size
        logits = logits.reshape(B, h, w, p, p).permute(0, 1, 3, 2, 4).reshape(B, h * p, w * p)
        return torch.sigmoid(logits)
