"""Rotations: quaternions (scalar-first WXYZ), axis-angle vectors and 3x3 matrices.

Conventions (docs/CONVENTIONS.md): quaternions are ``(w, x, y, z)`` with the scalar first and
are returned canonical, ``w >= 0`` (for ``w == 0`` the first non-zero of x, y, z is positive).
Files that store XYZW (TUM) convert with :func:`quat_xyzw_to_wxyz` in their reader and
nowhere else. Rotation matrices act on column vectors, ``p' = R @ p``. Axis-angle vectors
are ``angle * unit_axis`` (radians, right-handed).

Every function takes leading batch dims, works in float32/float64 on any device, and is
differentiable; the small-angle cases use Taylor series so gradients stay finite and
accurate at the identity.

Example::

    >>> import math, torch
    >>> R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))  # 90 deg about z
    >>> (R @ torch.tensor([1.0, 0.0, 0.0])).round(decimals=6) + 0.0
    tensor([0., 1., 0.])
    >>> matrix_to_quat(R).round(decimals=4)
    tensor([0.7071, 0.0000, 0.0000, 0.7071])
"""

from __future__ import annotations

import torch
from torch import Tensor

from mem4d.geometry.se3 import _check_matrix, _check_vectors, se3_from_rt

__all__ = [
    "quat_to_matrix",
    "matrix_to_quat",
    "quat_canonical",
    "quat_multiply",
    "quat_conjugate",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_quat",
    "quat_to_axis_angle",
    "rotation_angle",
    "quat_xyzw_to_wxyz",
    "quat_wxyz_to_xyzw",
    "se3_orthonormalize",
]

# Below this squared argument the series are used: their truncation error is < 1e-17 there,
# and the closed forms' gradients (which cancel like eps / x^2) are accurate above it.
_SERIES_X2 = 1e-2


def _sinc_from_sq(x2: Tensor) -> Tensor:
    """sin(x) / x from x^2, smooth (and with exact gradients) down to x = 0."""
    small = x2 < _SERIES_X2
    x = torch.sqrt(torch.where(small, torch.ones_like(x2), x2))
    # Both branches stay finite everywhere, so torch.where passes no NaN into the gradient.
    x2 = torch.where(small, x2, torch.zeros_like(x2))
    series = 1 - x2 / 6 * (1 - x2 / 20 * (1 - x2 / 42 * (1 - x2 / 72)))
    return torch.where(small, series, torch.sin(x) / x)


def _cos_from_sq(x2: Tensor) -> Tensor:
    """cos(x) from x^2, smooth down to x = 0."""
    small = x2 < _SERIES_X2
    x = torch.sqrt(torch.where(small, torch.ones_like(x2), x2))
    x2 = torch.where(small, x2, torch.zeros_like(x2))
    series = 1 - x2 / 2 * (1 - x2 / 12 * (1 - x2 / 30 * (1 - x2 / 56)))
    return torch.where(small, series, torch.cos(x))


def _atan_ratio(n2: Tensor, w: Tensor) -> Tensor:
    """atan2(n, w) / n from n^2 and w > 0 (w may be 0 where n is not small), smooth at n = 0."""
    w_safe = torch.where(w > 0, w, torch.ones_like(w))
    r2 = n2 / (w_safe * w_safe)
    # float64 needs a tighter threshold: the arctan series converges slowly.
    thresh = 1e-3 if n2.dtype == torch.float64 else 1e-2
    small = (r2 < thresh) & (w > 0)
    n = torch.sqrt(torch.where(small, torch.ones_like(n2), n2))
    r2 = torch.where(small, r2, torch.zeros_like(r2))
    series = (1 - r2 * (1 / 3 - r2 * (1 / 5 - r2 * (1 / 7 - r2 / 9)))) / w_safe
    return torch.where(small, series, torch.atan2(n, w) / n)


def quat_canonical(q: Tensor) -> Tensor:
    """The representative of ``q`` and ``-q`` with ``w >= 0``.

    Ties (``w == 0``, a half-turn) are broken by making the first non-zero of x, y, z
    positive, so the canonical form is unique.

    Args:
        q: (..., 4) quaternions, WXYZ.

    Returns:
        (..., 4) the same rotations with ``w >= 0``.
    """
    _check_vectors(q, 4, "q", "quat_canonical")
    sign = torch.zeros_like(q[..., 0])
    for k in (3, 2, 1, 0):  # the first non-zero component (in w, x, y, z order) wins
        sign = torch.where(q[..., k] != 0, torch.sign(q[..., k]), sign)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return q * sign.unsqueeze(-1)


