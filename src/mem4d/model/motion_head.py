"""Motion head (not in the paper): per-pixel probability of independent motion.

Input per token: the final decoder token and the TDM token of the most recent past frame
(zeros when there is none: frame 0, or a variant without TDM). An MLP predicts the p x p
logits of the token's patch, unfolded to (B, H, W), then a sigmoid.

With ``heads.camera_pose == "procrustes"`` the head also reads the pose fit's evidence on a
1/4-resolution grid (`mem4d.model.procrustes_pose.motion_evidence`: where the matches disagree
with the camera's rigid motion): a small conv turns it into logits that are upsampled and added
(its last layer starts at zero, so a model trained without it starts unchanged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.layers.mlp import Mlp

__all__ = ["MotionHead"]


class MotionHead(nn.Module):
    """(B, N, D) decoder tokens + (B, N, D) or None TDM tokens [+ (B, E, H/4, W/4) evidence]
    -> (B, H, W) in (0, 1).

    Args:
        dim: token width D.
        patch_size: pixels per token side.
        evidence_channels: channels of the pose fit's evidence (0: none).
    """

    def __init__(self, dim: int, patch_size: int, evidence_channels: int = 0) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.mlp = Mlp(2 * dim, dim, patch_size * patch_size)
        self.evidence = None
        if evidence_channels:
            self.evidence = nn.Sequential(nn.Conv2d(evidence_channels, 32, 3, padding=1), nn.GELU(),
                                          nn.Conv2d(32, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 1, 3, padding=1))
            nn.init.zeros_(self.evidence[-1].weight)
            nn.init.zeros_(self.evidence[-1].bias)

    def forward(self, tokens: Tensor, motion: Tensor | None, grid: tuple[int, int], evidence: Tensor | None = None) -> Tensor:
        if motion is None:
            motion = torch.zeros_like(tokens)
        logits = self.mlp(torch.cat([tokens, motion], dim=-1)).float()  # (B, N, p*p)
        B, (h, w), p = tokens.shape[0], grid, self.patch_size
        logits = logits.reshape(B, h, w, p, p).permute(0, 1, 3, 2, 4).reshape(B, h * p, w * p)
        if self.evidence is not None and evidence is not None:
            extra = self.evidence(evidence.to(self.evidence[0].weight.dtype)).float()
            logits = logits + F.interpolate(extra, size=(h * p, w * p), mode="bilinear", align_corners=False)[:, 0]
        return torch.sigmoid(logits)
