"""Two-layer MLP of a transformer block: ``fc2(GELU(fc1(x)))`` with the exact (erf) GELU.

Key names ``fc1`` / ``fc2`` match CUT3R/CroCo (``enc_blocks.i.mlp.fc1.weight`` ...). CUT3R uses
``nn.GELU()`` (``approximate='none'``); the tanh approximation would move the parity fixture
by 7e-4, so it is not offered here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Mlp"]


class Mlp(nn.Module):
    """``(..., in_dim) -> (..., out_dim)`` through a hidden layer of width ``hidden_dim``.

    Args:
        in_dim: input width.
        hidden_dim: hidden width (``mlp_ratio * in_dim`` in a block).
        out_dim: output width, default ``in_dim``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, in_dim if out_dim is None else out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))
