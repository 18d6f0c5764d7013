"""Motion head (not in the paper): per-pixel probability of independent motion.

Input per token: the final decoder token and the TDM token of the most recent past frame
(zeros when there is none: frame 0, or a variant without TDM). An MLP predicts the p x p
logits of the token's patch, unfolded to (B, H, W), then a sigmoid.

With ``heads.camera_pose == "procrustes"`` the head also reads the pose fit's evidence on a
1/4-resolution grid (`mem4d.model.procrustes_pose.motion_evidence`: where the matches disagree
with the camera's rigid motion): a small conv turns it into logits that are upsampled and added
(its last layer starts at zero, so a model trained without it starts unchanged).

With ``heads.motion_refine`` (also procrustes only) a second conv stack works on the same
1/4-resolution grid and sees the image: it reads the token logits so far (pooled to the grid),
the evidence (zeros at frame 0) and the correspondence head's matching features of frame t
(detached; learned CNN features and the standardised quarter image), and adds upsampled
logits. Why: one token decides a 16 x 16 patch, and ground-truth masks pooled to 16-pixel
tokens reach only IoU 0.61 on `synthetic-dynamic` (0.93 at 4 pixels; docs/RESULTS.md). Its
last layer also starts at zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.layers.mlp import Mlp
from mem4d.model.correspondence import STRIDE  # pixels per cell of the evidence / refinement grid

__all__ = ["MotionHead", "RESIDUAL_CHANNELS"]

RESIDUAL_CHANNELS = 3  # the recheck's residual inputs per cell: mean, maximum, share inside frame t-1


def _zero_last(stack: nn.Sequential) -> nn.Sequential:
    nn.init.zeros_(stack[-1].weight)
    nn.init.zeros_(stack[-1].bias)
    return stack


def _cell_stack(in_channels: int) -> nn.Sequential:
    """(B, in_channels, H/4, W/4) -> (B, 1, H/4, W/4) logits on the 1/4-resolution grid; receptive
    field 11 cells (44 pixels: a token's patch and its neighbours); the last layer starts at zero."""
    return _zero_last(nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.GELU(),
        nn.Conv2d(32, 32, 3, padding=2, dilation=2), nn.GELU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 1, 3, padding=1)))


class MotionHead(nn.Module):
    """(B, N, D) decoder tokens + (B, N, D) or None TDM tokens [+ (B, E, H/4, W/4) evidence]
    [+ (B, G, H/4, W/4) image guide] -> (B, H, W) in (0, 1).

    Args:
        dim: token width D.
        patch_size: pixels per token side.
        evidence_channels: channels of the pose fit's evidence (0: none).
        guide_channels: channels of the image guide of the refinement (0: no refinement).
        photometric: add the recheck under the refined pose (needs ``guide_channels``).
    """

    def __init__(self, dim: int, patch_size: int, evidence_channels: int = 0, guide_channels: int = 0,
                 photometric: bool = False) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.evidence_channels = evidence_channels
        self.mlp = Mlp(2 * dim, dim, patch_size * patch_size)
        self.evidence = None
        if evidence_channels:
            self.evidence = _zero_last(nn.Sequential(
                nn.Conv2d(evidence_channels, 32, 3, padding=1), nn.GELU(),
                nn.Conv2d(32, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 1, 3, padding=1)))
        self.refine = None
        if guide_channels:
            self.refine = _cell_stack(1 + evidence_channels + guide_channels)
        self.recheck_stack = None
        if photometric:
            if not guide_channels:
                raise ValueError("MotionHead: the photometric recheck reads the refinement's image guide (guide_channels > 0)")
            self.recheck_stack = _cell_stack(1 + RESIDUAL_CHANNELS + guide_channels)

    def recheck(self, prob: Tensor, residual: Tensor, inside: Tensor, guide: Tensor) -> Tensor:
        """The mask (B, H, W) in (0, 1) rechecked against the photometric residual (B, H, W) and
        its ``inside`` mask (B, H, W) under the refined pose, with the image ``guide`` (B, G, H/4,
        W/4) -> (B, H, W) in (0, 1). Unchanged while the stack's last layer is zero."""
        if self.recheck_stack is None:
            raise ValueError("MotionHead.recheck: this head was built without photometric=True")
        size = prob.shape[-2:]
        logits = torch.logit(prob.float().clamp(1e-6, 1 - 1e-6))
        cells = F.avg_pool2d(logits[:, None], STRIDE)
        r, m = residual.float()[:, None], inside.float()[:, None]
        x = torch.cat([cells, F.avg_pool2d(r, STRIDE), F.max_pool2d(r, STRIDE), F.avg_pool2d(m, STRIDE)], 1)
        dtype = self.recheck_stack[0].weight.dtype
        extra = self.recheck_stack(torch.cat([x.to(dtype), guide.detach().to(dtype)], 1)).float()
        return torch.sigmoid(logits + F.interpolate(extra, size=size, mode="bilinear", align_corners=False)[:, 0])

    def forward(self, tokens: Tensor, motion: Tensor | None, grid: tuple[int, int], evidence: Tensor | None = None,
                guide: Tensor | None = None) -> Tensor:
        if motion is None:
            motion = torch.zeros_like(tokens)
        logits = self.mlp(torch.cat([tokens, motion], dim=-1)).float()  # (B, N, p*p)
        B, (h, w), p = tokens.shape[0], grid, self.patch_size
        size = (h * p, w * p)
        logits = logits.reshape(B, h, w, p, p).permute(0, 1, 3, 2, 4).reshape(B, *size)
        if self.evidence is not None and evidence is not None:
            extra = self.evidence(evidence.to(self.evidence[0].weight.dtype)).float()
            logits = logits + F.interpolate(extra, size=size, mode="bilinear", align_corners=False)[:, 0]
        if self.refine is not None and guide is not None:
            cells = guide.shape[-2:]
            if evidence is None:
                evidence = guide.new_zeros(B, self.evidence_channels, *cells)
            coarse = F.avg_pool2d(logits[:, None], STRIDE)
            dtype = self.refine[0].weight.dtype
            x = torch.cat([coarse.to(dtype), evidence.to(dtype), guide.detach().to(dtype)], dim=1)
            extra = self.refine(x).float()
            logits = logits + F.interpolate(extra, size=size, mode="bilinear", align_corners=False)[:, 0]
        return torch.sigmoid(logits)
