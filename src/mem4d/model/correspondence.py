"""Correspondence head (``heads.camera_pose == "procrustes"``) [not in the paper].

Why it exists: measured on the CPU-trained tiny model (`bench/diagnose_camera.py`,
docs/RESULTS.md), the TDM's correlation of 16-pixel tokens carries almost no linear
information about frame-to-frame camera motion (ridge-probe R^2 ~ 0): at video frame rates
the image moves 2-10 pixels a frame, a fraction of a token. This head matches frame t
against frame t-1 on a 4x finer grid and says, for every 4x4 cell of frame t, where it is in
frame t-1 (backward flow, pixels) and how much to trust that (a weight in (0, 1)); the pose
then comes from the network's own pointmaps (`mem4d.model.procrustes_pose`).

Parts (all small; ~0.1 M parameters at the tiny preset's sizes):

- ``features``: a 3-layer CNN on the per-image standardised frame -> (B, C, H/4, W/4),
  kept in the stream state for the next frame;
- local correlation of frame t's features with frame t-1's at ``levels`` pooled levels in a
  (2r+1)^2 window (`mem4d.layers.local_corr`), plus each level's soft-argmax offset;
- context: the decoder's final frame tokens (what is a moving object, what is sky) projected
  and upsampled from 1/16 to 1/4;
- a 3-layer conv head -> residual flow (added to level 0's soft-argmax) and a weight logit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.layers.local_corr import local_correlation, soft_argmax_offset

__all__ = ["CorrespondenceHead", "STRIDE"]

STRIDE = 4  # pixels per correspondence cell


class CorrespondenceHead(nn.Module):
    """Backward flow of frame t into frame t-1 and a weight per 4x4 cell.

    Args:
        dim: decoder token width D.
        features: matching feature channels C.
        hidden: width of the conv head.
        radius: correlation window radius r (cells of each level).
        levels: correlation levels (level l pools frame t-1's features by 2^l).
        context: channels of the projected decoder tokens.
    """

    def __init__(self, dim: int, features: int = 32, hidden: int = 64, radius: int = 3, levels: int = 3,
                 context: int = 32) -> None:
        super().__init__()
        self.radius, self.levels = radius, levels
        self.fnet = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(48, features, 3, padding=1),
        )
        self.context = nn.Linear(dim, context)
        window = (2 * radius + 1) ** 2
        self.head = nn.Sequential(
            nn.Conv2d(levels * (window + 2) + context, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.GELU(),
            nn.Conv2d(hidden, 3, 3, padding=1),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The head starts at the soft-argmax flow (zero residual) and a weight of 0.5."""
        last = self.head[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def features(self, frame: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> matching features (B, C, H/4, W/4) of the per-image standardised frame."""
        x = frame.to(self.fnet[0].weight.dtype)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True)
        return self.fnet((x - mean) / (std + 0.05))

    def forward(self, feats: Tensor, prev_feats: Tensor, tokens: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """
        Args:
            feats, prev_feats: (B, C, H/4, W/4) `features` of frames t and t-1.
            tokens: (B, N, D) final decoder tokens of frame t (N = h*w of ``grid``).
            grid: (h, w) token grid.

        Returns:
            (flow (B, H/4, W/4, 2): (dx, dy) in pixels from each cell centre of frame t to its
            match in frame t-1; weight logit (B, H/4, W/4)).
        """
        B, _, h4, w4 = feats.shape
        corr = local_correlation(feats, prev_feats, self.radius, self.levels)
        offsets = [soft_argmax_offset(c, self.radius) for c in corr]
        ctx = self.context(tokens).transpose(1, 2).reshape(B, -1, *grid)
        ctx = F.interpolate(ctx, size=(h4, w4), mode="bilinear", align_corners=False)
        x = torch.cat([*corr, *offsets, ctx.to(corr[0].dtype)], dim=1).to(self.head[0].weight.dtype)
        out = self.head(x).float()
        flow = STRIDE * (offsets[0] + out[:, :2])  # level-0 cells are STRIDE pixels
        return flow.permute(0, 2, 3, 1), out[:, 2]
