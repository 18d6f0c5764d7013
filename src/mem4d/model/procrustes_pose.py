"""Camera motion from the network's own pointmaps (``heads.camera_pose == "procrustes"``) [not in the paper].

For every 4x4 cell of frame t the correspondence head gives its match in frame t-1; the
cell centre's 3D point in camera t and frame t-1's ``pts_cam`` at the match (both read
bilinearly) are two views of one surface point. A weighted, robustly re-weighted rigid fit
(`mem4d.geometry.rigid_fit`) of the first set onto the second is the motion camera t ->
camera t-1; a few Gauss-Newton steps then move it to minimise the reprojection error of frame
t's points at their matches (`reprojection_refine`; frame t-1's depth, as noisy as frame t's,
then only starts the pose). Chained: ``cam2world_t = cam2world_{t-1} @ motion``. Cells whose
match falls outside frame t-1 or behind a camera get no weight; the rest are weighted by the
head's weight (it learns to ignore moving objects, occlusions and unreliable matches, as the
pose loss flows back through the fit).

Everything is differentiable: the pose losses train the flow, the weights and (scaled by
``heads.depth_grad_from_pose``, `scale_gradient`; none by default) both frames' depth through
the fit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.geometry.camera import depth_to_pts_cam
from mem4d.geometry.rigid_fit import rigid_fit
from mem4d.geometry.rotation import axis_angle_to_matrix
from mem4d.geometry.se3 import se3_from_rt
from mem4d.model.correspondence import STRIDE

__all__ = ["cell_centres", "fit_points", "motion_evidence", "procrustes_motion", "scale_gradient"]

ROBUST_ITERS = 3  # measured on exact ground truth (tests): the plain fit's translation was off by 18 %, this one by < 1 %
ROBUST_REL = 0.02
REPROJECTION_PX = 2.0  # Cauchy scale of the reprojection refinement, pixels of a 128-pixel-wide image


def cell_centres(h4: int, w4: int, device: torch.device) -> Tensor:
    """Pixel coordinates (x, y) of the centres of the STRIDE x STRIDE cells: (h4, w4, 2)."""
    ys = torch.arange(h4, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    xs = torch.arange(w4, device=device, dtype=torch.float32) * STRIDE + (STRIDE - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y], dim=-1)


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass (0: detached)."""
    if scale == 0:
        return x.detach()
    if scale == 1:
        return x
    return x.detach() + scale * (x - x.detach())


def fit_points(pts_cam: Tensor, intrinsics: Tensor, source: str, grad_scale: float) -> Tensor:
    """The 3D points the rigid fit reads (``heads.fit_points``), gradient scaled by ``grad_scale``
    (`scale_gradient`, applied to the depth only, so the intrinsics keep theirs).

    Args:
        pts_cam: (B, H, W, 3) the self-view pointmap; intrinsics: (B, 3, 3) pixels.
        source: ``"pointmap"``: ``pts_cam`` as predicted; ``"depth"``: its depth lifted along
            the rays of the predicted intrinsics, ``z K^-1 (u, v, 1)``. The pointmap head's own
            rays need not agree with the camera head's intrinsics (measured on run G: off by
            12 % of the depth), and the reprojection steps read the points through those
            intrinsics: with the pointmap's points the frame-to-frame rotation was 9.8 degrees
            off, with the depth's 1.0 (`bench/diagnose_procrustes.py`, docs/RESULTS.md).
    Returns:
        (B, H, W, 3).
    """
    if source == "pointmap":
        return scale_gradient(pts_cam, grad_scale)
    return depth_to_pts_cam(scale_gradient(pts_cam[..., 2], grad_scale), intrinsics.to(pts_cam.dtype))


def _sample(pts: Tensor, xy: Tensor) -> Tensor:
    """Bilinear read of a (B, H, W, 3) pointmap at pixel coordinates xy (B, h, w, 2) -> (B, h, w, 3)."""
    H, W = pts.shape[1:3]
    g = torch.stack([xy[..., 0] / (W - 1) * 2 - 1, xy[..., 1] / (H - 1) * 2 - 1], dim=-1)
    out = F.grid_sample(pts.permute(0, 3, 1, 2).float(), g, mode="bilinear", padding_mode="border", align_corners=True)
    return out.permute(0, 2, 3, 1)


