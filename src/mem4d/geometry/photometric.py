"""Direct photometric alignment of two frames (dense visual odometry on a depth map).

Given frame a's image and depth and frame b's image, find the rigid motion ``a2b`` (points in
camera a -> camera b) that best explains b: every pixel p of a with depth d is lifted to
``X = d K^-1 p``, moved to ``X' = R X + t``, projected to ``p' = pi(K X')``, and the residual
is ``I_b(p') - I_a(p)`` on grey levels. Gauss-Newton with the analytic Jacobian

    dr/dxi = grad I_b(p') . dpi/dX'(X') . [I | -[X']_x]      (left perturbation xi = (v, w))

Huber weights, Levenberg damping (a step is kept only if the cost falls), coarse to fine on
an image pyramid. Pixels without depth, marked by ``weight = 0`` (e.g. moving objects), or
leaving the image do not count. Translation is in the units of ``depth``.

All tensors are batched: B pairs are aligned at once (each with its own damping).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.geometry.camera import depth_to_pts_cam, project
from mem4d.geometry.rotation import axis_angle_to_matrix
from mem4d.geometry.se3 import transform_points

__all__ = ["COARSEST_SIDE", "photometric_align", "photometric_residuals", "pyramid_levels", "warp_residual"]

_GREY = (0.299, 0.587, 0.114)
COARSEST_SIDE = 32  # long side (pixels) the coarsest pyramid level shrinks to, at any image size


def pyramid_levels(image_size: tuple[int, int], coarsest: int = COARSEST_SIDE) -> int:
    """Levels of a pyramid that halves ``image_size`` (H, W) until its long side is at most
    ``coarsest``: 3 at 96x128, 4 at 192x256, 5 at 384x512. The coarsest level, and with it the
    largest motion the alignment can catch (a few coarse pixels), is then the same fraction of
    the image at every input size."""
    long_side = max(int(image_size[0]), int(image_size[1]))
    levels = 1
    while long_side > coarsest:
        long_side = -(-long_side // 2)
        levels += 1
    return levels


def _grey(image: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma."""
    w = image.new_tensor(_GREY).view(1, 3, 1, 1)
    return (image * w).sum(1, keepdim=True)


def _pyramid(grey: Tensor, depth: Tensor, weight: Tensor, K: Tensor, levels: int) -> list[tuple]:
    """Finest first: (grey (B,1,h,w), depth (B,h,w), weight (B,h,w), K (B,3,3)) per level."""
    out = [(grey, depth, weight, K)]
    for _ in range(levels - 1):
        g, d, w, k = out[-1]
        if min(g.shape[-2:]) < 8:
            break
        valid = (d > 0).float() * w
        num = F.avg_pool2d((d * valid)[:, None], 2)[:, 0]
        den = F.avg_pool2d(valid[:, None], 2)[:, 0]
        k = k.clone()
        k[:, :2, :2] = k[:, :2, :2] / 2
        k[:, :2, 2] = (k[:, :2, 2] + 0.5) / 2 - 0.5
        out.append((F.avg_pool2d(g, 2), torch.where(den > 0, num / den.clamp_min(1e-12), 0.0), den, k))
    return out


def _pts(level: tuple) -> Tensor:
    """Frame a's pixels lifted by its depth at one pyramid level, (B, 3, h*w) (0 where no depth)."""
    _, depth, _, k = level
    h, w = depth.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=depth.dtype, device=depth.device),
                            torch.arange(w, dtype=depth.dtype, device=depth.device), indexing="ij")
    d = depth.flatten(1)
    return torch.stack([(xs.flatten() - k[:, 0, 2, None]) / k[:, 0, 0, None] * d,
                        (ys.flatten() - k[:, 1, 2, None]) / k[:, 1, 1, None] * d, d], 1)


def _gradients(grey: Tensor) -> Tensor:
    """(B, 1, H, W) -> (B, 2, H, W) central-difference d/dx, d/dy (replicated borders)."""
    p = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
    gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
    return torch.cat([gx, gy], 1)


