"""Camera helpers for the scene memory: validation, projection, Plücker rays, frustum overlap.

Conventions (docs/CONVENTIONS.md): OpenCV axes (x right, y down, z forward), ``c2w`` is a 4x4
camera-to-world matrix, ``K`` is 3x3 in pixels for the image size given, pixel (u, v) integer
is the centre of column u / row v, depth is camera z. Everything here is pure NumPy; torch
tensors are accepted at the boundary through `to_numpy`.

Example::

    >>> import numpy as np
    >>> K = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    >>> round(float(frustum_overlap(np.eye(4), K, np.eye(4), K, s=3.0)), 3)
    1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "backproject_depth",
    "frustum_overlap",
    "frustum_overlap_many",
    "frustum_samples",
    "image_size_from_K",
    "in_frustum",
    "invert_c2w",
    "pixel_rays",
    "plucker",
    "project_points",
    "relative_pose",
    "to_numpy",
    "transform_points",
    "transform_points_batch",
    "validate_K",
    "validate_c2w",
]

ORTHO_TOL = 1e-4
_LAST_ROW_4 = np.array([0.0, 0.0, 0.0, 1.0])
_LAST_ROW_3 = np.array([0.0, 0.0, 1.0])


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray | None:
    """Converts a numpy array, torch tensor or nested sequence to a numpy array (None stays None)."""
    if x is None:
        return None
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def validate_c2w(c2w: Any, name: str = "c2w", batch: bool = False) -> np.ndarray:
    """Checks a camera-to-world matrix (or a (T,4,4) stack when ``batch``) and returns it as float64.

    Raises ValueError when the shape is wrong, a value is non-finite, the last row is not
    [0, 0, 0, 1], or the rotation is not orthonormal with det +1 within 1e-4.
    """
    arr = to_numpy(c2w)
    if arr is None:
        raise ValueError(f"{name} is required: pass a 4x4 camera-to-world matrix")
    arr = arr.astype(np.float64)
    if batch and arr.ndim == 2:
        arr = arr[None]
    expected = "(T, 4, 4)" if batch else "(4, 4)"
    if (batch and (arr.ndim != 3 or arr.shape[1:] != (4, 4))) or (not batch and arr.shape != (4, 4)):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    m = arr.reshape(-1, 4, 4)
    if np.abs(m[:, 3, :] - _LAST_ROW_4).max() > 1e-6:
        raise ValueError(f"{name} last row must be [0, 0, 0, 1]")
    R = m[:, :3, :3]
    ortho = np.abs(np.einsum("nij,nkj->nik", R, R) - np.eye(3)).max()
    if ortho > ORTHO_TOL:
        raise ValueError(f"{name} rotation is not orthonormal (max |R R^T - I| = {ortho:.2e} > {ORTHO_TOL})")
    det = np.linalg.det(R)
    if np.abs(det - 1.0).max() > ORTHO_TOL:
        raise ValueError(f"{name} rotation must have det +1 (a proper rotation), got {det.min():.4f}")
    return arr


def validate_K(K: Any, name: str = "K", batch: bool = False) -> np.ndarray:
    """Checks pinhole intrinsics (or a (T,3,3) stack when ``batch``) and returns them as float64.

    Raises ValueError unless the shape is right, values are finite, fx > 0, fy > 0 and the last
    row is [0, 0, 1].
    """
    arr = to_numpy(K)
    if arr is None:
        raise ValueError(f"{name} is required: pass 3x3 pinhole intrinsics in pixels")
    arr = arr.astype(np.float64)
    if batch and arr.ndim == 2:
        arr = arr[None]
    expected = "(T, 3, 3)" if batch else "(3, 3)"
    if (batch and (arr.ndim != 3 or arr.shape[1:] != (3, 3))) or (not batch and arr.shape != (3, 3)):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf")
    m = arr.reshape(-1, 3, 3)
    if (m[:, 0, 0] <= 0).any() or (m[:, 1, 1] <= 0).any():
        raise ValueError(f"{name} focal lengths must be positive, got fx={m[:, 0, 0].min()}, fy={m[:, 1, 1].min()}")
    if np.abs(m[:, 2, :] - _LAST_ROW_3).max() > 1e-6:
        raise ValueError(f"{name} last row must be [0, 0, 1]")
    if np.abs(m[:, 1, 0]).max() > 1e-6:
        raise ValueError(f"{name}[1, 0] must be 0 (upper-triangular pinhole intrinsics)")
    return arr


def invert_c2w(c2w: np.ndarray) -> np.ndarray:
    """world-from-camera (..., 4, 4) -> camera-from-world, using the rigid structure."""
    R = c2w[..., :3, :3]
    t = c2w[..., :3, 3]
    out = np.zeros_like(c2w)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def transform_points(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Applies a 4x4 (or 3x4) rigid transform to (N, 3) points.

    Written component-wise: ``pts @ R.T`` on (N, 3) arrays goes through a threaded BLAS call
    that is several times slower than three fused multiply-adds when cores are shared.
    """
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    out = np.empty((len(pts), 3), dtype=np.result_type(pts.dtype, np.float32))
    for i in range(3):
        out[:, i] = T[i, 0] * x + T[i, 1] * y + T[i, 2] * z + T[i, 3]
    return out


