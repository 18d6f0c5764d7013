"""Focal length from the video's own motion (``heads.refine_focal``) [not in the paper].

Why: the camera head guesses the focal length from single frames, and on synthetic scenes that
guess is off by 20-80 % (pred/true focal 0.76-1.80 per `synthetic-dynamic` / `-realistic`
sequence, docs/RESULTS.md) and jitters by a few per cent from frame to frame. A wrong focal
length turns every rotation into the wrong angle (a 10-degree turn seen through a focal length
33 % too long reads as about 8.5 degrees), so the refined trajectory drifts on fast turns: on a
loop scene whose focal the network has 33 % too long, the mean rotation error per frame is 1.57
degrees, and 0.34 with the true focal.

How: a video has one camera, so the network's guesses are first averaged over the frames so far
(`running_intrinsics`; the state carries their sum). The image motion of a rotation depends on
the focal length (far from the image centre more than near it), so the photometric cost of
aligning frame t-1 to frame t tells the focal length apart once the camera turns. After the
refinement has chosen frame t's motion, the alignment is re-run from it at each of
`FOCAL_SCALES` times that averaged focal length (all hypotheses in one batch, on the pyramid
down to half resolution). Each hypothesis' cost at full resolution, its mean over the pixels
that every hypothesis keeps in view (so that no focal length wins by pushing pixels out of the
image), is added to a running sum in the stream state. Only frames that turn by at least
`MIN_TURN_DEG` add costs: a turn is what tells focal lengths apart, while under translation
alone a wrong focal length can be traded for a wrong depth (on the real 7-Scenes frames,
turning 0.2-1.2 degrees a frame, an ungated calibration wandered to 0.66 of the true focal and
back). A turn of 2-2.5 degrees is still too weak: at 96x128 the focal-dependent part of its
image motion is a fraction of a pixel, below the error of the network's depth, and on 5 of 48
synthetic handheld / orbit sequences one to five such frames set the focal length 14-104 % off
(docs/RESULTS.md, "Fast turns"). The focal scale is the minimum of the sum (parabolic
interpolation in log scale between the grid points). While the camera has not turned, the sums
stay flat (their spread below `MIN_CONTRAST` of their mean, each frame's costs raised by a
noise floor) and the network's own focal length is kept.

Cost: 9 hypotheses x (4 + 2 Gauss-Newton steps on the two coarsest levels + one full-resolution
residual), about 12 ms a frame at 96x128 on one core, on every frame up to `DENSE_FRAMES`
and every `STRIDE`-th after.

Causal and bounded: the state keeps one (B, S) sum; the scale of frame t depends on frames
0..t only. No gradients (an inference step, like the refinement it belongs to).
"""

from __future__ import annotations

import torch
from torch import Tensor

from mem4d.geometry.photometric import photometric_align, photometric_residuals

__all__ = ["COST_FLOOR", "FOCAL_SCALES", "MIN_CONTRAST", "calibrates", "focal_costs", "focal_scale", "informative",
           "running_intrinsics", "zoom_focal"]

FOCAL_SCALES = tuple(2.0 ** (k / 4) for k in range(-4, 5))  # hypotheses, times the network's focal length:
# 0.5 ... 2.0, evenly spaced in log scale (a ratio of 1.19), wide enough for the network's 0.56-1.80x errors
MIN_CONTRAST = 0.01  # the summed costs' spread (max - min) / mean under which the network's focal is kept
COST_FLOOR = 1e-4  # added to every frame's costs: the Huber cost of a 1.4 % grey-level residual (sensor noise),
# so that the tiny differences of near-perfect pairs (a still camera) do not count as contrast
ITERS = (4, 2)  # Gauss-Newton iterations per level of each hypothesis' re-alignment, coarsest first
MIN_TURN_DEG = 3.0  # frames whose chosen motion turns less add no costs: a turn tells focal lengths apart,
# while under translation a wrong focal length can be traded for a wrong depth
DENSE_FRAMES = 16  # frames 1..DENSE_FRAMES all add their costs; after them every STRIDE-th frame does
STRIDE = 4
STOP_LEVEL = 1  # the hypotheses are re-aligned down to half resolution (and compared at full resolution)


def calibrates(frame_index: int) -> bool:
    """Whether frame ``frame_index`` adds its costs: every frame up to `DENSE_FRAMES`, then every
    `STRIDE`-th (the focal length of a video does not change; the later frames confirm it at a
    quarter of the cost)."""
    return 1 <= frame_index <= DENSE_FRAMES or (frame_index > 0 and frame_index % STRIDE == 0)


