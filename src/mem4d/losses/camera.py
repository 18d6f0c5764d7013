"""Camera losses: absolute pose and intrinsics (paper Eq. 8) and relative pose of consecutive
frames (Eq. 9). Quaternions are WXYZ; q and −q are the same rotation, so the quaternion term
takes the nearer sign. Translations are divided by the clip's ground-truth scale s.

"L2" is read as the Euclidean norm ||·||, as in the pointmap regression of Eq. 7, not its
square: with squared errors the translation gradient vanishes as errors get small (a few
centimetres between the frames of a clip), and a measured tiny-preset run collapsed to one
constant translation for every frame (docs/RESULTS.md, "Training the default-model candidate").
"""

from __future__ import annotations

import torch
from torch import Tensor

from mem4d.geometry.rotation import matrix_to_quat
from mem4d.geometry.se3 import cam_a2cam_b


def quaternion_l2(q_pred: Tensor, q_gt: Tensor) -> Tensor:
    """Sign-invariant L2 distance between unit quaternions: min(|p−q|, |p+q|). (...,4) -> (...)."""
    return torch.linalg.vector_norm(q_pred - q_gt, dim=-1).minimum(torch.linalg.vector_norm(q_pred + q_gt, dim=-1))


def pose_terms(pred_cam2world: Tensor, gt_cam2world: Tensor, scale: Tensor, squared: bool = False) -> tuple[Tensor, Tensor]:
    """Per-frame quaternion and scaled-translation errors (Euclidean norms, or their squares).

    Args:
        pred_cam2world, gt_cam2world: (B, T, 4, 4).
        scale: (B,) ground-truth scale.
        squared: squared norms (``loss.camera_norm: squared``, the other reading of "L2").
    Returns:
        (rot, trans): (B, T) each.
    """
    q_pred = matrix_to_quat(pred_cam2world[..., :3, :3])
    q_gt = matrix_to_quat(gt_cam2world[..., :3, :3])
    s = scale.view(-1, 1, 1)
    trans = torch.linalg.vector_norm((pred_cam2world[..., :3, 3] - gt_cam2world[..., :3, 3]) / s, dim=-1)
    rot = quaternion_l2(q_pred, q_gt)
    return (rot.square(), trans.square()) if squared else (rot, trans)


def absolute_camera_loss(
    pred_cam2world: Tensor, gt_cam2world: Tensor, pred_fov: Tensor, gt_fov: Tensor, scale: Tensor, squared: bool = False
) -> dict[str, Tensor]:
    """Eq. 8: L2 norm of the quaternion, translation / s and field-of-view errors, averaged over frames.

    Args:
        pred_cam2world, gt_cam2world: (B, T, 4, 4).
        pred_fov, gt_fov: (B, T, 2) horizontal and vertical FoV in radians.
        scale: (B,).
    Returns:
        dict with scalar terms `abs_rot`, `abs_trans`, `abs_fov`.
    """
    rot, trans = pose_terms(pred_cam2world, gt_cam2world, scale, squared)
    fov = torch.linalg.vector_norm(pred_fov - gt_fov, dim=-1)
    fov = fov.square() if squared else fov
    return {"abs_rot": rot.mean(), "abs_trans": trans.mean(), "abs_fov": fov.mean()}


def relative_pose(cam2world: Tensor) -> Tensor:
    """Pose of frame t+1 in camera t's frame, (B, T, 4, 4) -> (B, T−1, 4, 4) (cam_{t+1} → cam_t)."""
    return cam_a2cam_b(cam2world[:, 1:], cam2world[:, :-1])


def relative_camera_loss(pred_cam2world: Tensor, gt_cam2world: Tensor, scale: Tensor, squared: bool = False) -> dict[str, Tensor]:
    """Eq. 9: L2 between predicted and ground-truth relative poses of consecutive frames.

    Returns zeros for clips of a single frame. Keys `rel_rot`, `rel_trans`.
    """
    if pred_cam2world.shape[1] < 2:
        zero = pred_cam2world.sum() * 0
        return {"rel_rot": zero, "rel_trans": zero}
    rot, trans = pose_terms(relative_pose(pred_cam2world), relative_pose(gt_cam2world), scale, squared)
    return {"rel_rot": rot.mean(), "rel_trans": trans.mean()}