def _residuals(level: tuple, image_b: Tensor, a2b: Tensor, pts_a: Tensor):
    """Residuals (B, M), validity mask (B, M) and, when ``image_b`` (B, 3, H, W) carries image b's
    gradients after its grey level (`_with_gradients`), the Jacobian (B, 6, M); with the grey
    level alone (B, 1, H, W), None. ``pts_a`` is (B, 3, M): every per-pixel quantity is kept
    channel-first, so that stacking them copies whole rows."""
    _, _, weight, K = level
    H, W = image_b.shape[-2:]
    X = a2b[:, :3, :3] @ pts_a + a2b[:, :3, 3, None]  # (B, 3, M) in camera b
    X0, X1, Z = X.unbind(1)
    in_front = Z > 1e-3
    iz = 1 / torch.where(in_front, Z, torch.ones_like(Z))
    fx, fy, cx, cy = K[:, 0, 0, None], K[:, 1, 1, None], K[:, 0, 2, None], K[:, 1, 2, None]
    u = fx * X0 * iz + cx
    v = fy * X1 * iz + cy
    grid = torch.stack([(u + 0.5) * (2 / W) - 1, (v + 0.5) * (2 / H) - 1], -1)[:, :, None]  # (B, M, 1, 2)
    sampled = F.grid_sample(image_b, grid, mode="bilinear", padding_mode="border", align_corners=False)[..., 0]
    inside = in_front & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    mask = inside & (weight.flatten(1) > 0) & (pts_a[:, 2] > 0)
    r = sampled[:, 0] - level[0].flatten(1)  # (B, M)
    if image_b.shape[1] == 1:
        return r, mask, None
    # d r / d X' (3 rows), then X' x d r / d X' (3 rows): [I | -[X]_x]^T dX = (dX, X x dX)
    d0, d1 = sampled[:, 1] * fx * iz, sampled[:, 2] * fy * iz
    d2 = -(d0 * X0 + d1 * X1) * iz
    J = torch.stack([d0, d1, d2, X1 * d2 - Z * d1, Z * d0 - X0 * d2, X0 * d1 - X1 * d0], 1)  # (B, 6, M)
    return r, mask, J


def _with_gradients(grey: Tensor) -> Tensor:
    """(B, 1, H, W) -> (B, 3, H, W): the grey level and its `_gradients`, read by one bilinear sample."""
    return torch.cat([grey, _gradients(grey)], 1)


def _cost(r: Tensor, mask: Tensor, delta: float) -> Tensor:
    a = r.abs()
    huber = torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))
    return (huber * mask).sum(1) / mask.sum(1).clamp_min(1)


