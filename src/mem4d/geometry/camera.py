"""Pinhole cameras: projection, unprojection, depth <-> points, FoV and image resizing.

Conventions (docs/CONVENTIONS.md):

* OpenCV axes: x right, y down, z forward; a point in front of the camera has ``z > 0``.
* ``intrinsics`` are ``(..., 3, 3)`` matrices ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` in
  pixels. Integer pixel ``(u, v)`` is the *centre* of column ``u``, row ``v``; pixel ``(0, 0)``
  covers ``[-0.5, 0.5]^2`` and the image spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
* ``uv`` is ``(..., 2)`` with ``u`` (column) first, ``v`` (row) second.
* ``depth`` is z-depth (the z coordinate of the point in the camera frame, not the ray
  length); 0 or non-finite means invalid, see :func:`valid_from_depth`.
* FoV <-> intrinsics: the principal point sits at the image centre ``((W-1)/2, (H-1)/2)`` and
  the FoV spans the full image extent, ``fx = (W/2) / tan(fov_x/2)``, ``fy = (H/2) / tan(fov_y/2)``.

Batch rule (as in :mod:`mem4d.geometry.se3`): ``intrinsics (*B, 3, 3)`` applies to points
``(*B, *P, 3)`` / pixels ``(*B, *P, 2)`` whose leading dims line up with ``B``.

Example::

    >>> import math, torch
    >>> K = fov_to_intrinsics(math.pi / 2, math.pi / 2, H=4, W=6)
    >>> K
    tensor([[3.0000, 0.0000, 2.5000],
            [0.0000, 2.0000, 1.5000],
            [0.0000, 0.0000, 1.0000]])
    >>> project(K, torch.tensor([0.0, 0.0, 2.0]))  # on the optical axis: the image centre
    tensor([2.5000, 1.5000])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mem4d.geometry.se3 import _apply_affine, _check_matrix, _check_vectors, transform_points

__all__ = [
    "project",
    "unproject",
    "pixel_grid",
    "intrinsics_inverse",
    "valid_from_depth",
    "depth_to_pts_cam",
    "pts_cam_to_depth",
    "depth_to_pts_world",
    "fov_to_intrinsics",
    "intrinsics_to_fov",
    "fov_to_focal",
    "focal_to_fov",
    "scale_intrinsics",
    "resize_intrinsics",
    "crop_intrinsics",
]


def _check_intrinsics(intrinsics: Tensor, fn: str) -> None:
    _check_matrix(intrinsics, 3, 3, "intrinsics", fn)


def _check_size(H: int, W: int, fn: str) -> None:
    for name, n in (("H", H), ("W", W)):
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"{fn}: {name} must be a positive int (image size in pixels), got {n!r}")


def _as_tensor_like(x: float | Tensor, ref: Tensor) -> Tensor:
    """A float or tensor as a tensor with ``ref``'s dtype and device (tensors keep their grad)."""
    if isinstance(x, Tensor):
        return x.to(dtype=ref.dtype, device=ref.device)
    return torch.tensor(x, dtype=ref.dtype, device=ref.device)


def project(intrinsics: Tensor, pts_cam: Tensor, eps: float | None = 1e-8) -> Tensor:
    """Projects camera-frame points to pixel coordinates: ``uv = (K @ p)[:2] / z``.

    Only uv is returned; the depth of each point is ``pts_cam[..., 2]`` and uv is meaningful
    only where it is > 0 (points behind the camera project mirrored, as in OpenCV).

    Args:
        intrinsics: (*B, 3, 3) pinhole intrinsics in pixels (last row ``[0, 0, 1]``).
        pts_cam: (*B, *P, 3) points in the camera frame (OpenCV axes).
        eps: ``|z|`` below ``eps`` is replaced by ``eps`` so uv and its gradient stay finite;
            ``None`` divides by z as is.

    Returns:
        (*B, *P, 2) pixel coordinates ``(u, v)`` (integer = pixel centre).
    """
    _check_intrinsics(intrinsics, "project")
    _check_vectors(pts_cam, 3, "pts_cam", "project")
    z = pts_cam[..., 2:3]
    if eps is not None:
        z = torch.where(z.abs() < eps, torch.full_like(z, eps), z)
    xy_normalised = pts_cam[..., :2] / z
    return _apply_affine(
        intrinsics[..., :2, :2], intrinsics[..., :2, 2], xy_normalised, "intrinsics", "pts_cam", "project"
    )


