"""Camera-pose metrics: ATE and RPE exactly as evo computes them (PROTOCOLS 1.3).

The MonST3R/CUT3R protocol scores a sequence with evo:

* ``ate``: ``main_ape.ape(gt, est, PoseRelation.translation_part, align=True,
  correct_scale=True)`` RMSE: Umeyama Sim(3) fitted on the camera centres (estimate onto
  reference), then RMSE over frames of ``|c_est_aligned - c_gt|``.
* ``rpe_trans`` / ``rpe_rot``: ``main_rpe.rpe(..., delta=1, delta_unit=frames,
  all_pairs=True, align=True, correct_scale=True)`` RMSE with ``translation_part`` (metres)
  and ``rotation_angle_deg`` (degrees).

What evo does for RPE with ``align=True, correct_scale=True`` (checked against evo 1.38.1,
see ``tests/eval/test_pose_metrics.py``): the Sim(3) ``(s, R_a, t_a)`` fitted on the centres
is applied to each estimated pose as ``P_i' = [R_a R_i | s R_a t_i + t_a]`` (scale on the
translations, result still SE(3)); for every index pair ``(i, j = i + delta)``

    ``E_ij = (Q_i^{-1} Q_j)^{-1} (P_i'^{-1} P_j')``  (Q = reference, P' = aligned estimate),

``rpe_trans = RMSE_ij |trans(E_ij)|`` and ``rpe_rot = RMSE_ij angle(rot(E_ij))`` with the
angle of the rotation's axis-angle vector, in degrees (evo: norm of scipy's ``as_rotvec``;
here :func:`mem4d.geometry.rotation.rotation_angle`, the same angle for orthonormal
matrices). The left alignment cancels in
``P_i'^{-1} P_j'`` so only the scale changes RPE; it is kept for fidelity.

Inputs are already associated pose pairs (see :mod:`mem4d.eval.trajectory_io` for TUM
files and evo-style timestamp association; the protocol first replaces prediction
timestamps by GT timestamps when the counts match, then associates).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from mem4d.geometry.align import umeyama
from mem4d.geometry.rotation import rotation_angle
from mem4d.geometry.se3 import se3_inverse

__all__ = ["PoseAlignmentError", "pose_metrics", "align_trajectory", "relative_pose_errors"]

PoseAlign = Literal["sim3", "se3", "scale", "none"]


class PoseAlignmentError(ValueError):
    """Raised where evo raises "Degenerate covariance rank" (the protocol skips the sequence)."""


def _as_f64(x: Tensor | np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().to(torch.float64).cpu()


def align_trajectory(
    pred_cam2world: Tensor, gt_cam2world: Tensor, align: PoseAlign = "sim3"
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Align an estimated trajectory to the reference the way evo's ``traj_est.align`` does.

    Args:
        pred_cam2world: ``(T, 4, 4)`` estimated cam2world.
        gt_cam2world: ``(T, 4, 4)`` reference cam2world.
        align: ``"sim3"`` (Umeyama with scale, evo ``align=True, correct_scale=True``),
            ``"se3"`` (``align=True``), ``"scale"`` (evo ``correct_scale`` only: the Umeyama
            scale applied to the translations, no rotation/translation) or ``"none"``.

    Returns:
        ``(aligned (T, 4, 4) float64, scale (), R (3, 3), t (3,))``.

    Raises:
        PoseAlignmentError: if fewer than 2 singular values of the centre cross-covariance
            exceed machine epsilon (evo's degeneracy test), for any mode but ``"none"``.
    """
    P = _as_f64(pred_cam2world)
    Q = _as_f64(gt_cam2world)
    if P.shape != Q.shape or P.ndim != 3 or P.shape[-2:] != (4, 4):
        raise ValueError(f"expected two (T, 4, 4) pose arrays, got {tuple(P.shape)} and {tuple(Q.shape)}")
    eye = torch.eye(3, dtype=torch.float64)
    if align == "none":
        return P.clone(), torch.tensor(1.0, dtype=torch.float64), eye, torch.zeros(3, dtype=torch.float64)
    if align not in ("sim3", "se3", "scale"):
        raise ValueError(f"align must be 'sim3', 'se3', 'scale' or 'none', got {align!r}")
    src, dst = P[:, :3, 3], Q[:, :3, 3]
    cov = (dst - dst.mean(0)).T @ (src - src.mean(0)) / len(src)
    sv = torch.linalg.svdvals(cov)
    if int((sv > torch.finfo(torch.float64).eps).sum()) < 2:
        raise PoseAlignmentError("Degenerate covariance rank, Umeyama alignment is not possible")
    s, R, t = umeyama(src, dst, with_scale=align in ("sim3", "scale"))
    out = P.clone()
    if align == "scale":
        out[:, :3, 3] = s * P[:, :3, 3]
        return out, s, eye, torch.zeros(3, dtype=torch.float64)
    out[:, :3, :3] = R @ P[:, :3, :3]
    out[:, :3, 3] = s * (R @ P[:, :3, 3, None])[..., 0] + t
    return out, s, R, t


