"""Pointmap heads (paper Eq. 6): a DPT over the encoder output and three decoder stages.

Each head predicts 3 coordinates and a confidence per pixel:

- coordinates: ``v / |v| * expm1(|v|)`` (DUSt3R's "exp" mode: metric points over several
  orders of magnitude with a bounded raw output; ``|v|`` is clamped at
  ``heads.max_log_depth``);
- confidence: ``1 + exp(c)`` (>= 1; ``c`` clamped at 30 to stay finite).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mem4d.config import HeadsConfig
from mem4d.layers.dpt import DPTHead

__all__ = ["PointmapHead"]


class PointmapHead(nn.Module):
    """Four token maps -> pointmap (B, H, W, 3) and confidence (B, H, W).

    Args:
        in_dims: widths of the four inputs (encoder width E, then D three times).
        cfg: head hyper-parameters.
        patch_size: pixels per token side.
    """

    def __init__(self, in_dims: Sequence[int], cfg: HeadsConfig, patch_size: int) -> None:
        super().__init__()
        self.dpt = DPTHead(in_dims, 4, features=cfg.dpt_features, layer_dims=cfg.dpt_layer_dims,
                           hidden=cfg.dpt_hidden, patch_size=patch_size, full_res=cfg.dpt_full_res)
        self.max_log_depth = cfg.max_log_depth

    def forward(self, tokens: Sequence[Tensor], grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        out = self.dpt(tokens, grid).float()  # (B, 4, H, W); channel-first keeps the reductions fast
        v = out[:, :3]
        norm = torch.sqrt((v * v).sum(dim=1, keepdim=True) + 1e-12)  # eps inside: finite gradient at v = 0
        pts = v * (torch.expm1(norm.clamp(max=self.max_log_depth)) / norm)
        conf = 1 + torch.exp(out[:, 3].clamp(max=30.0))
        return pts.permute(0, 2, 3, 1).contiguous(), conf