def transform_points_batch(T: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Applies M transforms (M, 4, 4) to the same (N, 3) points: (M, N, 3), component-wise."""
    x, y, z = pts[None, :, 0], pts[None, :, 1], pts[None, :, 2]
    out = np.empty((len(T), len(pts), 3), dtype=np.result_type(pts.dtype, T.dtype))
    for i in range(3):
        out[..., i] = T[:, i, 0, None] * x + T[:, i, 1, None] * y + T[:, i, 2, None] * z + T[:, i, 3, None]
    return out


def image_size_from_K(K: np.ndarray) -> tuple[int, int]:
    """(H, W) implied by a centred principal point, cx = (W - 1) / 2, cy = (H - 1) / 2."""
    return round(2 * K[1, 2] + 1), round(2 * K[0, 2] + 1)


_RAY_CACHE: dict[tuple[bytes, int, int], np.ndarray] = {}


def pixel_rays(K: np.ndarray, H: int, W: int) -> np.ndarray:
    """(H, W, 3) camera-frame ray directions with z = 1 through every pixel centre (read-only, cached)."""
    key = (np.asarray(K, np.float64).tobytes(), int(H), int(W))
    rays = _RAY_CACHE.get(key)
    if rays is None:
        if len(_RAY_CACHE) > 32:
            _RAY_CACHE.clear()
        rays = _pixel_rays(K, H, W)
        rays.flags.writeable = False
        _RAY_CACHE[key] = rays
    return rays


def _pixel_rays(K: np.ndarray, H: int, W: int) -> np.ndarray:
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    y = (v - cy) / fy
    x = (u - cx - skew * y) / fx
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def backproject_depth(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """(H, W) z-depth -> (H, W, 3) world points (invalid depth gives points at the camera centre)."""
    H, W = depth.shape
    pts_cam = (pixel_rays(K, H, W) * depth[..., None]).reshape(-1, 3)
    return transform_points(c2w, pts_cam).reshape(H, W, 3)


def project_points(points_world: np.ndarray, c2w: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projects (N, 3) world points: returns u (N,), v (N,) in pixels and z (N,) camera depth.

    Points behind the camera get z <= 0 and meaningless u, v; callers mask on z.
    """
    p = transform_points(invert_c2w(c2w), points_world)
    z = p[:, 2]
    zs = np.where(np.abs(z) < 1e-12, 1e-12, z)
    u = (K[0, 0] * p[:, 0] + K[0, 1] * p[:, 1]) / zs + K[0, 2]
    v = K[1, 1] * p[:, 1] / zs + K[1, 2]
    return u, v, z


def plucker(c2w: Any, K: Any, H: int, W: int, ref_c2w: Any = None) -> np.ndarray:
    """(H, W, 6) Plücker ray embedding (direction, moment = origin x direction) of every pixel.

    Directions are unit length. With ``ref_c2w`` the rays are expressed in that camera's frame
    (relative rays, as WorldMem conditions a generator on a target view); otherwise in world.
    """
    c2w = validate_c2w(c2w)
    K = validate_K(K)
    if ref_c2w is not None:
        c2w = invert_c2w(validate_c2w(ref_c2w, "ref_c2w")) @ c2w
    d = pixel_rays(K, H, W) @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    return np.concatenate([d, np.cross(o, d)], axis=-1).astype(np.float32)


def relative_pose(c2w_a: Any, c2w_b: Any) -> np.ndarray:
    """Pose of camera b in camera a's frame, ``a2b``-style naming: returns inv(c2w_a) @ c2w_b."""
    a = validate_c2w(c2w_a, "c2w_a")
    b = validate_c2w(c2w_b, "c2w_b")
    return invert_c2w(a) @ b


def frustum_samples(K: np.ndarray, size: tuple[int, int], near: float, far: float, n_side: int = 8, n_depth: int = 8) -> np.ndarray:
    """Deterministic (n_side^2 * n_depth, 3) camera-frame points filling a frustum.

    Pixels on a jittered-free n_side x n_side grid of cell centres, depths evenly spaced in
    [near, far] (cell centres), so the set is fixed and the overlap it measures is repeatable.
    """
    H, W = size
    us = (np.arange(n_side) + 0.5) / n_side * W - 0.5
    vs = (np.arange(n_side) + 0.5) / n_side * H - 0.5
    zs = near + (np.arange(n_depth) + 0.5) / n_depth * (far - near)
    vv, uu = np.meshgrid(vs, us, indexing="ij")
    y = (vv.ravel() - K[1, 2]) / K[1, 1]
    x = (uu.ravel() - K[0, 2] - K[0, 1] * y) / K[0, 0]
    rays = np.stack([x, y, np.ones_like(x)], axis=-1)
    return (rays[None, :, :] * zs[:, None, None]).reshape(-1, 3)


def in_frustum(points_world: np.ndarray, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int], near: float = 1e-6) -> np.ndarray:
    """(N,) bool: the point projects inside the image (pixel-edge bounds) in front of the camera.

    ``c2w`` (M, 4, 4) and ``K`` (M, 3, 3) give an (M, N) result; ``size`` is (H, W) or (M, 2).
    """
    batched = c2w.ndim == 3
    c2ws = c2w if batched else c2w[None]
    Ks = K if K.ndim == 3 else np.broadcast_to(K, (len(c2ws), 3, 3))
    sz = np.broadcast_to(np.asarray(size, dtype=np.float64).reshape(-1, 2), (len(c2ws), 2))
    H, W = sz[:, 0:1], sz[:, 1:2]
    w2c = invert_c2w(c2ws)
    p = transform_points_batch(w2c, points_world)
    z = p[..., 2]
    zs = np.maximum(z, 1e-12)
    u = (Ks[:, None, 0, 0] * p[..., 0] + Ks[:, None, 0, 1] * p[..., 1]) / zs + Ks[:, None, 0, 2]
    v = Ks[:, None, 1, 1] * p[..., 1] / zs + Ks[:, None, 1, 2]
    inside = (z > near) & (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5)
    return inside if batched else inside[0]


