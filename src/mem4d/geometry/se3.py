"""Rigid transforms (SE(3)) as 4x4 matrices with leading batch dimensions.

Naming (docs/CONVENTIONS.md): a tensor called ``a2b`` maps points expressed in frame ``a``
into frame ``b`` (``p_b = a2b @ p_a``), so composition reads right to left:
``a2c = se3_compose(b2c, a2b) = b2c @ a2b``. Camera poses are ``cam2world``; the world frame
of a stream is the camera of its first frame (``cam2world[0] == I``).

Batch rule for a matrix applied to points (``transform_points`` here, ``project`` and
``unproject`` in :mod:`mem4d.geometry.camera`): a matrix of shape ``(*B, r, c)`` applies to
points of shape ``(*B, *P, 3)``. The batch dims ``B`` of the matrix line up with the
*leading* dims of the points (they must be equal or 1, as in broadcasting) and every
remaining dim ``P`` indexes points that share one matrix. So a ``(4, 4)`` transform moves
``(N, 3)`` points or a whole ``(B, T, H, W, 3)`` pointmap, a ``(B, 4, 4)`` transform moves
``(B, N, 3)`` points or ``(B, H, W, 3)`` pointmaps, and ``(B, T, 4, 4)`` moves
``(B, T, H, W, 3)``. To share one matrix across a leading dim, give it a size-1 dim there
(e.g. ``intrinsics[:, None]``).

Example::

    >>> import torch
    >>> R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    >>> cam2world = se3_from_rt(R, torch.tensor([1.0, 0.0, 0.0]))
    >>> transform_points(cam2world, torch.tensor([[1.0, 0.0, 0.0]]))
    tensor([[1., 1., 0.]])
    >>> transform_points(se3_inverse(cam2world), torch.tensor([[1.0, 1.0, 0.0]]))
    tensor([[1., 0., 0.]])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "se3_inverse",
    "se3_compose",
    "se3_from_rt",
    "se3_to_rt",
    "transform_points",
    "cam_a2cam_b",
    "reanchor_to_first_frame",
]


def _check_matrix(x: Tensor, rows: int, cols: int, name: str, fn: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor of shape (..., {rows}, {cols}), got {type(x).__name__}")
    if x.ndim < 2 or x.shape[-2:] != (rows, cols):
        raise ValueError(f"{fn}: {name} must have shape (..., {rows}, {cols}), got {tuple(x.shape)}")


def _check_vectors(x: Tensor, dim: int, name: str, fn: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor of shape (..., {dim}), got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != dim:
        raise ValueError(f"{fn}: {name} must have shape (..., {dim}) with the coordinates last, got {tuple(x.shape)}")


def _batch_and_point_shape(
    matrix: Tensor, pts: Tensor, matrix_name: str, pts_name: str, fn: str
) -> tuple[torch.Size, torch.Size]:
    """Splits ``pts (*B, *P, k)`` against ``matrix (*B, r, c)``; returns (broadcast B, P)."""
    nb = matrix.ndim - 2
    batch = tuple(matrix.shape[:nb])
    if pts.ndim - 1 < nb:
        raise ValueError(
            f"{fn}: {matrix_name} has batch dims {batch}, so {pts_name} needs at least {nb} leading dims "
            f"before the coordinate dim, got {pts_name} of shape {tuple(pts.shape)}. Give {matrix_name} "
            f"fewer batch dims or {pts_name} more (see the batch rule in mem4d.geometry.se3)."
        )
    try:
        out_batch = torch.broadcast_shapes(matrix.shape[:nb], pts.shape[:nb])
    except RuntimeError:
        raise ValueError(
            f"{fn}: the batch dims of {matrix_name} {batch} must match the leading dims of {pts_name} "
            f"{tuple(pts.shape[:nb])} (equal or 1); {pts_name} has shape {tuple(pts.shape)}. The batch dims "
            f"of the matrix line up with the *leading* dims of the points; use size-1 dims (e.g. "
            f"{matrix_name}[:, None]) to share a matrix across a dim."
        ) from None
    return out_batch, pts.shape[nb:-1]


def _apply_affine(A: Tensor, b: Tensor | None, pts: Tensor, matrix_name: str, pts_name: str, fn: str) -> Tensor:
    """``A @ p + b`` for ``A (*B, m, n)``, ``b (*B, m)``, ``pts (*B, *P, n)`` -> ``(*B, *P, m)``."""
    if A.dtype != pts.dtype:
        raise ValueError(
            f"{fn}: {matrix_name} is {A.dtype} but {pts_name} is {pts.dtype}; convert one, e.g. "
            f"{matrix_name}.to({pts_name}.dtype)"
        )
    batch, point_shape = _batch_and_point_shape(A, pts, matrix_name, pts_name, fn)
    nb = A.ndim - 2
    num_points = 1
    for s in point_shape:
        num_points *= s
    # Flatten the point dims so one batched matmul does the work: (*B, N, n) @ (*B, n, m).
    flat = pts.reshape(*pts.shape[:nb], num_points, pts.shape[-1])
    out = flat @ A.transpose(-1, -2)
    if b is not None:
        out = out + b.unsqueeze(-2)
    return out.reshape(*batch, *point_shape, A.shape[-2])


def se3_from_rt(R: Tensor, t: Tensor) -> Tensor:
    """Builds rigid transforms from rotations and translations.

    Args:
        R: (..., 3, 3) rotation matrices.
        t: (..., 3) translations; batch dims broadcast with those of ``R``.

    Returns:
        (..., 4, 4) matrices ``[[R, t], [0, 0, 0, 1]]``.
    """
    _check_matrix(R, 3, 3, "R", "se3_from_rt")
    _check_vectors(t, 3, "t", "se3_from_rt")
    try:
        batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"se3_from_rt: batch dims of R {tuple(R.shape[:-2])} and t {tuple(t.shape[:-1])} do not broadcast"
        ) from None
    top = torch.cat([R.expand(*batch, 3, 3), t.expand(*batch, 3).unsqueeze(-1)], dim=-1)
    bottom = torch.zeros(4, dtype=top.dtype, device=top.device)
    bottom[3] = 1
    return torch.cat([top, bottom.expand(*batch, 1, 4)], dim=-2)


def se3_to_rt(a2b: Tensor) -> tuple[Tensor, Tensor]:
    """Splits ``(..., 4, 4)`` transforms into rotations ``(..., 3, 3)`` and translations ``(..., 3)``."""
    _check_matrix(a2b, 4, 4, "a2b", "se3_to_rt")
    return a2b[..., :3, :3], a2b[..., :3, 3]


def se3_inverse(a2b: Tensor) -> Tensor:
    """Inverts rigid transforms in closed form: ``[R, t]^-1 = [R^T, -R^T t]``.

    Exact and cheaper than a general matrix inverse, and it keeps the inverse rigid, but it
    assumes ``R`` is a rotation (no scale or shear) and the last row is ``[0, 0, 0, 1]``.

    Args:
        a2b: (..., 4, 4) rigid transforms mapping frame a into frame b.

    Returns:
        (..., 4, 4) ``b2a``.

    Example::

        >>> import torch
        >>> a2b = se3_from_rt(torch.eye(3), torch.tensor([1.0, 2.0, 3.0]))
        >>> se3_inverse(a2b)[:3, 3]
        tensor([-1., -2., -3.])
    """
    _check_matrix(a2b, 4, 4, "a2b", "se3_inverse")
    R_inv = a2b[..., :3, :3].transpose(-1, -2)
    t_inv = -(R_inv @ a2b[..., :3, 3:4]).squeeze(-1)
    return se3_from_rt(R_inv, t_inv)


def se3_compose(b2c: Tensor, a2b: Tensor) -> Tensor:
    """Composes transforms right to left: ``a2c = b2c @ a2b``.

    Args:
        b2c: (..., 4, 4) transforms from frame b to frame c.
        a2b: (..., 4, 4) transforms from frame a to frame b; batch dims broadcast with ``b2c``.

    Returns:
        (..., 4, 4) ``a2c``.
    """
    _check_matrix(b2c, 4, 4, "b2c", "se3_compose")
    _check_matrix(a2b, 4, 4, "a2b", "se3_compose")
    try:
        torch.broadcast_shapes(b2c.shape[:-2], a2b.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"se3_compose: batch dims of b2c {tuple(b2c.shape[:-2])} and a2b {tuple(a2b.shape[:-2])} do not broadcast"
        ) from None
    return b2c @ a2b


def transform_points(a2b: Tensor, pts: Tensor) -> Tensor:
    """Applies rigid (or any affine 3x4-part) transforms to 3D points: ``p_b = R p_a + t``.

    Batch rule: ``a2b`` is ``(*B, 4, 4)`` and ``pts`` is ``(*B, *P, 3)``: the batch dims of the
    transform line up with the *leading* dims of ``pts`` (equal or 1) and every further dim
    ``P`` holds points that share one transform. Examples: ``(4, 4)`` with ``(N, 3)``;
    ``(B, 4, 4)`` with ``(B, H, W, 3)``; ``(B, T, 4, 4)`` with ``(B, T, H, W, 3)``;
    ``(B, 4, 4)`` with ``(B, 3)`` (one point per transform).

    Args:
        a2b: (*B, 4, 4) transforms from frame a to frame b (last row ignored).
        pts: (*B, *P, 3) points in frame a.

    Returns:
        (*B, *P, 3) the points in frame b (``B`` broadcast between the two inputs).
    """
    _check_matrix(a2b, 4, 4, "a2b", "transform_points")
    _check_vectors(pts, 3, "pts", "transform_points")
    return _apply_affine(a2b[..., :3, :3], a2b[..., :3, 3], pts, "a2b", "pts", "transform_points")


def cam_a2cam_b(cam2world_a: Tensor, cam2world_b: Tensor) -> Tensor:
    """Relative pose mapping points in camera a into camera b: ``inverse(cam2world_b) @ cam2world_a``.

    The name reads in argument order: ``camA2camB = cam_a2cam_b(cam2world_a, cam2world_b)``.
    For consecutive frames of a clip, ``cam_a2cam_b(cam2world[:, 1:], cam2world[:, :-1])`` maps
    camera t+1 into camera t.

    Args:
        cam2world_a: (..., 4, 4) pose of camera a.
        cam2world_b: (..., 4, 4) pose of camera b; batch dims broadcast.

    Returns:
        (..., 4, 4) transform from camera a to camera b.
    """
    _check_matrix(cam2world_a, 4, 4, "cam2world_a", "cam_a2cam_b")
    _check_matrix(cam2world_b, 4, 4, "cam2world_b", "cam_a2cam_b")
    return se3_compose(se3_inverse(cam2world_b), cam2world_a)


def reanchor_to_first_frame(cam2world: Tensor) -> Tensor:
    """Re-expresses poses in the frame of the first camera, so ``cam2world[..., 0, :, :] == I``.

    Relative poses are unchanged. Points in the old world frame move to the new one with
    ``transform_points(se3_inverse(cam2world[..., 0, :, :]), pts_world)`` (old cam2world).

    Args:
        cam2world: (..., T, 4, 4) poses of a stream, T >= 1.

    Returns:
        (..., T, 4, 4) poses whose frame 0 is exactly the identity.
    """
    _check_matrix(cam2world, 4, 4, "cam2world", "reanchor_to_first_frame")
    if cam2world.ndim < 3 or cam2world.shape[-3] == 0:
        raise ValueError(
            f"reanchor_to_first_frame: cam2world must be (..., T, 4, 4) with T >= 1, got {tuple(cam2world.shape)}"
        )
    world2cam0 = se3_inverse(cam2world[..., :1, :, :])
    rest = se3_compose(world2cam0, cam2world[..., 1:, :, :])
    # Frame 0 is set to an exact identity rather than the (rounded) product of the inverse.
    eye = torch.eye(4, dtype=cam2world.dtype, device=cam2world.device).expand(*rest.shape[:-3], 1, 4, 4)
    return torch.cat([eye, rest], dim=-3)
