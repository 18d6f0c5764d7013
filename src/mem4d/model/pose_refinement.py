"""Test-time pose refinement (``heads.pose_refinement == "photometric"``) [not in the paper].

After the network has predicted frame t, the motion from frame t-1 to t is re-estimated by
direct photometric alignment (`mem4d.geometry.photometric`): frame t-1's image lifted by its
predicted depth, pixels weighted by 1 - its predicted dynamic probability (moving objects do
not pull the camera), intrinsics from frame t's prediction, on an image pyramid whose coarsest
level has a long side of at most 32 pixels whatever the input size (`pyramid_levels`: 3 levels
at 96x128, 4 at 192x256, 5 at 384x512), started
twice, from the previous frame-to-frame motion (constant velocity) and from no motion, keeping
the start that ends with the lower photometric cost, so that one failed frame does not derail
the next through the velocity; with ``heads.camera_pose == "procrustes"`` the network's own
frame t-1 -> t motion is a third start (run G's checkpoint, first 8 ``synthetic-dynamic``
scenes at 128: ATE 0.098 with the network's motion in place of the velocity, 0.081 with the
velocity and no motion only, 0.076 with all three; docs/RESULTS.md). Measured
(`bench/bench_pose_refinement.py`, docs/RESULTS.md): with exact depth on four 40-frame loop scenes turning 8-11 degrees a frame, two starts took
the mean rotation error per frame from 0.1 / 4.0 / 20.3 / 0.9 to 0.1 / 3.7 / 6.8 / 0.5 degrees;
a 4th pyramid level helped more there but did worse on `synthetic-dynamic` with the step-3200
checkpoint's depth (ATE 0.094 vs 0.088). With a fixed 3 levels, a larger input made the
coarsest level finer and the motion the alignment catches smaller in the image, so a larger
``--size`` could make poses worse on faster footage (issue 14); the pyramid now follows the
image (docs/RESULTS.md, "Pose refinement pyramid"). The pose is chained,
``cam2world_t = cam2world_{t-1} @ inverse(motion_t)``, and the world pointmap becomes
``cam2world_t . pts_cam`` so that points and poses agree. The network's own world pointmap
still feeds the PSM (it was trained on it). Causal and bounded: the state keeps one frame.
No gradients: an inference step (training recipes leave it off).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mem4d.geometry.camera import focal_to_fov, intrinsics_to_fov
from mem4d.geometry.photometric import photometric_align
from mem4d.model.focal_calibration import (FOCAL_SCALES, calibrates, focal_costs, focal_scale, informative,
                                           running_intrinsics, zoom_focal)
from mem4d.geometry.rotation import axis_angle_to_matrix, matrix_to_quat, se3_orthonormalize
from mem4d.geometry.se3 import se3_inverse, transform_points
from mem4d.model.outputs import FrameOutput
from mem4d.model.scale_chain import chained_factor, scale_ratio
from mem4d.model.state import StreamState

__all__ = ["refine_pose", "rotation_probes"]

ITERS = (12, 8, 6)  # Gauss-Newton iterations per level, coarsest first; finer extra levels reuse the last
SELECT_AFTER = None  # pyramid levels every start runs before the cheapest goes on alone (None: all of them)
PROBE_FRACTION = 1 / 6  # probing turns: this fraction of the field of view, each way, about the x and y axes


def rotation_probes(velocity: torch.Tensor, intrinsics: torch.Tensor, image_size: tuple[int, int],
                    fraction: float | None = None) -> torch.Tensor:
    """The 8 probing starts of the alignment: the constant-velocity motion (B, 4, 4) turned by
    ``fraction`` of the field of view left, right, up, down and diagonally (yaw about the camera's
    y axis, pitch about its x axis; intrinsics (B, 3, 3) give the fields of view of an image of
    ``image_size`` (H, W)) -> (8, B, 4, 4). A turn the velocity does not predict (the first frames
    of a pan, a sudden turn) lands within a fraction of a coarse pixel of one of them."""
    H, W = image_size
    fraction = PROBE_FRACTION if fraction is None else fraction
    fov_x, fov_y = intrinsics_to_fov(intrinsics, H, W)  # (B,) each
    yaw, pitch = fraction * fov_x, fraction * fov_y
    turns = []
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            if sx or sy:
                v = torch.stack([sy * pitch, sx * yaw, torch.zeros_like(yaw)], -1)  # (B, 3)
                T = torch.eye(4, dtype=velocity.dtype, device=velocity.device).repeat(velocity.shape[0], 1, 1)
                T[:, :3, :3] = axis_angle_to_matrix(v).to(velocity.dtype)
                turns.append(T @ velocity)
    return torch.stack(turns)


def _align(state: StreamState, frame: torch.Tensor, intrinsics: torch.Tensor, levels: int | None,
           iters: tuple[int, ...], two_starts: bool, start_a2b: torch.Tensor | None = None,
           select_after: int | None = None, probes: bool = False) -> torch.Tensor:
    """Frame t-1 -> t motion (B, 4, 4): the alignment started from the constant velocity, from no
    motion (``two_starts``), from ``start_a2b`` (when given) and from the best of the
    `rotation_probes` (``probes``), whichever ends with the lowest photometric cost (after
    ``select_after`` pyramid levels; None: at full resolution)."""
    B = frame.shape[0]
    starts = [state.pose_velocity]
    if two_starts:
        starts.append(torch.eye(4, dtype=frame.dtype, device=frame.device).expand(B, 4, 4))
    if start_a2b is not None:
        starts.append(start_a2b)
    probe = rotation_probes(state.pose_velocity, intrinsics, tuple(frame.shape[-2:])) if probes else None
    motion, _ = photometric_align(state.prev_image, state.prev_depth, frame, intrinsics, init_a2b=torch.stack(starts),
                                  weight_a=state.prev_weight, levels=levels, iters=iters, select_after=select_after,
                                  probe_a2b=probe)
    return motion


@torch.no_grad()
def refine_pose(
    frame: torch.Tensor, out: FrameOutput, state: StreamState, new_state: StreamState, *,
    levels: int | None = None, iters: tuple[int, ...] = ITERS, two_starts: bool = True,
    select_after: int | None = SELECT_AFTER,
    start_a2b: torch.Tensor | None = None, probes: bool = False, focal: bool = False, scale_keep: float = 0.0,
) -> tuple[FrameOutput, StreamState]:
    """Replaces the pose of ``out`` (frame ``state.frame_index``) by the refined one.

    Args:
        frame: (B, 3, H, W) the frame just predicted.
        out: the network's `FrameOutput` for it.
        state: the state before this frame (holds frame t-1's image, depth, weight, pose).
        new_state: the state after it, without the refinement's fields updated.
        levels, iters, two_starts: the alignment's pyramid levels (None: `pyramid_levels` of
            the frame, the coarsest level at most 32 pixels long), Gauss-Newton iterations per
            level (coarsest first) and whether to also start from no motion (the model's
            settings are the defaults; `bench/bench_pose_refinement.py` compares others).
        start_a2b: (B, 4, 4) a further guess of the frame t-1 -> t motion to start from (the
            network's own motion with ``camera_pose == "procrustes"``), next to the constant
            velocity and no motion.
        probes: also probe 8 turns of the velocity on the coarsest level (`rotation_probes`);
            the best one becomes one more start.
        focal: calibrate the focal length from the motion (`mem4d.model.focal_calibration`):
            the network's intrinsics are averaged over the frames so far, the alignment uses
            that mean zoomed by the focal scale found so far, and the output's intrinsics, fov_x
            and pts_cam (x and y moved onto the new rays) take the scale found with this frame.
        scale_keep: > 0 chains the depth's scale through the motion (`mem4d.model.scale_chain`):
            the output's depth and pts_cam are multiplied by the factor that puts them in frame
            t-1's (corrected) scale, raised to this power; 0: off.
    Returns:
        (the output with cam2world / quat_wxyz / translation / pts_world / conf_world replaced
        (frame 0 keeps its identity pose), with ``focal`` its intrinsics / fov_x / pts_cam, with
        ``scale_keep`` its depth / pts_cam;
        the new state carrying this frame for the next alignment).
    """
    B = frame.shape[0]
    depth = out.depth.detach().float()
    weight = torch.ones_like(depth) if out.dynamic_prob is None else 1 - out.dynamic_prob.detach().float()
    eye = torch.eye(4, dtype=torch.float32, device=frame.device).expand(B, 4, 4)
    K_net = out.intrinsics.detach().float()
    intrinsics_sum = summed = None
    if focal:  # the video's one camera: the network's intrinsics averaged so far, zoomed by the calibration
        K_net, intrinsics_sum = running_intrinsics(K_net, state.intrinsics_sum, state.frame_index)
        summed = torch.zeros(B, len(FOCAL_SCALES), device=frame.device) if state.focal_costs is None \
            else state.focal_costs
    if state.frame_index == 0:
        cam2world, motion = out.cam2world.detach().float(), eye
    else:
        start = None if start_a2b is None else start_a2b.detach().float()
        K = K_net if summed is None else zoom_focal(K_net, focal_scale(summed))
        motion = _align(state, frame.float(), K, levels, iters, two_starts, start, select_after, probes)
        cam2world = se3_orthonormalize(state.cam2world @ se3_inverse(motion))
        if summed is not None:
            turned = informative(motion) & calibrates(state.frame_index)
            if bool(turned.any()):
                costs = focal_costs(state.prev_image, state.prev_depth, state.prev_weight, frame, K_net, motion)
                summed = summed + costs * turned[:, None].to(costs.dtype)
    factor = None
    if scale_keep > 0:
        previous = torch.ones(B, device=frame.device) if state.depth_correction is None else state.depth_correction
        factor = previous if state.frame_index == 0 else chained_factor(
            scale_ratio(state.prev_depth, state.prev_weight, depth, weight, K, motion), previous, scale_keep)
        depth = depth * factor[:, None, None]
        out = replace(out, depth=depth.to(out.depth.dtype),
                      pts_cam=out.pts_cam * factor[:, None, None, None].to(out.pts_cam.dtype))
    if summed is not None:
        K = zoom_focal(K_net, focal_scale(summed))
        own = out.intrinsics.float()  # the points lie on the network's own rays: move them onto K's
        shrink = torch.stack([own[:, 0, 0] / K[:, 0, 0], own[:, 1, 1] / K[:, 1, 1], torch.ones_like(K[:, 0, 0])], -1)
        out = replace(out, intrinsics=K.to(out.intrinsics.dtype),
                      fov_x=focal_to_fov(K[:, 0, 0], frame.shape[-1]).to(out.fov_x.dtype),
                      pts_cam=out.pts_cam * shrink[:, None, None].to(out.pts_cam.dtype))
    pts_world = transform_points(cam2world[:, None, None].to(out.pts_cam.dtype), out.pts_cam)
    out = replace(out, cam2world=cam2world.to(out.cam2world.dtype), quat_wxyz=matrix_to_quat(cam2world[:, :3, :3]),
                  translation=cam2world[:, :3, 3], pts_world=pts_world, conf_world=out.conf_cam)
    new_state = replace(new_state, cam2world=cam2world, prev_image=frame.detach().float(), prev_depth=depth,
                        prev_weight=weight, pose_velocity=motion.contiguous(), focal_costs=summed,
                        intrinsics_sum=intrinsics_sum, depth_correction=factor)
    return out, new_state