def frustum_overlap(
    c2w_a: Any,
    K_a: Any,
    c2w_b: Any,
    K_b: Any,
    s: float,
    size_a: tuple[int, int] | None = None,
    size_b: tuple[int, int] | None = None,
    near: float = 0.05,
    far: float = 3.0,
) -> np.ndarray | float:
    """Share of camera a's frustum (between ``near*s`` and ``far*s``) that camera b also sees.

    Monte-Carlo style with a fixed sample set (`frustum_samples`), so it is deterministic.
    Directional: overlap(a, b) != overlap(b, a) in general. ``c2w_b`` may be a (M, 4, 4) stack
    (with ``K_b`` (3, 3) or (M, 3, 3)); the result is then (M,). Image sizes default to the
    ones implied by a centred principal point. Occlusion is ignored (see `retrieval` for the
    visibility-aware version).
    """
    a = validate_c2w(c2w_a, "c2w_a")
    Ka = validate_K(K_a, "K_a")
    b = validate_c2w(c2w_b, "c2w_b", batch=True)
    Kb = validate_K(K_b, "K_b", batch=True)
    if Kb.shape[0] == 1 and b.shape[0] > 1:
        Kb = np.broadcast_to(Kb, (b.shape[0], 3, 3))
    if s <= 0 or not np.isfinite(s):
        raise ValueError(f"scene scale s must be positive, got {s}")
    size_a = size_a or image_size_from_K(Ka)
    size_b = size_b or image_size_from_K(Kb[0])
    out = frustum_overlap_many(a, Ka, size_a, b, Kb, size_b, near * s, far * s)
    single = np.asarray(to_numpy(c2w_b)).ndim == 2
    return float(out[0]) if single else out


def frustum_overlap_many(c2w_a: np.ndarray, K_a: np.ndarray, size_a: tuple[int, int], c2w_b: np.ndarray,
                         K_b: np.ndarray, size_b: tuple[int, int], near: float, far: float) -> np.ndarray:
    """Unvalidated core of `frustum_overlap`: (M,) share of a's frustum samples inside each of M frusta."""
    pts_world = transform_points(c2w_a, frustum_samples(K_a, size_a, near, far))
    return in_frustum(pts_world, c2w_b, K_b, size_b).mean(axis=1)
