"""The depth's scale chained through the refined motion (``heads.refine_scale``) [not in the paper].

A network that predicts each frame's depth on its own also predicts its scale on its own, and
that scale wanders from frame to frame: the shipped model's per-frame ratio to the true depth
has a standard deviation of about 10 % within a `synthetic-dynamic` sequence. The photometric
pose refinement lifts frame t-1 with its depth, so the translation it finds is in frame t-1's
scale, while frame t's points come in frame t's: points and poses of neighbouring frames then
disagree by the wander.

After the refinement has found the motion t-1 -> t, frame t-1's (already corrected) depth is
moved into frame t, and the median, over static pixels seen by both, of the moved depth over
frame t's own depth at the pixel it lands on is the ratio rho_t that would put frame t in frame
t-1's scale. Chained alone, the ratios' errors would add up along the video; frame t's factor
is ``c_t = rho_t ** keep`` (``keep`` < 1 lets the network's own scale pull it back, a leak with
a time constant of about 1 / (1 - keep) frames). Where too few pixels are shared, or where
the ratio says the network's scale jumped by more than ``MAX_STEP`` (in log) from frame t-1
to t, the previous factor is kept, leaked the same way: ``c_t = c_{t-1} ** keep``. The
network's true frame-to-frame scale change on `synthetic-dynamic` is 0.02 in log at the median,
0.19 at the 99th percentile and 0.38 at most (shipped model, 1,128 steps); before this guard
a measured jump of 0.48 sent one `synthetic-realistic` courtyard loop's depth off by up to 2x.
The ratio's error is the network's: frames whose depth differs in shape, not only in scale
(on those courtyard loops it errs by 0.06-0.09 in log per frame, in the rooms by 0.01, with the
refined motion and with the true one alike; docs/RESULTS.md, "The depth's scale chained").

Causal and bounded (one factor per stream in the state); no gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mem4d.geometry.camera import depth_to_pts_cam, project
from mem4d.geometry.se3 import transform_points

__all__ = ["MAX_STEP", "MIN_PIXELS", "STATIC", "chained_factor", "scale_ratio"]

MIN_PIXELS = 50  # shared static pixels a ratio needs
STATIC = 0.5  # a pixel is static where its weight (1 - dynamic probability) is above this
MAX_STEP = 0.25  # the largest frame-to-frame jump of the network's log scale a ratio may say


def scale_ratio(depth_a: Tensor, weight_a: Tensor, depth_b: Tensor, weight_b: Tensor, intrinsics: Tensor,
                a2b: Tensor) -> Tensor:
    """The factor that puts frame b's depth in frame a's scale.

    Args:
        depth_a, depth_b: (B, H, W) z-depth of the two frames.
        weight_a, weight_b: (B, H, W) static weights in [0, 1] (1 - dynamic probability).
        intrinsics: (B, 3, 3) of both frames (the camera the alignment used).
        a2b: (B, 4, 4) the motion from camera a to camera b.
    Returns:
        (B,) the median over frame a's static pixels that land inside frame b on a static pixel
        of (their depth in camera b) / (frame b's depth at the nearest pixel); NaN where fewer than
        `MIN_PIXELS` such pixels, or none of positive depth.
    """
    B, H, W = depth_b.shape
    pts = transform_points(a2b[:, None, None], depth_to_pts_cam(depth_a, intrinsics))  # (B, H, W, 3)
    z = pts[..., 2]
    uv = project(intrinsics[:, None, None], pts).round()  # (B, H, W, 2), nearest pixel centre
    u, v = uv[..., 0], uv[..., 1]
    ok = (z > 0) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1) & (weight_a > STATIC) & (depth_a > 0)
    index = (v.clamp(0, H - 1) * W + u.clamp(0, W - 1)).long().reshape(B, -1)
    at_b = torch.gather(depth_b.reshape(B, -1), 1, index)
    ok = ok.reshape(B, -1) & (torch.gather(weight_b.reshape(B, -1), 1, index) > STATIC) & (at_b > 0)
    ratio = torch.where(ok, z.reshape(B, -1) / at_b.clamp_min(1e-12), torch.full_like(at_b, float("nan")))
    median = ratio.nanmedian(dim=1).values
    return torch.where(ok.sum(1) >= MIN_PIXELS, median, torch.full_like(median, float("nan")))


def chained_factor(ratio: Tensor, previous: Tensor, keep: float) -> Tensor:
    """Frame t's depth factor (B,): ``ratio ** keep``, or ``previous ** keep`` where the ratio is
    NaN, not positive, or more than `MAX_STEP` away from ``previous`` in log (``ratio / previous``
    is the network's own scale change from frame t-1 to t)."""
    ok = torch.isfinite(ratio) & (ratio > 0)
    ok &= (torch.log(torch.where(ok, ratio, previous)) - torch.log(previous)).abs() <= MAX_STEP
    base = torch.where(ok, ratio, previous)
    return base.clamp_min(1e-6) ** keep
