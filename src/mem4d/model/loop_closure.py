"""Loop closure for the refined poses (``heads.loop_closure``) [not in the paper; inference only].

The photometric refinement (`mem4d.model.pose_refinement`) chains frame-to-frame motions, so
its error grows along the video: on the scene-memory loops (40 frames, 8-11 degrees a frame)
the chained pose of a revisit frame is 1-19 degrees and 0.2-0.5 m off the frame it revisits.
Aligning the revisit frame directly against that old frame, started from the chained guess,
brings most of them to 0.1-0.2 degrees and under 2 cm (docs/RESULTS.md, "Loop closure").

What it keeps: up to ``CAPACITY`` keyframes per stream (image, refined depth, static weight,
refined pose and frame index), stored at a resolution whose long side is at most
``KEY_SIDE`` pixels, so the state stays bounded whatever the video's length or size. A frame
becomes a keyframe when no stored keyframe is predicted to see ``NOVELTY`` of its view (the
first frame always is); when the store is full, the oldest keyframe after frame 0 makes room.

What it does, every ``EVERY``-th frame t after the refinement: among the keyframes at least ``MIN_GAP``
frames old, the oldest one whose pixels (lifted by their depth, moved by the chained poses)
land at least ``ATTEMPT`` inside frame t is aligned to frame t (`photometric_align`, started
from the chained relative pose and from no relative motion, plus the rotation probes). Older
keyframes come first because they carry less drift. The closure is kept when at least
``ACCEPT`` of the keyframe's pixels land inside frame t under it, its photometric cost is at
most ``COST_RATIO`` times the chained pose's and at most ``FLOOR_RATIO`` times that of frame t-1
-> t under the refined motion (a right closure fits about as well as consecutive frames do; on
the loops right ones ended at 0.2-3.8x that cost, wrong ones at 6.5-15x), frame t's channels
first matched to the keyframe's mean and spread (exposure and white balance drift along a
video). A closure those cost tests refuse is still kept when frame t, aligned back onto the
keyframe with its own depth, agrees with it: the two fits move the keyframe's pixels to within
``AGREE_PX`` of each other (a right fit is found from both ends, a wrong minimum is not), and its
cost is at most ``AGREE_COST_RATIO`` times the chained pose's. Then frame t's pose becomes
``cam2world_key @ inverse(key -> t)``, and the next frames chain from it (no pose graph:
earlier frames keep their poses, as in relocalisation). The output reports the closure
(``loop_keyframe``, ``loop_correction``: the world-side jump), so that a consumer that keeps the
past frames, such as the scene memory (`mem4d.scene.SceneMemory.close_loop`), can spread the
correction over the frames since the keyframe. Causal: it reads frame t and stored past frames only.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.geometry.camera import depth_to_pts_cam, project, scale_intrinsics
from mem4d.geometry.photometric import photometric_align, photometric_residuals
from mem4d.geometry.rotation import matrix_to_quat, se3_orthonormalize
from mem4d.geometry.se3 import se3_inverse, transform_points
from mem4d.model.outputs import FrameOutput
from mem4d.model.pose_refinement import rotation_probes
from mem4d.model.state import StreamState

__all__ = ["CAPACITY", "KEY_SIDE", "close_loop", "key_factor", "view_overlap"]

CAPACITY = 16  # keyframes kept per stream
KEY_SIDE = 128  # keyframes are stored halved until their long side is at most this many pixels
NOVELTY = 0.5  # a frame is a keyframe when no keyframe is predicted to see this much of its view
EVERY = 4  # a closure is tried on every EVERY-th frame (each try costs about one more alignment)
MIN_GAP = 10  # keyframes younger than this many frames are not closed against (the chain is fresh there)
ATTEMPT = 0.4  # the predicted share of a keyframe's pixels inside frame t to try a closure
ACCEPT = 0.5  # the share inside frame t under the closure's motion to keep it
COST_RATIO = 0.35  # the closure's photometric cost over the chained pose's, at most (0.5 alone let a wrong one through)
FLOOR_RATIO = 5.0  # the closure's cost over that of frame t-1 -> t under the refined motion, at most (right
# closures on the loops ended at 0.2-3.8x, wrong ones at 6.5-15x; 0.3 / 3 refused four right ones at 0.25-0.32 / 1.9-3.8x;
# with ATTEMPT lowered to 0.2 a wrong one passed at 0.32 / 3.2x, so ATTEMPT is part of the safety: docs/RESULTS.md)
AGREE_PX = 0.5  # a closure the cost tests refuse is kept when the reverse alignment (frame t onto the keyframe,
AGREE_COST_RATIO = 0.5  # with frame t's own depth, started on its own) moves the keyframe's pixels within this many
# pixels of where it does (`_disagreement_px`), its cost at most this times the chained pose's (on 32 loops fits within
# 1 degree of the truth with most of the keyframe in view agreed within 0.01-0.38 px, fits 4-85 degrees off were
# 4.2-1,300 px apart: docs/RESULTS.md)
MATCH_EXPOSURE = True  # frame t's channels matched to the keyframe's mean and spread before the closure
_KEY_FIELDS = ("key_images", "key_depths", "key_weights", "key_cam2world", "key_frames")  # in `StreamState`
_GRID = 8  # the overlap is counted on every _GRID-th pixel of the stored keyframe


def key_factor(image_size: tuple[int, int]) -> int:
    """The power of 2 that keyframes of frames ``image_size`` (H, W) are shrunk by: 1 at 96x128,
    2 at 192x256, 4 at 384x512."""
    f = 1
    while max(image_size) / f > KEY_SIDE:
        f *= 2
    return f


def _shrink(frame: Tensor, depth: Tensor, weight: Tensor, K: Tensor, f: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(B, 3, H, W), (B, H, W), (B, H, W), (B, 3, 3) -> the same ``f`` times smaller (depth averaged
    over its valid pixels, intrinsics moved to the new pixel grid)."""
    if f == 1:
        return frame, depth, weight, K
    valid = (depth > 0).float()
    num = F.avg_pool2d((depth * valid)[:, None], f)[:, 0]
    den = F.avg_pool2d(valid[:, None], f)[:, 0]
    return (F.avg_pool2d(frame, f), torch.where(den > 0, num / den.clamp_min(1e-12), 0.0),
            F.avg_pool2d(weight[:, None], f)[:, 0], scale_intrinsics(K, 1 / f, 1 / f))