def procrustes_motion(pts_cam: Tensor, prev_pts_cam: Tensor, flow: Tensor, weight: Tensor, *,
                      robust_iters: int = ROBUST_ITERS, robust_rel: float = ROBUST_REL,
                      intrinsics: Tensor | None = None, reprojection_iters: int = 0) -> Tensor:
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
        intrinsics: (B, 3, 3) pixel intrinsics (frame t-1's camera; needed for ``reprojection_iters``).
        reprojection_iters: Gauss-Newton steps after the rigid fit that move the pose to
            minimise the reprojection error of frame t's points in frame t-1 against the
            matches (`reprojection_refine`): frame t-1's depth then only starts the pose.

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
    motion = se3_from_rt(R, t)
    if reprojection_iters:
        if intrinsics is None:
            raise ValueError("reprojection_iters needs the intrinsics")
        motion = reprojection_refine(motion, p, target.reshape(B, -1, 2), w, intrinsics, reprojection_iters,
                                     REPROJECTION_PX * W / 128)
    return motion


def _hat(v: Tensor) -> Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    z = torch.zeros_like(v[..., 0])
    rows = [torch.stack([z, -v[..., 2], v[..., 1]], -1), torch.stack([v[..., 2], z, -v[..., 0]], -1),
            torch.stack([-v[..., 1], v[..., 0], z], -1)]
    return torch.stack(rows, -2)


def reprojection_refine(motion: Tensor, p: Tensor, target: Tensor, weight: Tensor, intrinsics: Tensor, iters: int,
                        robust_px: float) -> Tensor:
    """Gauss-Newton on SE(3): the motion that best reprojects frame t's points onto their matches.

    Minimises ``sum_i w_i rho(|pi(K (R p_i + t)) - target_i|)`` (Cauchy rho at ``robust_px``,
    its weights held constant in the backward pass), left-multiplied updates, a small
    Levenberg damping, a trust region (at most 0.1 rad and 10 % of the median depth a step)
    and no step that raises the robust cost (early in training the matches are poor and an
    unguarded step can throw the camera metres away); every step is differentiable, so the
    pose losses reach the matches, the weights, frame t's depth and the intrinsics through it.

    Args:
        motion: (B, 4, 4) starting camera t -> camera t-1 motion.
        p: (B, N, 3) frame t's points (camera t); target: (B, N, 2) their matches in frame t-1
            (pixels); weight: (B, N).
        intrinsics: (B, 3, 3).
    Returns:
        (B, 4, 4) float32.
    """
    T = motion.double()
    p, target, weight = p.double(), target.double(), weight.double()
    K = intrinsics.double()
    fx, fy, cx, cy = (K[:, i, j, None] for i, j in ((0, 0), (1, 1), (0, 2), (1, 2)))
    eye = torch.eye(6, dtype=torch.float64, device=p.device)

    def residuals(T: Tensor) -> tuple[Tensor, Tensor]:
        X = p @ T[:, :3, :3].transpose(-1, -2) + T[:, None, :3, 3]
        z = X[..., 2].clamp_min(1e-3)
        return X, torch.stack([fx * X[..., 0] / z + cx, fy * X[..., 1] / z + cy], -1) - target  # (B, N, 2)

    def cost(X: Tensor, r: Tensor, w: Tensor) -> Tensor:  # robust cost at fixed weights, per batch element
        return (w * (X[..., 2] > 1e-3) * torch.log1p((r.norm(dim=-1) / robust_px) ** 2)).sum(-1)

    scale = p[..., 2].abs().median(dim=-1).values.clamp_min(1e-6)  # a step moves the camera at most 10 % of it
    for _ in range(iters):
        X, r = residuals(T)
        z = X[..., 2].clamp_min(1e-3)
        zero = torch.zeros_like(z)
        Jp = torch.stack([torch.stack([fx / z, zero, -fx * X[..., 0] / z**2], -1),
                          torch.stack([zero, fy / z, -fy * X[..., 1] / z**2], -1)], -2)  # (B, N, 2, 3)
        J = Jp @ torch.cat([eye[:3, :3].expand(*X.shape[:-1], 3, 3), -_hat(X)], -1)  # (B, N, 2, 6)
        with torch.no_grad():
            w = weight * (X[..., 2] > 1e-3) / (1 + (r.norm(dim=-1) / robust_px) ** 2)
        H = torch.einsum("bn,bnij,bnik->bjk", w, J, J)
        H = H + (1e-4 * H.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-9))[:, None, None] * eye
        delta = -torch.linalg.solve(H, torch.einsum("bn,bnij,bni->bj", w, J, r))
        shrink = torch.minimum(0.1 / delta[:, 3:].norm(dim=-1).clamp_min(1e-12),
                               0.1 * scale / delta[:, :3].norm(dim=-1).clamp_min(1e-12)).clamp(max=1.0)
        delta = delta * shrink[:, None]  # a trust region: at most 0.1 rad and 10 % of the depth a step
        T_new = se3_from_rt(axis_angle_to_matrix(delta[:, 3:]), delta[:, :3]) @ T
        with torch.no_grad():
            better = cost(*residuals(T_new), weight) <= cost(X, r, weight)
        T = torch.where(better[:, None, None], T_new, T)  # a step that does not lower the cost is not taken
    return T.float()


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


