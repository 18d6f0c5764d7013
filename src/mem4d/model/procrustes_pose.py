"""Camera motion from the network's own pointmaps (``heads.camera_pose == "procrustes"``) [not in the paper].

For every 4x4 cell of frame t the correspondence head gives its match in frame t-1; the
cell centre's 3D point in camera t and frame t-1's ``pts_cam`` at the match (both read
bilinearly) are two views of one surface point. A weighted, robustly re-weighted rigid fit (`mem4d.geometry.rigid_fit`) of the first set onto the second is the motion
camera t -> camera t-1; chained, ``cam2world_t = cam2world_{t-1} @ motion``. Cells whose
match falls outside frame t-1 or behind a camera get no weight; the rest are weighted by the
head's weight (it learns to ignore moving objects, occlusions and unreliable matches, as the
pose loss flows back through the fit).

Everything is differentiable: the pose losses train the flow, the weights and both frames'
depth through the fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.geometry.rigid_fit import rigid_fit
from mem4d.geometry.se3 import se3_from_rt
from mem4d.model.correspondence import STRIDE

__all__ = ["cell_centres", "motion_evidence", "procrustes_motion"]

ROBUST_ITERS = 3  # measured on exact ground truth (tests): the plain fit's translation was off by 18 %, this one by < 1 %
ROBUST_REL = 0.02


def cell_centres(h4: int, w4: int, device: torch.device) -> Tensor:
    """Pixel coordinates (x, y) of the centres of the STRIDE x STRIDE cells: (h4, w4, 2)."""
    ys = torch.arange(h4, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    xs = torch.arange(w4, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y], dim=-1)


def _sample(pts: Tensor, xy: Tensor) -> Tensor:
    """Bilinear read of a (B, H, W, 3) pointmap at pixel coordinates xy (B, h, w, 2) -> (B, h, w, 3)."""
    H, W = pts.shape[1:3]
    g = torch.stack([xy[..., 0] / (W - 1) * 2 - 1, xy[..., 1] / (H - 1) * 2 - 1], dim=-1)
    out = F.grid_sample(pts.permute(0, 3, 1, 2).float(), g, mode="bilinear", padding_mode="border", align_corners=True)
    return out.permute(0, 2, 3, 1)


def procrustes_motion(pts_cam: Tensor, prev_pts_cam: Tensor, flow: Tensor, weight: Tensor, *,
                      robust_iters: int = ROBUST_ITERS, robust_rel: float = ROBUST_REL) -> Tensor:
    """Motion camera t -> camera t-1 from correspondences.

    Args:
        pts_cam: (B, H, W, 3) frame t's self-view pointmap.
        prev_pts_cam: (B, H, W, 3) frame t-1's self-view pointmap.
        flow: (B, H/4, W/4, 2) backward flow in pixels (cell centre of frame t -> frame t-1).
        weight: (B, H/4, W/4) non-negative weights.
        robust_iters: re-weighted refits after the first fit (Cauchy weights, held constant
            in the backward pass): points read across a depth edge, on a moving object the
            weights missed or at a wrong match stop pulling the fit.
        robust_rel: the Cauchy scale, as a fraction of each point's depth.

    Returns:
        (B, 4, 4) float32, ``X_{t-1} = motion @ X_t``.
    """
    B = pts_cam.shape[0]
    h4, w4 = flow.shape[1:3]
    H, W = pts_cam.shape[1:3]
    centres = cell_centres(h4, w4, flow.device).expand(B, h4, w4, 2)
    target = centres + flow.float()  # pixels of frame t-1
    p = _sample(pts_cam, centres).reshape(B, -1, 3)
    q = _sample(prev_pts_cam, target).reshape(B, -1, 3)
    inside = (target[..., 0] >= 0) & (target[..., 0] <= W - 1) & (target[..., 1] >= 0) & (target[..., 1] <= H - 1)
    ok = inside.reshape(B, -1) & (p[..., 2] > 0) & (q[..., 2] > 0)
    w = weight.float().reshape(B, -1) * ok
    R, t = rigid_fit(p, q, w)
    for _ in range(robust_iters):
        with torch.no_grad():
            r = (q - (p @ R.transpose(-1, -2) + t[:, None])).norm(dim=-1)
            cauchy = (1 / (1 + (r / (robust_rel * p[..., 2].abs().clamp_min(1e-6))) ** 2)).clamp_min(1e-4)
        R, t = rigid_fit(p, q, w * cauchy)
    return se3_from_rt(R, t)


@torch.no_grad()
def motion_evidence(pts_cam: Tensor, prev_pts_cam: Tensor, flow: Tensor, weight: Tensor, motion: Tensor,
                    intrinsics: Tensor) -> Tensor:
    """What the fit says about independent motion, per cell (detached: the motion head reads it,
    the pose is not pushed to make movers stand out).

    Channels: the flow's residual to the camera's rigid flow (dx, dy; pixels of a 128-pixel-wide
    image), the 3D residual ``|X_{t-1} - motion . X_t|`` over depth, and 1 - the fit weight.

    Args:
        pts_cam, prev_pts_cam, flow, weight: as for `procrustes_motion`.
        motion: (B, 4, 4) its result; intrinsics: (B, 3, 3) of frame t-1 (pixels).
    Returns:
        (B, 4, H/4, W/4).
    """
    B, h4, w4 = flow.shape[:3]
    W = pts_cam.shape[2]
    centres = cell_centres(h4, w4, flow.device).expand(B, h4, w4, 2)
    p = _sample(pts_cam, centres)
    moved = p @ motion[:, None, :3, :3].transpose(-1, -2) + motion[:, None, None, :3, 3]  # in camera t-1
    K = intrinsics.float()[:, None, None]
    z = moved[..., 2].clamp_min(1e-6)
    rigid = torch.stack([K[..., 0, 0] * moved[..., 0] / z + K[..., 0, 2], K[..., 1, 1] * moved[..., 1] / z + K[..., 1, 2]], -1)
    residual = (centres + flow.float() - rigid) * (128.0 / W)
    q = _sample(prev_pts_cam, centres + flow.float())
    residual_3d = (q - moved).norm(dim=-1) / p[..., 2].abs().clamp_min(1e-6)
    out = torch.cat([residual.clamp(-32, 32), residual_3d.clamp(max=4.0)[..., None], 1 - weight.float()[..., None]], -1)
    return out.permute(0, 3, 1, 2)