def photometric_align(
    image_a: Tensor,
    depth_a: Tensor,
    image_b: Tensor,
    intrinsics: Tensor,
    init_a2b: Tensor | None = None,
    weight_a: Tensor | None = None,
    *,
    levels: int | None = None,
    iters: tuple[int, ...] = (12, 8, 6),
    huber: float = 0.05,
    select_after: int | None = None,
    probe_a2b: Tensor | None = None,
    stop_level: int = 0,
) -> tuple[Tensor, Tensor]:
    """Rigid motion a -> b that aligns image b to image a lifted by depth a.

    Args:
        image_a, image_b: (B, 3, H, W) RGB in [0, 1].
        depth_a: (B, H, W) z-depth of frame a (<= 0 or non-finite: no depth).
        intrinsics: (B, 3, 3) pixel intrinsics, shared by both frames.
        init_a2b: (B, 4, 4) starting motion, or (S, B, 4, 4) S starting motions of which the one
            with the lowest cost wins (None: identity).
        weight_a: (B, H, W) per-pixel weight in [0, 1] of frame a (e.g. 1 - dynamic probability).
        levels: pyramid levels (each halves the size); None: `pyramid_levels` of the image, so
            that the coarsest level is at most `COARSEST_SIDE` pixels long at any input size.
        iters: Gauss-Newton iterations per level, coarsest first (extra levels reuse the last).
        huber: Huber threshold on grey-level residuals.
        select_after: with several starts, the number of levels (coarsest first) every start
            runs before the one with the lowest cost there goes on alone; None: every start runs
            the whole pyramid and the lowest cost at full resolution wins. The fine levels cost
            the most, so picking after the coarse ones makes S starts cost little more than one.
        probe_a2b: (P, B, 4, 4) probing starts (e.g. the velocity turned by a few degrees each
            way): they run the coarsest level only, beside the starts, and the probe with the
            lowest cost there goes on as one more start. P probes cost about P coarsest levels
            plus one start's finer levels.
        stop_level: the finest level run (0: full resolution, 1: half, ...); the cost returned
            is that level's.

    Returns:
        (a2b (B, 4, 4), final cost (B,) at level ``stop_level``).
    """
    B = image_a.shape[0]
    levels = pyramid_levels(image_a.shape[-2:]) if levels is None else levels
    dtype, device = torch.float32, image_a.device
    depth = torch.nan_to_num(depth_a.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    weight = torch.ones_like(depth) if weight_a is None else weight_a.float().clamp(0, 1)
    K = intrinsics.to(dtype)
    if init_a2b is None:
        starts = torch.eye(4, dtype=dtype, device=device).repeat(1, B, 1, 1)
    else:
        starts = init_a2b.to(dtype).reshape(-1, B, 4, 4).clone()  # (S, B, 4, 4)
    S = starts.shape[0]
    probes = None if probe_a2b is None else probe_a2b.to(dtype).reshape(-1, B, 4, 4)
    P = 0 if probes is None else probes.shape[0]
    pyr_a = _pyramid(_grey(image_a.float()), depth, weight, K, levels)
    pyr_b = [_grey(image_b.float())]
    for _ in range(len(pyr_a) - 1):
        pyr_b.append(F.avg_pool2d(pyr_b[-1], 2))
    select = len(pyr_a) if select_after is None else max(1, min(int(select_after), len(pyr_a)))
    a2b = starts.reshape(S * B, 4, 4)
    if P:
        a2b = torch.cat([a2b, probes.reshape(P * B, 4, 4)])
    damping = torch.full((a2b.shape[0],), 1e-3, dtype=dtype, device=device)
    stop_level = max(0, min(int(stop_level), len(pyr_a) - 1))
    select = min(select, len(pyr_a) - stop_level)  # several starts end as one by the last level run
    for n, index in enumerate(range(len(pyr_a) - 1, stop_level - 1, -1)):
        level, grey_b = pyr_a[index], pyr_b[index]
        if a2b.shape[0] != B:  # every start still runs: the level repeated for each (start-major)
            reps = a2b.shape[0] // B
            level, grey_b = tuple(x.repeat(reps, *([1] * (x.dim() - 1))) for x in level), grey_b.repeat(reps, 1, 1, 1)
        pts_a = _pts(level)  # (B or S*B, 3, M)
        n_iter = iters[min(n, len(iters) - 1)]
        a2b, damping = _gauss_newton(level, grey_b, pts_a, a2b, damping, n_iter, huber)
        if n == 0 and P:  # the probe with the lowest coarsest-level cost stays, as one more start
            r, mask, _ = _residuals(level, grey_b, a2b, pts_a)
            best = _cost(r, mask, huber)[S * B:].reshape(P, B).argmin(dim=0)
            pick = torch.arange(B, device=device)
            kept = a2b[S * B:].reshape(P, B, 4, 4)[best, pick]
            a2b = torch.cat([a2b[:S * B], kept])
            damping = torch.cat([damping[:S * B], damping[S * B:].reshape(P, B)[best, pick]])
            S += 1
        if a2b.shape[0] != B and n + 1 == select:  # the lowest cost at this level goes on alone
            r, mask, _ = _residuals(level, grey_b, a2b, pts_a)
            best = _cost(r, mask, huber).reshape(S, B).argmin(dim=0)  # ties: the earlier start
            pick = torch.arange(B, device=device)
            a2b, damping = a2b.reshape(S, B, 4, 4)[best, pick], damping.reshape(S, B)[best, pick]
    last = pyr_a[stop_level]
    r, mask, _ = _residuals(last, pyr_b[stop_level], a2b, _pts(last))  # the loop ends on this level
    return a2b, _cost(r, mask, huber)


def photometric_residuals(image_a: Tensor, depth_a: Tensor, image_b: Tensor, intrinsics: Tensor, a2b: Tensor,
                          weight_a: Tensor | None = None, level: int = 0, huber: float = 0.05) -> tuple[Tensor, Tensor]:
    """Per-pixel Huber costs of frame a's pixels under the motion ``a2b`` (B, 4, 4) at pyramid
    ``level`` (0: full resolution), (B, M), and where they count (B, M) (depth, weight > 0 and
    inside image b): `photometric_align`'s cost is their mean over the valid pixels. Inputs as for
    `photometric_align`."""
    depth = torch.nan_to_num(depth_a.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    weight = torch.ones_like(depth) if weight_a is None else weight_a.float().clamp(0, 1)
    pyr_a = _pyramid(_grey(image_a.float()), depth, weight, intrinsics.float(), level + 1)
    grey_b = _grey(image_b.float())
    for _ in range(len(pyr_a) - 1):
        grey_b = F.avg_pool2d(grey_b, 2)
    r, mask, _ = _residuals(pyr_a[-1], grey_b, a2b.float(), _pts(pyr_a[-1]))
    a = r.abs()
    return torch.where(a <= huber, 0.5 * r * r, huber * (a - 0.5 * huber)), mask


def _normal_equations(level: tuple, image_b: Tensor, a2b: Tensor, pts_a: Tensor, huber: float):
    """Gauss-Newton system of the Huber-weighted residuals at ``a2b``: (J^T W J (N, 6, 6),
    J^T W r (N, 6), cost (N,), valid pixels (N,))."""
    r, mask, J = _residuals(level, image_b, a2b, pts_a)
    wts = torch.where(r.abs() <= huber, 1.0, huber / r.abs().clamp_min(1e-12)) * mask
    Jw = J * wts[:, None]  # (N, 6, M)
    return Jw @ J.transpose(1, 2), (Jw @ r[..., None])[..., 0], _cost(r, mask, huber), mask.sum(1)


def _gauss_newton(level: tuple, grey_b: Tensor, pts_a: Tensor, a2b: Tensor, damping: Tensor, n_iter: int,
                  huber: float) -> tuple[Tensor, Tensor]:
    """``n_iter`` damped Gauss-Newton steps at one pyramid level, each kept only if the cost falls.
    a2b (N, 4, 4), damping (N,) -> the updated pair.

    The candidate's system is formed along with its cost, so that a kept step hands it to the
    next iteration: one residual evaluation per iteration (the last one needs no Jacobian)."""
    dtype, device = a2b.dtype, a2b.device
    image_b = _with_gradients(grey_b)
    Hm, g, cost, _ = _normal_equations(level, image_b, a2b, pts_a, huber)
    eye6 = 1e-9 * torch.eye(6, dtype=dtype, device=device)
    for n in range(n_iter):
        diag = torch.diagonal(Hm, dim1=1, dim2=2).clamp_min(1e-9)
        step = -torch.linalg.solve(Hm + torch.diag_embed(damping[:, None] * diag) + eye6, g)
        update = torch.eye(4, dtype=dtype, device=device).repeat(a2b.shape[0], 1, 1)
        update[:, :3, :3] = axis_angle_to_matrix(step[:, 3:])
        update[:, :3, 3] = step[:, :3]
        candidate = update @ a2b
        if n + 1 < n_iter:
            Hm_new, g_new, cost_new, valid = _normal_equations(level, image_b, candidate, pts_a, huber)
        else:
            r, mask, _ = _residuals(level, grey_b, candidate, pts_a)
            cost_new, valid = _cost(r, mask, huber), mask.sum(1)
        better = (cost_new < cost) & (valid >= 6)
        a2b = torch.where(better[:, None, None], candidate, a2b)
        damping = torch.where(better, damping / 3, damping * 8).clamp(1e-6, 1e6)
        if n + 1 < n_iter:
            Hm = torch.where(better[:, None, None], Hm_new, Hm)
            g = torch.where(better[:, None], g_new, g)
            cost = torch.where(better, cost_new, cost)
    return a2b, damping


def warp_residual(image_b: Tensor, depth_b: Tensor, image_a: Tensor, intrinsics: Tensor, b2a: Tensor,
                  eps: float = 1e-3) -> tuple[Tensor, Tensor]:
    """How far frame b's pixels are from what frame a shows where the motion puts them.

    Every pixel p of b with depth d is lifted to ``d K^-1 p``, moved by ``b2a`` (B, 4, 4) into
    camera a, projected, and image a is sampled there (bilinear). Both images are first
    standardised per channel (zero mean, unit standard deviation over the image), so a global
    change of exposure or white balance leaves no residual. Static surfaces with the right depth
    and motion give a small residual, independently moving ones a large one.

    Args:
        image_b, image_a: (B, 3, H, W) RGB.
        depth_b: (B, H, W) z-depth of frame b (<= 0 or non-finite: no point).
        intrinsics: (B, 3, 3) of both frames.
        b2a: (B, 4, 4) points in camera b -> camera a.

    Returns:
        (residual (B, H, W): the mean over channels of the absolute difference, zero where the
        pixel has no depth or leaves image a; inside (B, H, W) bool: where it does not).
    """
    H, W = image_b.shape[-2:]

    def standard(x: Tensor) -> Tensor:
        x = x.float()
        mean = x.mean(dim=(2, 3), keepdim=True)
        return (x - mean) / (x.std(dim=(2, 3), keepdim=True) + 1e-6)  # a flat channel stays zero

    depth = torch.nan_to_num(depth_b.float(), nan=0.0, posinf=0.0, neginf=0.0)
    K = intrinsics.float()
    pts_a = transform_points(b2a.float(), depth_to_pts_cam(depth, K))  # (B, H, W, 3) in camera a
    uv = project(K, pts_a)  # (B, H, W, 2), integer = pixel centre
    grid = torch.stack([(uv[..., 0] + 0.5) * (2 / W) - 1, (uv[..., 1] + 0.5) * (2 / H) - 1], -1)
    sampled = F.grid_sample(standard(image_a), grid, mode="bilinear", padding_mode="border", align_corners=False)
    u, v = uv.unbind(-1)
    inside = (pts_a[..., 2] > eps) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1) & (depth > 0)
    residual = (sampled - standard(image_b)).abs().mean(1)
    return torch.where(inside, residual, torch.zeros_like(residual)), inside