def _grid_points(depth: Tensor, weight: Tensor, K: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """Every ``step``-th pixel of frames (N, h, w) lifted by its depth: points (N, h', w', 3) in the
    camera and the mask (N, h', w') of those with depth and static weight > 0.5."""
    d, w = depth[:, ::step, ::step], weight[:, ::step, ::step]
    Ks = K.clone()
    Ks[:, :2, :2] = Ks[:, :2, :2] / step
    Ks[:, :2, 2] = Ks[:, :2, 2] / step  # pixel (i, j) of the subsampled grid is pixel (i, j) * step
    return depth_to_pts_cam(d, Ks), (d > 0) & (w > 0.5)


def view_overlap(depth: Tensor, weight: Tensor, K: Tensor, a2b: Tensor, image_size: tuple[int, int]) -> Tensor:
    """The share of frame a's static pixels with depth that land inside frame b.

    Args:
        depth, weight: (N, h, w) frame a's depth and static weight (pixels with weight > 0.5 count).
        K: (N, 3, 3) intrinsics of both frames on that pixel grid.
        a2b: (N, 4, 4) motion from camera a to camera b.
        image_size: (h, w) of frame b.
    Returns:
        (N,) in [0, 1] (0 where frame a has no such pixel).
    """
    pts, counted = _grid_points(depth, weight, K, _GRID)
    moved = transform_points(a2b[:, None, None], pts)
    uv = project(K[:, None, None], moved)
    h, w_ = image_size
    inside = (moved[..., 2] > 1e-3) & (uv[..., 0] >= 0) & (uv[..., 0] <= w_ - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1)
    return (inside & counted).flatten(1).sum(1) / counted.flatten(1).sum(1).clamp_min(1)


def _cost(image_a: Tensor, depth_a: Tensor, weight_a: Tensor, image_b: Tensor, K: Tensor, a2b: Tensor) -> Tensor:
    """The photometric cost (B,) of frame b against frame a under ``a2b`` at full resolution."""
    cost, mask = photometric_residuals(image_a, depth_a, image_b, K, a2b, weight_a)
    return (cost * mask).sum(1) / mask.sum(1).clamp_min(1)


def _match_exposure(image: Tensor, reference: Tensor) -> Tensor:
    """``image`` (1, 3, h, w) with each channel's mean and spread moved to those of ``reference``:
    an old keyframe may have been taken at another exposure or white balance."""
    mean, std = image.mean((2, 3), keepdim=True), image.std((2, 3), keepdim=True).clamp_min(1e-4)
    return (image - mean) / std * reference.std((2, 3), keepdim=True) + reference.mean((2, 3), keepdim=True)


def _align(image_a: Tensor, depth_a: Tensor, weight_a: Tensor, image_b: Tensor, K: Tensor, guess: Tensor) -> tuple[Tensor, Tensor]:
    """The motion a -> b (1, 4, 4) and its cost (1,), frame b's channels first matched to frame a's,
    started from ``guess`` and from no motion, plus the rotation probes around ``guess``."""
    image_b = _match_exposure(image_b, image_a) if MATCH_EXPOSURE else image_b
    starts = torch.stack([guess, torch.eye(4, device=image_a.device)[None]])
    return photometric_align(image_a, depth_a, image_b, K, init_a2b=starts, weight_a=weight_a,
                             probe_a2b=rotation_probes(guess, K, tuple(image_b.shape[-2:])))


def _disagreement_px(depth: Tensor, weight: Tensor, K: Tensor, a2b: Tensor, other_a2b: Tensor) -> float:
    """The mean distance in pixels between where two motions a -> b (1, 4, 4) put frame a's static
    pixels (depth, weight (1, h, w), intrinsics K (1, 3, 3)): motions that trade a small turn for a
    small shift, as the two directions of one right fit do, land the pixels at the same places."""
    pts, counted = _grid_points(depth, weight, K, _GRID // 2)
    pts = pts[counted]  # (N, 3)
    if len(pts) == 0:
        return float("inf")
    uv_a, uv_b = (project(K[0], transform_points(m[0], pts)) for m in (a2b, other_a2b))
    return float((uv_a - uv_b).norm(dim=-1).mean())


def _closure(key: tuple[Tensor, Tensor, Tensor], frame: tuple[Tensor, Tensor, Tensor], K: Tensor, guess: Tensor,
             floor: float) -> Tensor | None:
    """The keyframe -> frame t motion (1, 4, 4) if frame t closes onto the keyframe, started from
    ``guess`` (1, 4, 4); None if the fit is not clearly right.

    Args:
        key, frame: (image (1, 3, h, w), depth (1, h, w), static weight (1, h, w)) of the keyframe
            and of frame t.
        floor: the cost of frame t-1 -> t under the refined motion.
    """
    a2b, cost = _align(*key, frame[0], K, guess)
    size = tuple(frame[0].shape[-2:])
    if float(view_overlap(key[1], key[2], K, a2b, size)) < ACCEPT:
        return None
    chained = float(_cost(*key, _match_exposure(frame[0], key[0]) if MATCH_EXPOSURE else frame[0], K, guess))
    if float(cost) <= COST_RATIO * chained and float(cost) <= FLOOR_RATIO * floor:
        return a2b
    if float(cost) > AGREE_COST_RATIO * chained:
        return None
    b2a, _ = _align(*frame, key[0], K, se3_inverse(guess))  # the reverse fit: a wrong minimum is not found twice
    return a2b if _disagreement_px(key[1], key[2], K, a2b, se3_inverse(b2a)) <= AGREE_PX else None


def _empty_keys(B: int, size: tuple[int, int], device: torch.device) -> dict[str, Tensor]:
    h, w = size
    z = dict(device=device, dtype=torch.float32)
    return dict(zip(_KEY_FIELDS, (torch.zeros(B, CAPACITY, 3, h, w, **z), torch.zeros(B, CAPACITY, h, w, **z),
                                   torch.zeros(B, CAPACITY, h, w, **z), torch.eye(4, **z).repeat(B, CAPACITY, 1, 1),
                                   torch.full((B, CAPACITY), -1, dtype=torch.long, device=device))))


@torch.no_grad()
def close_loop(frame: Tensor, out: FrameOutput, state: StreamState, new_state: StreamState,
               t: int) -> tuple[FrameOutput, StreamState]:
    """Closes frame ``t``'s refined pose against an old keyframe where one is in view, and keeps
    frame t as a keyframe where none is.

    Args:
        frame: (B, 3, H, W) frame t.
        out: its `FrameOutput` after the refinement (refined ``cam2world``, depth, intrinsics).
        state: the state before frame t (frame t-1's image, depth and weight: how well
            consecutive frames fit, the closure's yardstick).
        new_state: the state after frame t (``prev_weight``: frame t's static weight; the
            keyframe fields of frames before t).
    Returns:
        (the output with cam2world / quat_wxyz / translation / pts_world replaced where a loop
        closed, and ``loop_keyframe`` / ``loop_correction`` set (-1 / the identity where none
        did); the state with those poses and the updated keyframes).
    """
    B = frame.shape[0]
    f = key_factor(tuple(frame.shape[-2:]))
    weight = torch.ones_like(out.depth.float()) if new_state.prev_weight is None else new_state.prev_weight.float()
    image, depth, weight, K = _shrink(frame.float(), out.depth.detach().float(), weight, out.intrinsics.detach().float(), f)
    size = tuple(image.shape[-2:])
    keys = {name: getattr(new_state, name) for name in _KEY_FIELDS}
    if keys["key_frames"] is None:
        keys = _empty_keys(B, size, frame.device)
    chained = out.cam2world.detach().float()
    cam2world = chained.clone()
    closed = torch.zeros(B, dtype=torch.bool, device=frame.device)
    onto = torch.full((B,), -1, dtype=torch.long, device=frame.device)
    inserted, floor = False, None
    for b in range(B):
        stored = (keys["key_frames"][b] >= 0).nonzero().flatten()
        Kb = K[b:b + 1]
        if len(stored):
            k2t = se3_inverse(cam2world[b]).expand(len(stored), 4, 4) @ keys["key_cam2world"][b, stored]
            seen = view_overlap(keys["key_depths"][b, stored], keys["key_weights"][b, stored],
                                Kb.expand(len(stored), 3, 3), k2t, size)
            old = (t - keys["key_frames"][b, stored] >= MIN_GAP) & (seen >= ATTEMPT) & (t % EVERY == 0)
            if bool(old.any()):
                i = int(torch.where(old, keys["key_frames"][b, stored], t + 1).argmin())  # the oldest in view
                j = int(stored[i])
                key = (keys["key_images"][b, j][None], keys["key_depths"][b, j][None], keys["key_weights"][b, j][None])
                if floor is None:  # how well consecutive frames fit here: frame t-1 -> t under the refined motion
                    floor = _cost(*_shrink(state.prev_image.float(), state.prev_depth.float(), state.prev_weight.float(),
                                           out.intrinsics.detach().float(), f)[:3], image, K, new_state.pose_velocity.float())
                a2b = _closure(key, (image[b:b + 1], depth[b:b + 1], weight[b:b + 1]), Kb, k2t[i][None], float(floor[b]))
                if a2b is not None:
                    cam2world[b] = se3_orthonormalize(keys["key_cam2world"][b, j] @ se3_inverse(a2b[0]))
                    closed[b] = True
                    onto[b] = keys["key_frames"][b, j]
                    k2t = se3_inverse(cam2world[b]).expand(len(stored), 4, 4) @ keys["key_cam2world"][b, stored]
                    seen = view_overlap(keys["key_depths"][b, stored], keys["key_weights"][b, stored],
                                        Kb.expand(len(stored), 3, 3), k2t, size)
            if float(seen.max()) >= NOVELTY:
                continue
        if not inserted:  # the state is never changed in place: copy the keyframes once per step
            keys = {name: value.clone() for name, value in keys.items()}
            inserted = True
        frames = keys["key_frames"][b]
        empty = (frames < 0).nonzero().flatten()
        j = int(empty[0]) if len(empty) else int(torch.where(frames > 0, frames, t + 1).argmin())
        keys["key_images"][b, j], keys["key_depths"][b, j], keys["key_weights"][b, j] = image[b], depth[b], weight[b]
        keys["key_cam2world"][b, j], keys["key_frames"][b, j] = cam2world[b], t
    correction = torch.where(closed[:, None, None], cam2world @ se3_inverse(chained),
                             torch.eye(4, device=frame.device).expand(B, 4, 4))
    out = replace(out, loop_keyframe=onto, loop_correction=correction)
    if bool(closed.any()):
        pts_world = transform_points(cam2world[:, None, None].to(out.pts_cam.dtype), out.pts_cam)
        out = replace(out, cam2world=cam2world.to(out.cam2world.dtype), quat_wxyz=matrix_to_quat(cam2world[:, :3, :3]),
                      translation=cam2world[:, :3, 3], pts_world=pts_world)
    return out, replace(new_state, cam2world=cam2world, **keys)
