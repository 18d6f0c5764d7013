"""Camera losses: absolute pose and intrinsics (paper Eq. 8) and relative pose of consecutive
frames (Eq. 9). Quaternions are WXYZ; q and −q are the same rotation, so the quaternion term
takes the nearer sign. Translations are divided by the clip's ground-truth scale s.
"""

from __future__ import annotations

from torch import Tensor

from mem4d.geometry.rotation import matrix_to_quat
from mem4d.geometry.se3 import cam_a2cam_b


def quaternion_l2(q_pred: Tensor, q_gt: Tensor) -> Tensor:
    """Sign-invariant squared L2 between unit quaternions: min(|p−q|², |p+q|²). (...,4) -> (...)."""
    return ((q_pred - q_gt).pow(2).sum(-1)).minimum((q_pred + q_gt).pow(2).sum(-1))


def pose_terms(pred_cam2world: Tensor, gt_cam2world: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Per-frame squared quaternion and scaled-translation errors.

    Args:
        pred_cam2world, gt_cam2world: (B, T, 4, 4).
        scale: (B,) ground-truth scale.
    Returns:
        (rot, trans): (B, T) each.
    """
    q_pred = matrix_to_quat(pred_cam2world[..., :3, :3])
    q_gt = matrix_to_quat(gt_cam2world[..., :3, :3])
    s = scale.view(-1, 1, 1)
    trans = ((pred_cam2world[..., :3, 3] - gt_cam2world[..., :3, 3]) / s).pow(2).sum(-1)
    return quaternion_l2(q_pred, q_gt), trans


def absolute_camera_loss(
    pred_cam2world: Tensor, gt_cam2world: Tensor, pred_fov: Tensor, gt_fov: Tensor, scale: Tensor
) -> dict[str, Tensor]:
    """Eq. 8: L2 on quaternion, translation / s and field of view, averaged over frames.

    Args:
        pred_cam2world, gt_cam2world: (B, T, 4, 4).
        pred_fov, gt_fov: (B, T, 2) horizontal and vertical FoV in radians.
        scale: (B,).
    Returns:
        dict with scalar terms `abs_rot`, `abs_trans`, `abs_fov`.
    """
    rot, trans = pose_terms(pred_cam2world, gt_cam2world, scale)
    fov = (pred_fov - gt_fov).pow(2).sum(-1)
    return {"abs_rot": rot.mean(), "abs_trans": trans.mean(), "abs_fov": fov.mean()}


def relative_pose(cam2world: Tensor) -> Tensor:
    """Pose of frame t+1 in camera t's frame, (B, T, 4, 4) -> (B, T−1, 4, 4) (cam_{t+1} → cam_t)."""
    return cam_a2cam_b(cam2world[:, 1:], cam2world[:, :-1])


def relative_camera_loss(pred_cam2world: Tensor, gt_cam2world: Tensor, scale: Tensor) -> dict[str, Tensor]:
    """Eq. 9: L2 between predicted and ground-truth relative poses of consecutive frames.

    Returns zeros for clips of a single frame. Keys `rel_rot`, `rel_trans`.
    """
    if pred_cam2world.shape[1] < 2:
        zero = pred_cam2world.sum() * 0
        return {"rel_rot": zero, "rel_trans": zero}
    rot, trans = pose_terms(relative_pose(pred_cam2world), relative_pose(gt_cam2world), scale)
    return {"rel_rot": rot.mean(), "rel_trans": trans.mean()}
