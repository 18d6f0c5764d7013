"""`rigid_fit` (Horn's quaternion method): the weighted least-squares rigid transform, with
gradients that stay finite where the SVD route's do not."""

from __future__ import annotations

import pytest
import torch

from mem4d.geometry.align import umeyama
from mem4d.geometry.rigid_fit import rigid_fit
from mem4d.geometry.rotation import axis_angle_to_matrix


def _problem(seed: int, batch: tuple[int, ...] = (), n: int = 60, noise: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(*batch, n, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(torch.randn(*batch, 3, generator=g, dtype=torch.float64))
    t = torch.randn(*batch, 3, generator=g, dtype=torch.float64)
    q = p @ R.transpose(-1, -2) + t[..., None, :] + noise * torch.randn(*batch, n, 3, generator=g, dtype=torch.float64)
    return p, q, R, t


def test_recovers_an_exact_transform_with_batch_dims():
    p, q, R, t = _problem(0, batch=(2, 3))
    R_fit, t_fit = rigid_fit(p, q)
    torch.testing.assert_close(R_fit, R, atol=1e-6, rtol=0)
    torch.testing.assert_close(t_fit, t, atol=1e-6, rtol=0)


def test_equals_weighted_umeyama_on_noisy_points():
    p, q, _, _ = _problem(1, batch=(4,), noise=0.05)
    w = torch.rand(4, p.shape[-2], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    R_fit, t_fit = rigid_fit(p, q, w, prior=0.0)
    _, R_ref, t_ref = umeyama(p, q, with_scale=False, weights=w)
    torch.testing.assert_close(R_fit, R_ref, atol=1e-9, rtol=0)
    torch.testing.assert_close(t_fit, t_ref, atol=1e-9, rtol=0)


def test_weights_select_the_points_that_count():
    p, q, R, t = _problem(3)
    q_bad = q.clone()
    q_bad[:20] += 5.0  # outliers, weighted out
    w = torch.ones(p.shape[0], dtype=torch.float64)
    w[:20] = 0
    R_fit, t_fit = rigid_fit(p, q_bad, w)
    torch.testing.assert_close(R_fit, R, atol=1e-5, rtol=0)  # the default prior biases by ~1e-6
    assert not torch.allclose(rigid_fit(p, q_bad)[0], R, atol=1e-2)


def test_zero_weights_give_the_identity_rotation():
    p, q, _, _ = _problem(4)
    R_fit, t_fit = rigid_fit(p, q, torch.zeros(p.shape[0], dtype=torch.float64))
    torch.testing.assert_close(R_fit, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    assert torch.isfinite(t_fit).all()


def test_gradients_are_finite_for_a_planar_scene():
    """A wall seen by two cameras: the cross-covariance has a zero singular value, where the SVD's
    backward pass divides by (s_i^2 - s_j^2); the fit's gradient must stay finite."""
    g = torch.Generator().manual_seed(5)
    p = torch.cat([torch.rand(80, 2, generator=g, dtype=torch.float64), torch.full((80, 1), 2.0, dtype=torch.float64)], 1)
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.05, 0.0], dtype=torch.float64))
    q = (p @ R.T + torch.tensor([0.1, 0.0, 0.0], dtype=torch.float64)).requires_grad_(True)
    w = torch.rand(80, generator=g, dtype=torch.float64).requires_grad_(True)
    R_fit, t_fit = rigid_fit(p, q, w)
    (R_fit.sum() + t_fit.sum()).backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(w.grad).all()
    assert q.grad.abs().sum() > 0
    torch.testing.assert_close(R_fit, R, atol=1e-6, rtol=0)


def test_float32_inputs_give_float32_and_shapes_are_checked():
    p, q, _, _ = _problem(6)
    R_fit, t_fit = rigid_fit(p.float(), q.float())
    assert R_fit.dtype == t_fit.dtype == torch.float32
    with pytest.raises(ValueError, match="equal shape"):
        rigid_fit(p, q[:-1])
    with pytest.raises(ValueError, match="weights"):
        rigid_fit(p, q, torch.ones(3))


def test_degenerate_inputs_give_a_finite_answer():
    p, q, _, _ = _problem(7)
    for w in (torch.full((p.shape[0],), 1e-310, dtype=torch.float64),  # denormal weights
              torch.ones(p.shape[0], dtype=torch.float64)):
        for pts in ((p, q), (p * 1e-200, q * 1e-200), (torch.zeros_like(p), torch.zeros_like(q)), (p * 1e150, q * 1e150)):
            R_fit, t_fit = rigid_fit(*pts, w)
            assert torch.isfinite(R_fit).all() and torch.isfinite(t_fit).all()
            torch.testing.assert_close(R_fit @ R_fit.T, torch.eye(3, dtype=torch.float64), atol=1e-9, rtol=0)


def test_top_eigenvector_gradient_matches_finite_differences_and_survives_repeated_eigenvalues():
    from mem4d.geometry.rigid_fit import _TopEigenvector

    g = torch.Generator().manual_seed(8)
    A = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    N = (A + A.transpose(-1, -2)).requires_grad_(True)
    weights = torch.randn(2, 4, generator=g, dtype=torch.float64)

    def f(M):
        v = _TopEigenvector.apply(0.5 * (M + M.transpose(-1, -2)))
        v = v * torch.sign(v[..., :1])  # the eigenvector's sign is arbitrary
        return (v * weights).sum()

    assert torch.autograd.gradcheck(f, (N,), eps=1e-6, atol=1e-5)
    degenerate = torch.diag(torch.tensor([0.0, 0.0, 0.0, 1e-6], dtype=torch.float64)).requires_grad_(True)
    _TopEigenvector.apply(degenerate).sum().backward()
    assert torch.isfinite(degenerate.grad).all()


def test_zero_total_weight_has_a_finite_gradient():
    p, q, _, _ = _problem(9)
    w = torch.zeros(p.shape[0], dtype=torch.float64, requires_grad=True)
    q = q.clone().requires_grad_(True)
    R_fit, t_fit = rigid_fit(p, q, w)
    (R_fit.sum() + t_fit.sum()).backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(q.grad).all()
