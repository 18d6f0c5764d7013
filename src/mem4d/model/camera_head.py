"""Camera head (paper Eq. 6): camera token -> (FoV, unit quaternion WXYZ, translation).

The pose is camera t -> world (``cam2world``), world = camera of frame 0. **Anchor:** for
frame 0 the head's rotation and translation are replaced by the identity, so
``cam2world[0] == I`` exactly (its FoV is still predicted). With ``heads.camera_pose ==
"absolute"`` (the paper) later poses are the head's direct predictions in that world frame
(the PSM's uncompressed frame-0 tokens are what tie them to it); with ``"chained"`` the head
predicts camera t in camera t-1's frame and `chain_pose` composes it with the previous pose. Intrinsics: one horizontal FoV, square pixels, principal point at the image
centre ((W-1)/2, (H-1)/2), ``fx = fy = (W/2) / tan(fov_x/2)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mem4d.geometry.rotation import matrix_to_quat, se3_orthonormalize

__all__ = ["CameraHead", "chain_pose", "fov_to_intrinsics", "quat_to_rotmat"]


def quat_to_rotmat(q: Tensor) -> Tensor:
    """Unit quaternions (..., 4) WXYZ -> rotation matrices (..., 3, 3)."""
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def fov_to_intrinsics(fov_x: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Horizontal FoV (...,) in radians -> (..., 3, 3) pixel intrinsics (fy = fx, centred principal point)."""
    H, W = image_size
    f = (W / 2) / torch.tan(fov_x / 2)
    K = torch.zeros(*fov_x.shape, 3, 3, dtype=fov_x.dtype, device=fov_x.device)
    K[..., 0, 0] = f
    K[..., 1, 1] = f
    K[..., 0, 2] = (W - 1) / 2
    K[..., 1, 2] = (H - 1) / 2
    K[..., 2, 2] = 1
    return K


class CameraHead(nn.Module):
    """MLP on the camera token: (B, D) -> dict of fov_x (B,), quat_wxyz (B, 4), translation (B, 3),
    intrinsics (B, 3, 3), cam2world (B, 4, 4).

    Args:
        dim: camera token width D.
        hidden: hidden width.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 8))

    def reset_parameters(self) -> None:
        """Starts near FoV 60 deg, identity rotation, zero translation."""
        last = self.mlp[-1]
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.zero_()
            last.bias[0] = math.log(0.5)  # pi * sigmoid(log 0.5) = pi / 3
            last.bias[1] = 1.0            # quaternion w

    def forward(self, token: Tensor, image_size: tuple[int, int], anchor: bool) -> dict[str, Tensor]:
        raw = self.mlp(token).float()
        fov_x = math.pi * torch.sigmoid(raw[:, 0])
        quat = F.normalize(raw[:, 1:5], dim=-1, eps=1e-8)
        quat = torch.where(quat[:, :1] < 0, -quat, quat)  # canonical w >= 0
        trans = raw[:, 5:8]
        if anchor:  # frame 0 defines the world frame
            quat = torch.zeros_like(quat) + quat.new_tensor([1.0, 0.0, 0.0, 0.0])
            trans = torch.zeros_like(trans)
        cam2world = torch.cat([
            torch.cat([quat_to_rotmat(quat), trans.unsqueeze(-1)], dim=-1),
            trans.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(trans.shape[0], 1, 4),
        ], dim=1)
        return {"fov_x": fov_x, "quat_wxyz": quat, "translation": trans,
                "intrinsics": fov_to_intrinsics(fov_x, image_size), "cam2world": cam2world}


def chain_pose(relative: dict[str, Tensor], previous_cam2world: Tensor) -> dict[str, Tensor]:
    """Composes the head's relative prediction (camera t -> camera t-1) with the previous pose.

    Args:
        relative: `CameraHead` output for frame t read as a relative pose.
        previous_cam2world: (B, 4, 4) camera t-1 -> world.
    Returns:
        The same keys, with ``cam2world = previous @ relative`` (its rotation re-projected onto
        SO(3): chained float32 poses drift off it) and its quaternion (w >= 0) and translation;
        FoV and intrinsics unchanged.
    """
    cam2world = se3_orthonormalize(previous_cam2world.to(relative["cam2world"].dtype) @ relative["cam2world"])
    return {**relative, "cam2world": cam2world, "quat_wxyz": matrix_to_quat(cam2world[:, :3, :3]),
            "translation": cam2world[:, :3, 3]}