def running_intrinsics(intrinsics: Tensor, summed: Tensor | None, frame_index: int) -> tuple[Tensor, Tensor]:
    """The video's one camera so far: the mean of the network's intrinsics (B, 3, 3) over frames
    0..``frame_index`` (``summed``: their sum over the earlier frames, None at frame 0) ->
    (the mean (B, 3, 3), the new sum). A single frame's guess jitters; the video's focal length
    does not (no zoom). A state with no sum after frame 0 (saved before the state carried it)
    counts this frame's guess for the earlier ones, so the mean stays a mean."""
    if summed is None:
        summed = intrinsics * (frame_index + 1)
    else:
        summed = summed + intrinsics
    return summed / (frame_index + 1), summed


def informative(a2b: Tensor) -> Tensor:
    """(B,) whether each motion (B, 4, 4) turns by at least `MIN_TURN_DEG`."""
    cos = ((a2b[:, 0, 0] + a2b[:, 1, 1] + a2b[:, 2, 2] - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)) >= MIN_TURN_DEG


@torch.no_grad()
def focal_costs(prev_image: Tensor, prev_depth: Tensor, prev_weight: Tensor, frame: Tensor, intrinsics: Tensor,
                a2b: Tensor) -> Tensor:
    """Photometric cost of each focal hypothesis for the pair (t-1, t), (B, S), plus `COST_FLOOR`.

    Args:
        prev_image, frame: (B, 3, H, W) frames t-1 and t.
        prev_depth, prev_weight: (B, H, W) frame t-1's depth and per-pixel weight.
        intrinsics: (B, 3, 3) the video's intrinsics so far (`running_intrinsics`; the hypotheses
            scale its focal lengths).
        a2b: (B, 4, 4) the chosen motion t-1 -> t, each hypothesis' start.
    """
    B, S = frame.shape[0], len(FOCAL_SCALES)
    scales = torch.tensor(FOCAL_SCALES, dtype=torch.float32, device=frame.device)
    K = intrinsics.float()[None].repeat(S, 1, 1, 1)  # (S, B, 3, 3), hypothesis-major
    K[:, :, 0, 0] *= scales[:, None]
    K[:, :, 1, 1] *= scales[:, None]
    rep = lambda x: x.float()[None].expand(S, *x.shape).reshape(S * B, *x.shape[1:])  # noqa: E731
    inputs = (rep(prev_image), rep(prev_depth), rep(frame), K.reshape(S * B, 3, 3))
    motion, _ = photometric_align(*inputs, init_a2b=rep(a2b), weight_a=rep(prev_weight), iters=ITERS,
                                  stop_level=STOP_LEVEL)
    cost, valid = photometric_residuals(*inputs, motion, rep(prev_weight), level=0)
    cost, valid = cost.reshape(S, B, -1), valid.reshape(S, B, -1)
    shared = valid.all(dim=0)  # (B, M): the pixels every hypothesis sees, so that none wins by losing pixels
    return ((cost * shared).sum(-1) / shared.sum(-1).clamp_min(1)).T.contiguous() + COST_FLOOR


def focal_scale(summed: Tensor) -> Tensor:
    """The focal scale (B,) that minimises the summed costs (B, S) over `FOCAL_SCALES`: the grid
    minimum refined by a parabola in log scale through it and its neighbours; 1 where the sums are
    flat (spread below `MIN_CONTRAST` of their mean: the camera has not turned enough to tell)."""
    logs = torch.log(torch.tensor(FOCAL_SCALES, dtype=summed.dtype, device=summed.device))
    i = summed.argmin(dim=1)
    S = summed.shape[1]
    lo, hi = (i - 1).clamp(0, S - 1), (i + 1).clamp(0, S - 1)
    c0, c1, c2 = (summed.gather(1, j[:, None])[:, 0] for j in (lo, i, hi))
    inner = (i > 0) & (i < S - 1)
    step = (logs[1:] - logs[:-1]).mean()  # the grid is near-uniform in log scale
    denom = c0 - 2 * c1 + c2
    offset = torch.where(inner & (denom > 0), 0.5 * (c0 - c2) / denom.clamp_min(1e-12), torch.zeros_like(c1))
    log_scale = logs[i] + offset.clamp(-0.5, 0.5) * step
    spread = (summed.max(dim=1).values - summed.min(dim=1).values) / summed.mean(dim=1).clamp_min(1e-12)
    flat = ~(spread >= MIN_CONTRAST)  # NaN sums count as flat
    return torch.where(flat, torch.ones_like(log_scale), torch.exp(log_scale))


def zoom_focal(intrinsics: Tensor, scale: Tensor) -> Tensor:
    """(B, 3, 3) intrinsics with both focal lengths times ``scale`` (B,), the principal point kept
    (a zoom; `mem4d.geometry.camera.scale_intrinsics` is the different map of a resized image)."""
    K = intrinsics.clone()
    K[:, 0, 0] = K[:, 0, 0] * scale.to(K.dtype)
    K[:, 1, 1] = K[:, 1, 1] * scale.to(K.dtype)
    return K