def intrinsics_inverse(intrinsics: Tensor) -> Tensor:
    """Closed-form inverse of upper-triangular pinhole intrinsics (skew allowed). (..., 3, 3)."""
    _check_intrinsics(intrinsics, "intrinsics_inverse")
    fx, s, cx = intrinsics[..., 0, 0], intrinsics[..., 0, 1], intrinsics[..., 0, 2]
    fy, cy = intrinsics[..., 1, 1], intrinsics[..., 1, 2]
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    inv = torch.stack(
        [
            1 / fx, -s / (fx * fy), (s * cy - cx * fy) / (fx * fy),
            zero, 1 / fy, -cy / fy,
            zero, zero, one,
        ],
        dim=-1,
    )  # fmt: skip
    return inv.reshape(*intrinsics.shape[:-2], 3, 3)


def unproject(intrinsics: Tensor, uv: Tensor, depth: Tensor) -> Tensor:
    """Lifts pixels with z-depth to camera-frame points: ``p = depth * K^-1 @ (u, v, 1)``.

    The returned ``z`` equals ``depth`` exactly. Invalid depth (0 or non-finite) gives a
    meaningless point; carry a ``valid`` mask (:func:`valid_from_depth`).

    Args:
        intrinsics: (*B, 3, 3) pinhole intrinsics in pixels.
        uv: (*B, *P, 2) pixel coordinates (integer = pixel centre).
        depth: (*B, *P) z-depth; broadcasts with ``uv[..., 0]`` the usual (right-aligned) way,
            so ``uv`` may be one ``(H, W, 2)`` grid for a ``(B, H, W)`` depth.

    Returns:
        (*B, *P, 3) points in the camera frame (OpenCV axes).
    """
    _check_intrinsics(intrinsics, "unproject")
    _check_vectors(uv, 2, "uv", "unproject")
    if not isinstance(depth, Tensor):
        raise TypeError(f"unproject: depth must be a torch.Tensor of shape uv.shape[:-1], got {type(depth).__name__}")
    try:
        shape = torch.broadcast_shapes(uv.shape[:-1], depth.shape)
    except RuntimeError:
        raise ValueError(
            f"unproject: depth {tuple(depth.shape)} must match uv {tuple(uv.shape)} without its last dim"
        ) from None
    uv = uv.expand(*shape, 2)
    K_inv = intrinsics_inverse(intrinsics)
    xy_normalised = _apply_affine(K_inv[..., :2, :2], K_inv[..., :2, 2], uv, "intrinsics", "uv", "unproject")
    depth = depth.expand(xy_normalised.shape[:-1]).unsqueeze(-1)
    return torch.cat([xy_normalised * depth, depth], dim=-1)


