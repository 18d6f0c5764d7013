"""Confidence-aware pointmap regression (paper Eq. 7, MASt3R style) with ground-truth scale.

    L_conf = mean_i [ C_i · || X̂_i / s − X_i / s || − α · log C_i ]   over valid pixels i,

where s is the ground-truth scale of the clip (mean distance of its valid ground-truth world
points to the origin), used for prediction and target alike so the model learns metric scale.
"""

from __future__ import annotations

import torch
from torch import Tensor


def gt_scale(pts_world: Tensor, valid: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean distance of valid world points to the origin, per clip: the ground truth's scale s, or
    (called on the predicted points) the prediction's own ŝ of ``scale_invariant_regression``.

    Args:
        pts_world: (B, T, H, W, 3) world pointmaps.
        valid: (B, T, H, W) bool.
    Returns:
        (B,) scale s (clamped to >= eps).
    """
    dist = pts_world.norm(dim=-1) * valid
    count = valid.flatten(1).sum(1).clamp(min=1)
    return (dist.flatten(1).sum(1) / count).clamp(min=eps)


def confidence_regression_loss(
    pred: Tensor, conf: Tensor, target: Tensor, valid: Tensor, scale: Tensor, alpha: float = 0.2
) -> tuple[Tensor, Tensor]:
    """Eq. 7 for one pointmap kind (world or camera).

    Args:
        pred, target: (B, T, H, W, 3) predicted and ground-truth pointmaps.
        conf: (B, T, H, W) predicted confidence (>= 1).
        valid: (B, T, H, W) bool; only valid pixels count.
        scale: (B,) ground-truth scale s of each clip.
        alpha: weight of the −log C regulariser.
    Returns:
        (loss, regression): the confidence-weighted loss and the plain mean scaled Euclidean
        error (a readable metric), both scalars averaged over valid pixels.
    """
    s = scale.view(-1, *([1] * (pred.dim() - 1)))
    err = ((pred - target) / s).norm(dim=-1)
    n = valid.sum().clamp(min=1)
    loss = ((conf * err - alpha * torch.log(conf)) * valid).sum() / n
    regression = (err * valid).sum() / n
    return loss, regression


def scale_invariant_regression(pred: Tensor, target: Tensor, valid: Tensor, pred_scale: Tensor, scale: Tensor) -> Tensor:
    """Mean over valid pixels of ``|| X̂_i / ŝ − X_i / s ||``: the prediction normalised by its own
    clip scale ŝ, the target by the ground truth's s (DUSt3R's normalisation). Zero for any
    prediction that is the truth times one positive factor per clip, so it rewards shape and a
    scale that holds from frame to frame, whatever the metric scale (which Eq. 7 with s alone
    trains). [choice] `loss.scale_invariant`, off by default; not in the paper.

    Args:
        pred, target: (B, T, H, W, 3) pointmaps.
        valid: (B, T, H, W) bool.
        pred_scale, scale: (B,) scale of the prediction (``gt_scale`` of the predicted world
            points, with its gradient) and of the ground truth.
    Returns:
        scalar.
    """
    shape = (-1, *([1] * (pred.dim() - 1)))
    err = (pred / pred_scale.view(shape) - target / scale.view(shape)).norm(dim=-1)
    return (err * valid).sum() / valid.sum().clamp(min=1)


def log_scale_error(depth: Tensor, target: Tensor, valid: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean over frames of ``| mean_i log ẑ_i − mean_i log z_i |`` over each frame's valid pixels:
    how far the frame's metric scale is off (a factor e^x reads x), whatever its shape.
    [choice] `loss.log_scale`, off by default; not in the paper.

    Args:
        depth, target: (B, T, H, W) predicted and ground-truth depth (clamped at ``eps``).
        valid: (B, T, H, W) bool; frames with no valid pixel do not count.
    Returns:
        scalar.
    """
    v = valid.float().flatten(2)
    n = v.sum(-1)
    log_ratio = (depth.clamp(min=eps).log() - target.clamp(min=eps).log()).flatten(2)
    per_frame = (log_ratio * v).sum(-1) / n.clamp(min=1)
    seen = n > 0
    return (per_frame.abs() * seen).sum() / seen.sum().clamp(min=1)
