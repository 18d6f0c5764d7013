"""Supervision of the correspondence head (``heads.camera_pose == "procrustes"``) [not in the paper].

Ground-truth backward flow of the STRIDE x STRIDE cells of frame t (t >= 1): each valid pixel's
ground-truth world point is projected into camera t-1; the pixel counts when it is static
(not in ``dynamic_mask``), lands inside frame t-1 in front of the camera, and is visible
there (frame t-1's ground-truth depth at that pixel agrees within ``occlusion_tol``). A cell's
flow is the mean over its counted pixels; a cell is supervised when at least
``min_fraction`` of its pixels count. Frame 0 has no flow.

Terms (both averaged over frames 1..T-1):

- ``flow``: Euclidean flow error of supervised cells, in pixels of a 128-pixel-wide image
  (so the term does not grow with the resolution);
- ``flow_weight``: binary cross-entropy of the head's weight against "this cell is static
  and visible in frame t-1" (every cell with valid ground truth).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.geometry.se3 import se3_inverse, transform_points
from mem4d.model.correspondence import STRIDE

__all__ = ["flow_targets", "flow_losses"]


def _pool(x: Tensor) -> Tensor:
    """(..., H, W) -> (..., H/STRIDE, W/STRIDE) mean."""
    lead = x.shape[:-2]
    y = F.avg_pool2d(x.reshape(-1, 1, *x.shape[-2:]), STRIDE)
    return y.reshape(*lead, *y.shape[-2:])


def flow_targets(pts_world: Tensor, depth: Tensor, valid: Tensor, cam2world: Tensor, intrinsics: Tensor,
                 dynamic_mask: Tensor | None, occlusion_tol: float = 0.05, min_fraction: float = 0.75
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Ground-truth cell flow of frames 1..T-1.

    Args:
        pts_world: (B, T, H, W, 3) ground-truth world points.
        depth: (B, T, H, W) ground-truth z-depth.
        valid: (B, T, H, W) bool.
        cam2world: (B, T, 4, 4); intrinsics: (B, T, 3, 3).
        dynamic_mask: (B, T, H, W) bool or None (then every pixel is taken as static).

    Returns:
        (flow (B, T-1, H/4, W/4, 2) pixels, supervised (B, T-1, H/4, W/4) bool,
        static_visible (B, T-1, H/4, W/4) float in [0, 1] (fraction of the cell's pixels that
        count), known (B, T-1, H/4, W/4) bool (cells whose pixels are mostly valid)).
    """
    B, T, H, W, _ = pts_world.shape
    world2prev = se3_inverse(cam2world[:, :-1].double())
    X = transform_points(world2prev[:, :, None, None], pts_world[:, 1:].double())  # (B, T-1, H, W, 3) in camera t-1
    K = intrinsics[:, :-1].double()
    z = X[..., 2]
    zs = z.clamp_min(1e-6)
    u = K[..., 0, 0, None, None] * X[..., 0] / zs + K[..., 0, 2, None, None]
    v = K[..., 1, 1, None, None] * X[..., 1] / zs + K[..., 1, 2, None, None]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64, device=X.device),
                            torch.arange(W, dtype=torch.float64, device=X.device), indexing="ij")
    flow = torch.stack([u - xs, v - ys], dim=-1)  # (B, T-1, H, W, 2)
    inside = (z > 1e-6) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    g = torch.stack([u / (W - 1) * 2 - 1, v / (H - 1) * 2 - 1], dim=-1).float().reshape(B * (T - 1), H, W, 2)
    prev = torch.stack([depth[:, :-1].float(), valid[:, :-1].float()], dim=2).reshape(B * (T - 1), 2, H, W)
    seen = F.grid_sample(prev, g, mode="nearest", padding_mode="zeros", align_corners=True).reshape(B, T - 1, 2, H, W)
    visible = (seen[:, :, 1] > 0.5) & ((seen[:, :, 0].double() - z).abs() <= occlusion_tol * z)
    static = torch.ones_like(visible) if dynamic_mask is None else ~dynamic_mask[:, 1:]
    counted = (valid[:, 1:] & inside & visible & static).double()
    frac = _pool(counted)
    cell_flow = torch.stack([_pool(flow[..., i] * counted) for i in range(2)], dim=-1) / frac.clamp_min(1e-9)[..., None]
    known = _pool(valid[:, 1:].double()) >= min_fraction
    return cell_flow.float(), frac >= min_fraction, frac.float(), known


def flow_losses(flow: Tensor, weight: Tensor, targets) -> dict[str, Tensor]:
    """``flow`` (B, T, H/4, W/4, 2) and ``flow_weight`` (B, T, H/4, W/4) predictions against
    `flow_targets` of a `mem4d.losses.objective.Targets` -> dict with scalar ``flow`` and
    ``flow_weight`` terms (zeros for single-frame clips)."""
    if flow.shape[1] < 2:
        zero = flow.sum() * 0
        return {"flow": zero, "flow_weight": zero}
    depth = targets.pts_cam[..., 2]
    gt, supervised, frac, known = flow_targets(targets.pts_world, depth, targets.valid, targets.cam2world,
                                               targets.intrinsics, targets.dynamic_mask)
    W = targets.valid.shape[-1]
    err = (flow[:, 1:] - gt).norm(dim=-1) * (128.0 / W)
    n = supervised.sum().clamp_min(1)
    flow_term = (err * supervised).sum() / n
    w = weight[:, 1:].clamp(1e-6, 1 - 1e-6)
    target = (frac >= 0.75).float()
    bce = F.binary_cross_entropy(w, target, reduction="none")
    weight_term = (bce * known).sum() / known.sum().clamp_min(1)
    return {"flow": flow_term, "flow_weight": weight_term}
