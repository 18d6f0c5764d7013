"""Depth scale head [not in the paper; ``heads.depth_scale``]: one factor per frame on the camera pointmap.

The pointmap head gives shape and metric scale in one output, so data that teaches it near
scenes (``data.closeup_fraction``) also moves its shape (docs/RESULTS.md, run cu). This head
keeps the two apart: from the frame's final decoder tokens (the camera token and the mean of the
patch tokens, both of which have read the memories), the mean of the encoder's tokens (the frame
as the image encoder saw it, before any memory; the shipped tiny encoder was trained from scratch
on synthetic scenes, a CUT3R-initialised one has seen real images) and the mean log depth the
pointmap head gave, a small MLP predicts a log factor ``g_t`` and

    pts_cam_t <- exp(g_t) · pts_cam_t,

before anything reads ``pts_cam`` (the pose fit, the world pointmap, the memory write). The last
layer starts at zero, so a model given this head starts exactly where it was; trained alone
around a frozen model, it changes the scale of each frame and nothing else.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MAX_LOG_SCALE", "DepthScaleHead"]

MAX_LOG_SCALE = 1.5  # |g_t| stays below this (a factor of e^1.5 = 4.5 either way), smoothly (tanh)


class DepthScaleHead(nn.Module):
    """(camera token (B, D), patch tokens (B, N, D), encoder tokens (B, N, E), depth (B, H, W))
    -> log scale g (B,).

    Args:
        dim: token width D.
        encoder_dim: encoder width E.
        hidden: hidden width of the MLP.
    """

    def __init__(self, dim: int, encoder_dim: int, hidden: int) -> None:
        super().__init__()
        self.norm_camera = nn.LayerNorm(dim)
        self.norm_patches = nn.LayerNorm(dim)
        self.norm_encoder = nn.LayerNorm(encoder_dim)
        self.mlp = nn.Sequential(nn.Linear(2 * dim + encoder_dim + 1, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def reset_parameters(self) -> None:
        """The last layer at zero: g = 0, the pointmap as the pointmap head gave it."""
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, camera_token: Tensor, patches: Tensor, encoder_tokens: Tensor, depth: Tensor) -> Tensor:
        log_depth = depth.detach().float().clamp(min=1e-3).log().flatten(1).mean(1, keepdim=True)  # (B, 1)
        x = torch.cat([self.norm_camera(camera_token), self.norm_patches(patches.mean(1)),
                       self.norm_encoder(encoder_tokens.mean(1).to(camera_token.dtype)),
                       log_depth.to(camera_token.dtype)], dim=-1)
        g = self.mlp(x).float().squeeze(-1)
        return MAX_LOG_SCALE * torch.tanh(g / MAX_LOG_SCALE)
