"""Loss of the optional motion head: binary cross-entropy of the per-pixel probability that a
pixel moves independently of the camera, on valid pixels of clips with ground-truth masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def motion_loss(dynamic_prob: Tensor, dynamic_mask: Tensor, valid: Tensor, pos_weight: float = 1.0) -> Tensor:
    """BCE over valid pixels.

    Args:
        dynamic_prob: (B, T, H, W) predicted probability in (0, 1).
        dynamic_mask: (B, T, H, W) bool ground truth.
        valid: (B, T, H, W) bool.
        pos_weight: weight of moving pixels (they are rare; > 1 counters the imbalance).
    Returns:
        scalar loss.
    """
    p = dynamic_prob.clamp(1e-6, 1 - 1e-6)
    target = dynamic_mask.to(p.dtype)
    weight = torch.where(dynamic_mask, torch.full_like(p, pos_weight), torch.ones_like(p))
    bce = F.binary_cross_entropy(p, target, weight=weight, reduction="none")
    return (bce * valid).sum() / valid.sum().clamp(min=1)