def pixel_grid(H: int, W: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Pixel-centre coordinates of an H x W image: ``grid[v, u] == (u, v)``.

    Args:
        H, W: image height and width in pixels.
        device, dtype: of the result (default: torch's default float dtype, CPU).

    Returns:
        (H, W, 2) with ``[..., 0] = u`` (column) and ``[..., 1] = v`` (row).

    Example::

        >>> pixel_grid(2, 3)[1, 2]
        tensor([2., 1.])
    """
    _check_size(H, W, "pixel_grid")
    dtype = dtype or torch.get_default_dtype()
    v, u = torch.meshgrid(
        torch.arange(H, device=device, dtype=dtype), torch.arange(W, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u, v], dim=-1)


def valid_from_depth(depth: Tensor) -> Tensor:
    """The ``valid`` mask of a depth map: finite and > 0. (...) -> (...) bool."""
    if not isinstance(depth, Tensor):
        raise TypeError(f"valid_from_depth: depth must be a torch.Tensor, got {type(depth).__name__}")
    return torch.isfinite(depth) & (depth > 0)


def depth_to_pts_cam(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """Camera-frame pointmaps from z-depth maps: pixel ``(u, v)`` lifts to ``depth[v, u] * K^-1 (u, v, 1)``.

    Args:
        depth: (*B, H, W) z-depth (invalid pixels give meaningless points; keep ``valid``).
        intrinsics: (*B, 3, 3); its batch dims line up with the leading dims of ``depth``
            (e.g. ``(B, T, 3, 3)`` with ``(B, T, H, W)``, or one ``(3, 3)`` for all).

    Returns:
        (*B, H, W, 3) ``pts_cam`` whose z equals ``depth``.
    """
    _check_intrinsics(intrinsics, "depth_to_pts_cam")
    if not isinstance(depth, Tensor):
        raise TypeError(
            f"depth_to_pts_cam: depth must be a torch.Tensor of shape (..., H, W), got {type(depth).__name__}"
        )
    if depth.ndim < 2:
        raise ValueError(f"depth_to_pts_cam: depth must have shape (..., H, W), got {tuple(depth.shape)}")
    if depth.ndim - 2 < intrinsics.ndim - 2:
        raise ValueError(
            f"depth_to_pts_cam: intrinsics {tuple(intrinsics.shape)} has more batch dims than depth "
            f"{tuple(depth.shape)} (..., H, W)"
        )
    H, W = depth.shape[-2:]
    if H == 0 or W == 0:
        return depth.new_zeros(*depth.shape, 3)
    uv = pixel_grid(H, W, device=depth.device, dtype=depth.dtype)
    return unproject(intrinsics, uv.expand(*depth.shape, 2), depth)


def pts_cam_to_depth(pts_cam: Tensor) -> Tensor:
    """z-depth of camera-frame points (their z coordinate, not the ray length). (*B, H, W, 3) -> (*B, H, W)."""
    _check_vectors(pts_cam, 3, "pts_cam", "pts_cam_to_depth")
    return pts_cam[..., 2]


def depth_to_pts_world(depth: Tensor, intrinsics: Tensor, cam2world: Tensor) -> Tensor:
    """World-frame pointmaps from z-depth: ``transform_points(cam2world, depth_to_pts_cam(depth, intrinsics))``.

    Args:
        depth: (*B, H, W) z-depth.
        intrinsics: (*B, 3, 3) (batch dims line up with the leading dims of ``depth``).
        cam2world: (*B, 4, 4) camera poses (same rule).

    Returns:
        (*B, H, W, 3) ``pts_world``.
    """
    _check_matrix(cam2world, 4, 4, "cam2world", "depth_to_pts_world")
    pts_cam = depth_to_pts_cam(depth, intrinsics)
    if pts_cam.ndim - 3 < cam2world.ndim - 2:
        raise ValueError(
            f"depth_to_pts_world: cam2world {tuple(cam2world.shape)} has more batch dims than depth "
            f"{tuple(depth.shape)} (..., H, W)"
        )
    return transform_points(cam2world, pts_cam)


def fov_to_focal(fov: float | Tensor, size: float) -> float | Tensor:
    """Focal length in pixels for a FoV (radians) spanning ``size`` pixels: ``(size/2) / tan(fov/2)``."""
    if isinstance(fov, Tensor):
        return (size / 2) / torch.tan(fov / 2)
    if not 0 < fov < math.pi:
        raise ValueError(f"fov_to_focal: fov must be in (0, pi) radians, got {fov!r} (degrees? use math.radians)")
    return (size / 2) / math.tan(fov / 2)


def focal_to_fov(focal: float | Tensor, size: float) -> float | Tensor:
    """FoV in radians spanned by ``size`` pixels at focal length ``focal``: ``2 atan((size/2) / focal)``."""
    if isinstance(focal, Tensor):
        return 2 * torch.atan2(torch.full_like(focal, size / 2), focal)
    if not focal > 0:
        raise ValueError(f"focal_to_fov: focal must be > 0 pixels, got {focal!r}")
    return 2 * math.atan2(size / 2, focal)


def fov_to_intrinsics(fov_x: float | Tensor, fov_y: float | Tensor, H: int, W: int) -> Tensor:
    """Pinhole intrinsics from fields of view, principal point at the image centre.

    ``fx = (W/2) / tan(fov_x/2)``, ``fy = (H/2) / tan(fov_y/2)``, ``cx = (W-1)/2``,
    ``cy = (H-1)/2`` (the FoV spans the full image extent, pixel-centre convention).

    Args:
        fov_x, fov_y: horizontal and vertical FoV in radians, floats or (...) tensors
            (broadcast together).
        H, W: image size in pixels.

    Returns:
        (..., 3, 3) intrinsics (dtype/device of the tensor inputs, else the default dtype).
    """
    _check_size(H, W, "fov_to_intrinsics")
    for name, fov in (("fov_x", fov_x), ("fov_y", fov_y)):
        if not isinstance(fov, Tensor) and not 0 < fov < math.pi:
            raise ValueError(f"fov_to_intrinsics: {name} must be in (0, pi) radians, got {fov!r}")
    ref = next((f for f in (fov_x, fov_y) if isinstance(f, Tensor)), None)
    if ref is None or not ref.is_floating_point():
        ref = torch.empty((), dtype=torch.get_default_dtype(), device=None if ref is None else ref.device)
    fov_x, fov_y = torch.broadcast_tensors(_as_tensor_like(fov_x, ref), _as_tensor_like(fov_y, ref))
    fx = (W / 2) / torch.tan(fov_x / 2)
    fy = (H / 2) / torch.tan(fov_y / 2)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    cx, cy = torch.full_like(fx, (W - 1) / 2), torch.full_like(fx, (H - 1) / 2)
    K = torch.stack([fx, zero, cx, zero, fy, cy, zero, zero, one], dim=-1)
    return K.reshape(*fx.shape, 3, 3)


def intrinsics_to_fov(intrinsics: Tensor, H: int, W: int) -> tuple[Tensor, Tensor]:
    """Fields of view (radians) spanned by the full image: ``fov_x = 2 atan((W/2) / fx)``.

    The inverse of :func:`fov_to_intrinsics`; the principal point is not used (the FoV is
    the nominal one of a centred principal point).

    Args:
        intrinsics: (..., 3, 3) in pixels.
        H, W: image size in pixels.

    Returns:
        ``(fov_x, fov_y)``, each (...).
    """
    _check_intrinsics(intrinsics, "intrinsics_to_fov")
    _check_size(H, W, "intrinsics_to_fov")
    return focal_to_fov(intrinsics[..., 0, 0], W), focal_to_fov(intrinsics[..., 1, 1], H)


def scale_intrinsics(intrinsics: Tensor, sx: float | Tensor, sy: float | Tensor) -> Tensor:
    """Intrinsics of an image resized by factors ``sx`` (width) and ``sy`` (height).

    With pixel centres at integers, image edges sit at -0.5 and W - 0.5, so resizing maps
    ``u' + 0.5 = sx (u + 0.5)``, i.e. ``fx' = sx fx``, ``cx' = sx (cx + 0.5) - 0.5`` (same in y).
    This matches ``torch.nn.functional.interpolate(..., align_corners=False)`` and area
    resizing. For ``W -> W'`` pixels use ``sx = W' / W`` (or :func:`resize_intrinsics`).

    Args:
        intrinsics: (..., 3, 3) in pixels.
        sx, sy: floats or tensors broadcasting with the batch dims ``(...)``.

    Returns:
        (..., 3, 3) intrinsics of the resized image.
    """
    _check_intrinsics(intrinsics, "scale_intrinsics")
    sx = _as_tensor_like(sx, intrinsics).unsqueeze(-1)
    sy = _as_tensor_like(sy, intrinsics).unsqueeze(-1)
    row0, row1, row2 = intrinsics.unbind(-2)
    # K' = A @ K with A = [[sx, 0, (sx-1)/2], [0, sy, (sy-1)/2], [0, 0, 1]] (handles skew too).
    row0 = sx * row0 + 0.5 * (sx - 1) * row2
    row1 = sy * row1 + 0.5 * (sy - 1) * row2
    row0, row1, row2 = torch.broadcast_tensors(row0, row1, row2)
    return torch.stack([row0, row1, row2], dim=-2)


def resize_intrinsics(intrinsics: Tensor, old_size: tuple[int, int], new_size: tuple[int, int]) -> Tensor:
    """Intrinsics after resizing an image from ``old_size = (H, W)`` to ``new_size = (H', W')``.

    Same as ``scale_intrinsics(intrinsics, W'/W, H'/H)``. (..., 3, 3) -> (..., 3, 3).
    """
    if len(old_size) != 2 or len(new_size) != 2:
        raise ValueError(f"resize_intrinsics: sizes are (H, W) pairs, got {old_size!r} and {new_size!r}")
    _check_size(*old_size, "resize_intrinsics")
    _check_size(*new_size, "resize_intrinsics")
    return scale_intrinsics(intrinsics, new_size[1] / old_size[1], new_size[0] / old_size[0])


def crop_intrinsics(intrinsics: Tensor, left: float | Tensor, top: float | Tensor) -> Tensor:
    """Intrinsics of a crop whose first column is ``left`` and first row is ``top``.

    Pixel ``(left, top)`` of the original becomes pixel ``(0, 0)``: ``cx' = cx - left``,
    ``cy' = cy - top``. Crop before or after :func:`scale_intrinsics`, in the same order as the image.

    Args:
        intrinsics: (..., 3, 3) in pixels.
        left, top: offsets in pixels (floats or tensors broadcasting with the batch dims).

    Returns:
        (..., 3, 3) intrinsics of the cropped image.
    """
    _check_intrinsics(intrinsics, "crop_intrinsics")
    left = _as_tensor_like(left, intrinsics).unsqueeze(-1)
    top = _as_tensor_like(top, intrinsics).unsqueeze(-1)
    row0, row1, row2 = intrinsics.unbind(-2)
    row0, row1, row2 = torch.broadcast_tensors(row0 - left * row2, row1 - top * row2, row2)
    return torch.stack([row0, row1, row2], dim=-2)
