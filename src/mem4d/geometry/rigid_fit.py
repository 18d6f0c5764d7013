"""Weighted rigid fit with stable gradients (Horn's quaternion method).

Finds the rotation ``R`` and translation ``t`` minimising ``sum_i w_i |q_i - (R p_i + t)|^2``.
The rotation is the eigenvector of the largest eigenvalue of Horn's symmetric 4x4 matrix
built from the weighted cross-covariance (B. K. P. Horn, "Closed-form solution of absolute
orientation using unit quaternions", JOSA A 1987). Unlike the SVD route (`mem4d.geometry.align.umeyama`),
whose backward pass divides by differences of singular values that vanish for planar or
symmetric point sets, the eigenvector's gradient only divides by the gap between the largest
eigenvalue and the next, which is large whenever the fit is well determined; that is what a
network trained through the fit needs.

Horn's matrix is divided by the sum of the cross-covariance's absolute entries before the
eigen-solve (the eigenvectors do not change) so that its entries are of order one; ``prior``
is then added to the identity quaternion's diagonal entry, a pull towards no rotation that
decides the degenerate cases (no weight, collinear points) and is negligible otherwise.

Example::

    >>> import torch
    >>> from mem4d.geometry.rotation import axis_angle_to_matrix
    >>> p = torch.randn(50, 3, dtype=torch.float64)
    >>> R0 = axis_angle_to_matrix(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    >>> R, t = rigid_fit(p, p @ R0.T + 1.0)
    >>> torch.allclose(R, R0), torch.allclose(t, torch.ones(3, dtype=torch.float64))
    (True, True)
"""

from __future__ import annotations

import torch
from torch import Tensor

from mem4d.geometry.rotation import quat_to_matrix

__all__ = ["rigid_fit"]


class _TopEigenvector(torch.autograd.Function):
    """The eigenvector of a symmetric matrix's largest eigenvalue, (..., 4, 4) -> (..., 4).

    Its backward pass uses only the gaps between the largest eigenvalue and the others
    (first-order perturbation: dv = sum_j v_j (v_j^T dN v) / (l_max - l_j)); autograd through
    ``torch.linalg.eigh`` forms every pairwise gap, and a repeated smaller eigenvalue (a
    degenerate fit) turns its unused terms into inf * 0 = NaN.
    """

    @staticmethod
    def forward(ctx, N: Tensor) -> Tensor:  # type: ignore[override]
        vals, vecs = torch.linalg.eigh(N)
        ctx.save_for_backward(vals, vecs)
        return vecs[..., :, -1]

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        vals, vecs = ctx.saved_tensors
        gap = vals[..., -1:] - vals
        inv = torch.where(gap > 1e-12, 1.0 / gap.clamp_min(1e-12), torch.zeros_like(gap))
        coef = (vecs.transpose(-1, -2) @ grad[..., None])[..., 0] * inv  # (..., 4)
        u = vecs @ coef[..., None]  # (..., 4, 1)
        g = u @ vecs[..., None, :, -1]
        return 0.5 * (g + g.transpose(-1, -2))


def rigid_fit(p: Tensor, q: Tensor, weights: Tensor | None = None, prior: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Rigid transform mapping ``p`` onto ``q``: ``q ~= R @ p + t``.

    Args:
        p, q: ``(..., N, 3)`` corresponding points.
        weights: ``(..., N)`` non-negative weights (need not be normalised); None: uniform.
        prior: relative pull towards the identity rotation (decides degenerate cases).

    Returns:
        ``(R (..., 3, 3), t (..., 3))`` in float64 when the inputs are float64, else float32
        (the solve itself always runs in float64). With all weights zero: the identity and
        the plain mean difference of the points.
    """
    if p.shape != q.shape or p.shape[-1] != 3 or p.ndim < 2:
        raise ValueError(f"rigid_fit expects p, q of equal shape (..., N, 3); got {tuple(p.shape)} and {tuple(q.shape)}")
    out_dtype = torch.float64 if torch.float64 in (p.dtype, q.dtype) else torch.float32
    p, q = p.double(), q.double()
    w = torch.ones(p.shape[:-1], dtype=torch.float64, device=p.device) if weights is None else weights.double()
    if w.shape != p.shape[:-1]:
        raise ValueError(f"weights must have shape {tuple(p.shape[:-1])}, got {tuple(w.shape)}")
    total = w.sum(-1, keepdim=True)
    w = w / torch.where(total > 0, total, torch.ones_like(total))  # all zero stays zero: no rotation evidence
    w_mean = torch.where(total > 0, w, torch.full_like(w, 1.0 / p.shape[-2]))
    mu_p = (w_mean[..., None] * p).sum(-2)
    mu_q = (w_mean[..., None] * q).sum(-2)
    S = torch.einsum("...n,...na,...nb->...ab", w, p - mu_p[..., None, :], q - mu_q[..., None, :])  # (..., 3, 3)
    sxx, sxy, sxz = S[..., 0, 0], S[..., 0, 1], S[..., 0, 2]
    syx, syy, syz = S[..., 1, 0], S[..., 1, 1], S[..., 1, 2]
    szx, szy, szz = S[..., 2, 0], S[..., 2, 1], S[..., 2, 2]
    rows = [
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ]
    N = torch.stack([torch.stack(r, -1) for r in rows], -2)  # (..., 4, 4) symmetric
    # entries of order one (tiny or huge point sets, denormal weights make LAPACK fail to converge)
    N = torch.nan_to_num(N / S.abs().sum((-1, -2)).clamp_min(1e-30)[..., None, None], nan=0.0, posinf=0.0, neginf=0.0)
    eye_w = torch.zeros(4, 4, dtype=torch.float64, device=p.device)
    eye_w[0, 0] = 1.0
    N = N + max(prior, 1e-12) * eye_w
    quat = _TopEigenvector.apply(N)  # WXYZ
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    R = quat_to_matrix(quat)
    t = mu_q - (R @ mu_p[..., None])[..., 0]
    return R.to(out_dtype), t.to(out_dtype)