def epipolar_distance(flow: Tensor, motion: Tensor, intrinsics: Tensor) -> Tensor:
    """How far each match lies from its epipolar line under the fitted camera motion: the Sampson
    distance, in pixels of a 128-pixel-wide image, clamped at 32 (detached).

    A static point's match lies on its epipolar line whatever its depth, so unlike the rigid-flow
    residual of `motion_evidence` this does not flag a static object whose depth is wrong, only
    motion off the line (motion along it, or no camera translation, leaves it blind; the
    residual covers those).

    Args:
        flow: (B, H/4, W/4, 2) backward flow of frame t's cells into frame t-1 (pixels).
        motion: (B, 4, 4) camera t -> camera t-1.
        intrinsics: (B, 3, 3) pixels, taken for both frames (as `motion_evidence` does).
    Returns:
        (B, 1, H/4, W/4).
    """
    B, h4, w4 = flow.shape[:3]
    with torch.no_grad():
        m = motion.float()
        t = m[:, :3, 3]
        t = t / (t.norm(dim=-1, keepdim=True) + 1e-9)
        tx = torch.zeros(B, 3, 3, device=flow.device)
        tx[:, 0, 1], tx[:, 0, 2], tx[:, 1, 2] = -t[:, 2], t[:, 1], -t[:, 0]
        tx = tx - tx.transpose(1, 2)
        k_inv = torch.linalg.inv(intrinsics.float())
        fundamental = k_inv.transpose(1, 2) @ tx @ m[:, :3, :3] @ k_inv
        centres = cell_centres(h4, w4, flow.device).expand(B, h4, w4, 2)
        ones = torch.ones_like(centres[..., :1])
        x = torch.cat([centres, ones], -1).reshape(B, -1, 3)  # frame t
        xp = torch.cat([centres + flow.float(), ones], -1).reshape(B, -1, 3)  # its match in frame t-1
        fx = x @ fundamental.transpose(1, 2)  # F x, (B, n, 3)
        ftxp = xp @ fundamental  # F^T x'
        num = (xp * fx).sum(-1) ** 2
        den = fx[..., 0] ** 2 + fx[..., 1] ** 2 + ftxp[..., 0] ** 2 + ftxp[..., 1] ** 2 + 1e-12
        dist = (num / den).sqrt() * (128.0 / (w4 * STRIDE))
        return dist.clamp(max=32.0).reshape(B, 1, h4, w4)