def quat_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices from quaternions (WXYZ); ``q`` need not be unit (it is normalised).

    Args:
        q: (..., 4) non-zero quaternions ``(w, x, y, z)``.

    Returns:
        (..., 3, 3) rotation matrices, ``p' = R @ p``.

    Example::

        >>> quat_to_matrix(torch.tensor([2.0, 0.0, 0.0, 0.0]))
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    _check_vectors(q, 4, "q", "quat_to_matrix")
    w, x, y, z = q.unbind(-1)
    # Dividing by |q|^2 once normalises q (each entry is quadratic in q).
    s = 2.0 / (q * q).sum(-1)
    R = torch.stack(
        [
            1 - s * (y * y + z * z), s * (x * y - w * z), s * (x * z + w * y),
            s * (x * y + w * z), 1 - s * (x * x + z * z), s * (y * z - w * x),
            s * (x * z - w * y), s * (y * z + w * x), 1 - s * (x * x + y * y),
        ],
        dim=-1,
    )  # fmt: skip
    return R.reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(R: Tensor) -> Tensor:
    """Canonical unit quaternions (WXYZ, ``w >= 0``) of rotation matrices.

    Shepperd's method: of the four expressions for ``4 w^2, 4 x^2, 4 y^2, 4 z^2`` the largest
    (always >= 1) is used as the divisor, so the result is accurate for every rotation,
    half-turns included. Differentiable (gradients flow through the selected branch).

    Args:
        R: (..., 3, 3) rotation matrices.

    Returns:
        (..., 4) unit quaternions ``(w, x, y, z)`` with ``w >= 0``.
    """
    _check_matrix(R, 3, 3, "R", "matrix_to_quat")
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = R.reshape(*R.shape[:-2], 9).unbind(-1)
    four_sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )  # (..., 4): 4w^2, 4x^2, 4y^2, 4z^2
    # Row i holds 4 * q_i * (w, x, y, z), computed from the diagonal and off-diagonal sums.
    rows = torch.stack(
        [
            torch.stack([four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, four_sq[..., 1], m01 + m10, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m01 + m10, four_sq[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, four_sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )  # (..., 4, 4)
    # 4 |q_i| = 2 sqrt(4 q_i^2); the clamp only keeps unselected branches finite.
    candidates = rows / (2 * torch.sqrt(four_sq.clamp(min=0.1))).unsqueeze(-1)
    best = four_sq.argmax(dim=-1, keepdim=True)  # (..., 1)
    q = torch.gather(candidates, -2, best.unsqueeze(-1).expand(*best.shape[:-1], 1, 4)).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return quat_canonical(q)


def quat_multiply(q1: Tensor, q2: Tensor) -> Tensor:
    """Hamilton product ``q1 * q2`` (WXYZ): the rotation ``q2`` followed by ``q1``.

    ``quat_to_matrix(quat_multiply(q1, q2)) == quat_to_matrix(q1) @ quat_to_matrix(q2)``.

    Args:
        q1, q2: (..., 4) quaternions; batch dims broadcast.

    Returns:
        (..., 4) product (not canonicalised).
    """
    _check_vectors(q1, 4, "q1", "quat_multiply")
    _check_vectors(q2, 4, "q2", "quat_multiply")
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def quat_conjugate(q: Tensor) -> Tensor:
    """``(w, -x, -y, -z)``: the inverse rotation of a unit quaternion. (..., 4) -> (..., 4)."""
    _check_vectors(q, 4, "q", "quat_conjugate")
    return q * torch.tensor([1, -1, -1, -1], dtype=q.dtype, device=q.device)


def _hat(v: Tensor) -> Tensor:
    """Skew-symmetric matrices ``[v]_x`` with ``[v]_x @ p == cross(v, p)``. (..., 3) -> (..., 3, 3)."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(v: Tensor) -> Tensor:
    """Rotation matrices from axis-angle vectors (Rodrigues' formula).

    ``R = I + sinc(a) [v]_x + (1 - cos a) / a^2 [v]_x^2`` with ``a = |v|``; smooth at ``v = 0``.

    Args:
        v: (..., 3) axis-angle vectors, ``angle * unit_axis`` in radians.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    _check_vectors(v, 3, "v", "axis_angle_to_matrix")
    a2 = (v * v).sum(-1)
    sinc = _sinc_from_sq(a2)[..., None, None]
    # (1 - cos a) / a^2 == sinc(a / 2)^2 / 2 without the cancellation of 1 - cos a.
    versinc = 0.5 * _sinc_from_sq(a2 / 4).square()[..., None, None]
    K = _hat(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return eye + sinc * K + versinc * (K @ K)


def axis_angle_to_quat(v: Tensor) -> Tensor:
    """Canonical unit quaternions (WXYZ, ``w >= 0``) from axis-angle vectors. (..., 3) -> (..., 4)."""
    _check_vectors(v, 3, "v", "axis_angle_to_quat")
    half2 = (v * v).sum(-1) / 4
    w = _cos_from_sq(half2)
    xyz = v * (0.5 * _sinc_from_sq(half2)).unsqueeze(-1)  # sin(a/2) / a == sinc(a/2) / 2
    return quat_canonical(torch.cat([w.unsqueeze(-1), xyz], dim=-1))


def quat_to_axis_angle(q: Tensor) -> Tensor:
    """Axis-angle vectors (angle in [0, pi]) from quaternions (WXYZ, normalised here).

    Args:
        q: (..., 4) non-zero quaternions.

    Returns:
        (..., 3) ``angle * unit_axis``; exactly zero for the identity, smooth around it.
    """
    _check_vectors(q, 4, "q", "quat_to_axis_angle")
    q = quat_canonical(q / torch.linalg.vector_norm(q, dim=-1, keepdim=True))
    w, xyz = q[..., 0], q[..., 1:]
    n2 = (xyz * xyz).sum(-1)
    # angle = 2 atan2(|xyz|, w), axis = xyz / |xyz|.
    return xyz * (2 * _atan_ratio(n2, w)).unsqueeze(-1)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Axis-angle vectors (angle in [0, pi]) of rotation matrices, via Shepperd's quaternion.

    Accurate near the identity and near half-turns (where the axis sign is arbitrary:
    ``pi * axis`` and ``-pi * axis`` are the same rotation).

    Args:
        R: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) ``angle * unit_axis`` in radians.
    """
    _check_matrix(R, 3, 3, "R", "matrix_to_axis_angle")
    return quat_to_axis_angle(matrix_to_quat(R))


def rotation_angle(R: Tensor) -> Tensor:
    """Geodesic angle of rotation matrices in radians, in [0, pi].

    Computed as ``atan2(|vee(R - R^T)| / 2, (trace(R) - 1) / 2)``, which keeps full precision
    near 0 and near pi where ``acos((trace - 1) / 2)`` loses it (and has infinite gradients).
    The angle between two rotations is ``rotation_angle(R_a.transpose(-1, -2) @ R_b)``.

    Args:
        R: (..., 3, 3) rotation matrices.

    Returns:
        (...) angles in radians. The gradient is 0 at exactly the identity.
    """
    _check_matrix(R, 3, 3, "R", "rotation_angle")
    vee = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s2 = (vee * vee).sum(-1)
    nonzero = s2 > 0
    # sqrt has an infinite gradient at 0: take it of a safe value and mask the result.
    sin2 = torch.where(nonzero, torch.sqrt(torch.where(nonzero, s2, torch.ones_like(s2))), torch.zeros_like(s2))
    cos2 = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1  # both scaled by 2; atan2 does not mind
    return torch.atan2(sin2, cos2)


def quat_xyzw_to_wxyz(q_xyzw: Tensor) -> Tensor:
    """Reorders scalar-last (XYZW, e.g. TUM files) quaternions to this library's WXYZ.

    A pure reorder (no normalisation or sign change); call :func:`quat_canonical` for
    ``w >= 0``. Use it in dataset readers only. (..., 4) -> (..., 4).
    """
    _check_vectors(q_xyzw, 4, "q_xyzw", "quat_xyzw_to_wxyz")
    return torch.cat([q_xyzw[..., 3:], q_xyzw[..., :3]], dim=-1)


def quat_wxyz_to_xyzw(q: Tensor) -> Tensor:
    """Reorders WXYZ quaternions to scalar-last XYZW (for writing TUM files). (..., 4) -> (..., 4)."""
    _check_vectors(q, 4, "q", "quat_wxyz_to_xyzw")
    return torch.cat([q[..., 1:], q[..., :1]], dim=-1)


def se3_orthonormalize(a2b: Tensor) -> Tensor:
    """The nearest proper rigid transform: the rotation block re-projected onto SO(3).

    A pose chained over a stream (``cam2world_t = cam2world_{t-1} @ motion_t``) in float32 drifts
    off SO(3) a little at every step (|R R^T - I| reached 1e-4 within 40 frames of the procrustes
    pose with photometric refinement), and consumers that check orthonormality (the scene
    memory, exports) refuse it. The rotation goes through its unit quaternion and back
    (differentiable), the translation is kept and the last row is reset to ``(0, 0, 0, 1)``.

    Args:
        a2b: (..., 4, 4) transforms whose rotation block is close to a rotation.

    Returns:
        (..., 4, 4) transforms with an exactly orthonormal rotation block (to float precision).
    """
    _check_matrix(a2b, 4, 4, "a2b", "se3_orthonormalize")
    return se3_from_rt(quat_to_matrix(matrix_to_quat(a2b[..., :3, :3])), a2b[..., :3, 3])
