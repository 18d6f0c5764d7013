"""Test-time pose refinement (``heads.pose_refinement == "photometric"``) [not in the paper].

After the network has predicted frame t, the motion from frame t-1 to t is re-estimated by
direct photometric alignment (`mem4d.geometry.photometric`): frame t-1's image lifted by its
predicted depth, pixels weighted by 1 - its predicted dynamic probability (moving objects do
not pull the camera), intrinsics from frame t's prediction, on a 4-level pyramid, started
twice, from the previous frame-to-frame motion (constant velocity) and from no motion, keeping
the start that ends with the lower photometric cost (one failed frame then does not derail
the next through the velocity; on 48-frame loop scenes turning 8-11 degrees a frame with exact
depth, this took the mean rotation error per frame from 0.5-7 to 0.1-0.8 degrees). The pose is
chained,
``cam2world_t = cam2world_{t-1} @ inverse(motion_t)``, and the world pointmap becomes
``cam2world_t . pts_cam`` so that points and poses agree. The network's own world pointmap
still feeds the PSM (it was trained on it). Causal and bounded: the state keeps one frame.
No gradients: an inference step (training recipes leave it off).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mem4d.geometry.photometric import photometric_align
from mem4d.geometry.rotation import matrix_to_quat
from mem4d.geometry.se3 import se3_inverse, transform_points
from mem4d.model.outputs import FrameOutput
from mem4d.model.state import StreamState

__all__ = ["refine_pose"]

LEVELS, ITERS = 4, (12, 12, 8, 6)


def _align_from_two_starts(state: StreamState, frame: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Frame t-1 -> t motion (B, 4, 4): the better of the constant-velocity and identity starts."""
    B = frame.shape[0]
    two = lambda x: torch.cat([x, x])  # noqa: E731
    starts = torch.cat([state.pose_velocity, torch.eye(4, dtype=frame.dtype, device=frame.device).expand(B, 4, 4)])
    motion, cost = photometric_align(two(state.prev_image), two(state.prev_depth), two(frame), two(intrinsics),
                                     init_a2b=starts, weight_a=two(state.prev_weight), levels=LEVELS, iters=ITERS)
    return torch.where((cost[:B] <= cost[B:])[:, None, None], motion[:B], motion[B:])


@torch.no_grad()
def refine_pose(frame: torch.Tensor, out: FrameOutput, state: StreamState, new_state: StreamState) -> tuple[FrameOutput, StreamState]:
    """Replaces the pose of ``out`` (frame ``state.frame_index``) by the refined one.

    Args:
        frame: (B, 3, H, W) the frame just predicted.
        out: the network's `FrameOutput` for it.
        state: the state before this frame (holds frame t-1's image, depth, weight, pose).
        new_state: the state after it, without the refinement's fields updated.
    Returns:
        (the output with cam2world / quat_wxyz / translation / pts_world / conf_world replaced
        (frame 0 keeps its identity pose), the new state carrying this frame for the next alignment).
    """
    B = frame.shape[0]
    depth = out.depth.detach().float()
    weight = torch.ones_like(depth) if out.dynamic_prob is None else 1 - out.dynamic_prob.detach().float()
    eye = torch.eye(4, dtype=torch.float32, device=frame.device).expand(B, 4, 4)
    if state.frame_index == 0:
        cam2world, motion = out.cam2world.detach().float(), eye
    else:
        motion = _align_from_two_starts(state, frame.float(), out.intrinsics.detach().float())
        cam2world = state.cam2world @ se3_inverse(motion)
    pts_world = transform_points(cam2world[:, None, None].to(out.pts_cam.dtype), out.pts_cam)
    out = replace(out, cam2world=cam2world.to(out.cam2world.dtype), quat_wxyz=matrix_to_quat(cam2world[:, :3, :3]),
                  translation=cam2world[:, :3, 3], pts_world=pts_world, conf_world=out.conf_cam)
    new_state = replace(new_state, cam2world=cam2world, prev_image=frame.detach().float(), prev_depth=depth,
                        prev_weight=weight, pose_velocity=motion.contiguous())
    return out, new_state
