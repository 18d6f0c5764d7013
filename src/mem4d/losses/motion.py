"""Losses of the optional motion head, on valid pixels of clips with ground-truth masks: binary
cross-entropy of the per-pixel probability that a pixel moves independently of the camera, and
[choice, not in the paper] a soft Jaccard (IoU) term that scores the mask as the benchmarks do."""

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


def motion_iou_loss(dynamic_prob: Tensor, dynamic_mask: Tensor, valid: Tensor) -> Tensor:
    """1 - soft IoU of each clip's mask, pooled over its valid pixels and frames as the evaluation
    pools them, averaged over the clips that have moving pixels (0 when none has).

    The soft IoU is ``sum(p * y) / sum(p + y - p * y)``: 1 exactly when ``p`` is the mask. Unlike a
    weighted BCE it pays for false positives and missed pixels in the proportion the IoU does, so
    the 0.5 threshold stays where the IoU wants it whatever the share of moving pixels.

    Args:
        dynamic_prob: (B, T, H, W) predicted probability in (0, 1).
        dynamic_mask: (B, T, H, W) bool ground truth.
        valid: (B, T, H, W) bool.
    Returns:
        scalar loss in [0, 1].
    """
    p = dynamic_prob.float() * valid
    y = (dynamic_mask & valid).float()
    dims = tuple(range(1, p.dim()))
    inter = (p * y).sum(dims)
    union = (p + y - p * y).sum(dims)
    has = y.sum(dims) > 0
    if not bool(has.any()):
        return dynamic_prob.sum() * 0.0
    return (1 - inter[has] / union[has].clamp_min(1e-6)).mean()