def relative_pose_errors(pred_cam2world: Tensor, gt_cam2world: Tensor, delta: int = 1) -> Tensor:
    """Relative pose errors ``E_i = (Q_i^{-1} Q_{i+delta})^{-1} (P_i^{-1} P_{i+delta})``.

    Pairs are all ``(i, i + delta)`` with ``i + delta < T`` (evo ``all_pairs=True`` with a
    frame delta; for ``delta == 1`` identical to consecutive pairs).

    Args:
        pred_cam2world, gt_cam2world: ``(T, 4, 4)`` (already aligned if wanted).
        delta: frame offset (>= 1).

    Returns:
        ``(T - delta, 4, 4)`` float64 error poses.
    """
    if delta < 1:
        raise ValueError(f"delta must be >= 1 frame, got {delta}")
    P, Q = _as_f64(pred_cam2world), _as_f64(gt_cam2world)
    if len(P) <= delta:
        raise ValueError(f"need more than delta={delta} poses, got {len(P)}")
    Q_rel = se3_inverse(Q[:-delta]) @ Q[delta:]
    P_rel = se3_inverse(P[:-delta]) @ P[delta:]
    return se3_inverse(Q_rel) @ P_rel


def pose_metrics(
    pred_cam2world: Tensor | np.ndarray,
    gt_cam2world: Tensor | np.ndarray,
    align: PoseAlign = "sim3",
    delta: int = 1,
) -> dict[str, float]:
    """ATE and RPE of an estimated camera trajectory (evo definitions, PROTOCOLS 1.3).

    Args:
        pred_cam2world: ``(T, 4, 4)`` estimated camera-to-world poses (any float dtype; the
            rotation blocks must be rotations).
        gt_cam2world: ``(T, 4, 4)`` reference camera-to-world, paired index by index.
        align: see :func:`align_trajectory`; ``"sim3"`` is the protocol.
        delta: RPE frame offset (1 in the protocol).

    Returns:
        dict of floats: ``ate`` (m), ``rpe_trans`` (m), ``rpe_rot`` (degrees), all RMSE, plus
        ``scale`` (alignment scale) and ``n_poses``. Computed in float64.
    """
    aligned, s, _, _ = align_trajectory(pred_cam2world, gt_cam2world, align)
    Q = _as_f64(gt_cam2world)
    ate = torch.sqrt(((aligned[:, :3, 3] - Q[:, :3, 3]) ** 2).sum(-1).mean())
    E = relative_pose_errors(aligned, Q, delta)
    rpe_t = torch.sqrt((E[:, :3, 3] ** 2).sum(-1).mean())
    rpe_r = torch.sqrt((rotation_angle(E[:, :3, :3]) ** 2).mean()) * (180.0 / math.pi)
    return {
        "ate": float(ate),
        "rpe_trans": float(rpe_t),
        "rpe_rot": float(rpe_r),
        "scale": float(s),
        "n_poses": int(len(Q)),
    }
