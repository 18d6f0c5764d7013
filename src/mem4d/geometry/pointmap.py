"""Pointmaps: per-pixel 3D points ``(..., H, W, 3)`` with xyz last.

Conventions (docs/CONVENTIONS.md): ``pts_cam`` is in the camera frame of its own image (OpenCV
axes), ``pts_world`` in the world frame (camera of frame 0); a clip's pointmaps are
``(B, T, H, W, 3)``; invalid pixels are carried with a boolean ``valid`` mask of shape
``(..., H, W)``; depth derived from a pointmap is z-depth with 0 where invalid.

Example::

    >>> import torch
    >>> pts = torch.tensor([[[[0.0, 0.0, 2.0], [0.0, 0.0, 4.0]]]])  # (1, 1, 2, 3)
    >>> normalized, scale = normalize_pointmap(pts)
    >>> scale, normalized[..., 2]
    (tensor([3.]), tensor([[[0.6667, 1.3333]]]))
"""

from __future__ import annotations

import torch
from torch import Tensor

from mem4d.geometry.se3 import _check_matrix, _check_vectors, se3_inverse, transform_points

__all__ = ["pointmap_to_depth", "normalize_pointmap"]


def _check_valid(valid: Tensor | None, pointmap: Tensor, fn: str) -> Tensor:
    """``valid`` broadcast to ``pointmap.shape[:-1]`` and combined with finiteness."""
    finite = torch.isfinite(pointmap).all(dim=-1)
    if valid is None:
        return finite
    if not isinstance(valid, Tensor) or valid.dtype != torch.bool:
        raise ValueError(f"{fn}: valid must be a bool tensor of shape pointmap.shape[:-1], got {valid!r:.80}")
    try:
        torch.broadcast_shapes(valid.shape, finite.shape)
    except RuntimeError:
        raise ValueError(
            f"{fn}: valid {tuple(valid.shape)} must match pointmap {tuple(pointmap.shape)} without its last dim"
        ) from None
    return valid & finite


def pointmap_to_depth(pointmap: Tensor, cam2world: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
    """z-depth of a pointmap, 0 where invalid.

    Args:
        pointmap: (*B, H, W, 3) ``pts_cam``, or ``pts_world`` when ``cam2world`` is given.
        cam2world: optional (*B, 4, 4) poses; the points are first moved into each camera
            (batch dims line up with the leading dims of ``pointmap``).
        valid: optional (*B, H, W) bool mask.

    Returns:
        (*B, H, W) z-depth; 0 where ``valid`` is False, the point is non-finite or it is not
        in front of the camera (z <= 0).
    """
    _check_vectors(pointmap, 3, "pointmap", "pointmap_to_depth")
    if pointmap.ndim < 3:
        raise ValueError(f"pointmap_to_depth: pointmap must be (..., H, W, 3), got {tuple(pointmap.shape)}")
    if cam2world is not None:
        _check_matrix(cam2world, 4, 4, "cam2world", "pointmap_to_depth")
        if cam2world.ndim - 2 > pointmap.ndim - 3:
            raise ValueError(
                f"pointmap_to_depth: cam2world {tuple(cam2world.shape)} has more batch dims than pointmap "
                f"{tuple(pointmap.shape)} (..., H, W, 3)"
            )
        pointmap = transform_points(se3_inverse(cam2world), pointmap)
    keep = _check_valid(valid, pointmap, "pointmap_to_depth")
    z = pointmap[..., 2]
    keep = keep & (z > 0)
    return torch.where(keep, z, torch.zeros_like(z))


def normalize_pointmap(
    pointmap: Tensor, valid: Tensor | None = None, num_batch_dims: int = 1, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Divides pointmaps by the mean distance of their valid points to the origin.

    Each sample (indexed by the first ``num_batch_dims`` dims) gets one scale shared by all
    its frames and pixels, e.g. one per clip for ``(B, T, H, W, 3)`` with the default
    ``num_batch_dims=1``. The scale is differentiable in the points.

    Args:
        pointmap: (*N, ..., 3) points (``pts_world`` or ``pts_cam``), ``len(N) == num_batch_dims``.
        valid: optional (*N, ...) bool mask; non-finite points are always excluded.
        num_batch_dims: number of leading dims that index independent samples.
        eps: lower bound on the scale. A sample without valid points gets scale 1.

    Returns:
        ``(pointmap / scale, scale)`` with ``scale`` of shape ``(*N)``. Invalid points are
        divided too (their values stay meaningless).
    """
    _check_vectors(pointmap, 3, "pointmap", "normalize_pointmap")
    if (
        isinstance(num_batch_dims, bool)
        or not isinstance(num_batch_dims, int)
        or not (0 <= num_batch_dims <= pointmap.ndim - 2)
    ):
        raise ValueError(
            f"normalize_pointmap: num_batch_dims must be an int in [0, {pointmap.ndim - 2}] for pointmap "
            f"{tuple(pointmap.shape)}, got {num_batch_dims!r}"
        )
    keep = _check_valid(valid, pointmap, "normalize_pointmap").expand(pointmap.shape[:-1])
    # Zero invalid points *before* the norm so NaN/inf never reach the sum or its gradient.
    safe = torch.where(keep.unsqueeze(-1), pointmap, torch.zeros_like(pointmap))
    dist = torch.linalg.vector_norm(safe, dim=-1)
    reduce_dims = tuple(range(num_batch_dims, pointmap.ndim - 1))
    count = keep.sum(dim=reduce_dims)
    mean = dist.sum(dim=reduce_dims) / count.clamp(min=1)
    scale = torch.where(count > 0, mean.clamp(min=eps), torch.ones_like(mean))
    view = scale.reshape(*scale.shape, *([1] * (pointmap.ndim - num_batch_dims)))
    return pointmap / view, scale
