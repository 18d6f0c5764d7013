"""Tests for mem4d.geometry.align: Umeyama Sim(3)/SE(3) and the depth scale fits."""

from __future__ import annotations

import math

import pytest
import torch

from mem4d.geometry.align import (
    align_se3,
    align_sim3,
    apply_sim3,
    fit_scale_shift_lad,
    fit_scale_weiszfeld,
    lower_median,
    sim3_matrix,
    umeyama,
)

F64 = torch.float64


def _random_rotation(gen: torch.Generator, *batch: int) -> torch.Tensor:
    q = torch.randn(*batch, 4, generator=gen, dtype=F64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return R.reshape(*batch, 3, 3)


# ------------------------------------------------------------------------------- umeyama


def test_umeyama_identity_small_case():
    src = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=F64)
    s, R, t = umeyama(src, src, with_scale=True)
    assert float(s) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(R, torch.eye(3, dtype=F64))
    torch.testing.assert_close(t, torch.zeros(3, dtype=F64))


def test_umeyama_known_small_case():
    # dst = 2 * Rz(90deg) @ src + (1, 2, 3)
    src = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=F64)
    Rz = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64)
    t_true = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    dst = 2.0 * src @ Rz.T + t_true
    s, R, t = umeyama(src, dst, with_scale=True)
    assert float(s) == pytest.approx(2.0, abs=1e-12)
    torch.testing.assert_close(R, Rz)
    torch.testing.assert_close(t, t_true)
    # Without scale: same rotation; the translation matches the centroids.
    s1, R1, t1 = umeyama(src, dst, with_scale=False)
    assert float(s1) == 1.0
    torch.testing.assert_close(R1, Rz)
    torch.testing.assert_close(t1, dst.mean(0) - src.mean(0) @ Rz.T)


@pytest.mark.parametrize("with_scale", [True, False])
def test_umeyama_recovers_random_transform_batched(with_scale):
    gen = torch.Generator().manual_seed(0)
    B, N = 5, 20
    src = torch.randn(B, N, 3, generator=gen, dtype=F64) * 3
    R_true = _random_rotation(gen, B)
    t_true = torch.randn(B, 3, generator=gen, dtype=F64) * 5
    s_true = torch.rand(B, generator=gen, dtype=F64) * 3 + 0.2 if with_scale else torch.ones(B, dtype=F64)
    dst = s_true[:, None, None] * src @ R_true.transpose(-1, -2) + t_true[:, None]
    s, R, t = umeyama(src, dst, with_scale=with_scale)
    assert s.shape == (B,) and R.shape == (B, 3, 3) and t.shape == (B, 3)
    torch.testing.assert_close(s, s_true, atol=1e-6, rtol=0)
    torch.testing.assert_close(R, R_true, atol=1e-6, rtol=0)
    torch.testing.assert_close(t, t_true, atol=1e-6, rtol=0)
    M = align_sim3(src, dst) if with_scale else align_se3(src, dst)
    torch.testing.assert_close(apply_sim3(M, src), dst, atol=1e-6, rtol=0)


def test_umeyama_reflection_gives_proper_rotation():
    gen = torch.Generator().manual_seed(1)
    src = torch.randn(30, 3, generator=gen, dtype=F64)
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=F64))
    dst = src @ mirror.T  # a reflection: no rotation maps src onto dst exactly
    _, R, _ = umeyama(src, dst, with_scale=True)
    assert float(torch.linalg.det(R)) == pytest.approx(1.0, abs=1e-10)
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=F64))


def test_umeyama_weights_ignore_zero_weight_outliers():
    gen = torch.Generator().manual_seed(2)
    src = torch.randn(40, 3, generator=gen, dtype=F64)
    R_true = _random_rotation(gen)
    dst = 1.5 * src @ R_true.T + 0.3
    dst[:5] += 10.0  # outliers
    w = torch.ones(40, dtype=F64)
    w[:5] = 0
    s, R, t = umeyama(src, dst, with_scale=True, weights=w)
    assert float(s) == pytest.approx(1.5, abs=1e-9)
    torch.testing.assert_close(R, R_true, atol=1e-9, rtol=0)


def test_umeyama_gradcheck():
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(8, 3, generator=gen, dtype=F64, requires_grad=True)
    dst = (torch.randn(8, 3, generator=gen, dtype=F64) + src.detach() * 2).requires_grad_(True)

    def f(a, b):
        s, R, t = umeyama(a, b, with_scale=True)
        return sim3_matrix(s, R, t)

    assert torch.autograd.gradcheck(f, (src, dst), eps=1e-6, atol=1e-5)


def test_umeyama_rejects_bad_shapes():
    with pytest.raises(ValueError):
        umeyama(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError):
        umeyama(torch.zeros(4, 2), torch.zeros(4, 2))


# ----------------------------------------------------------------------------- scale fits


def test_lower_median_is_torch_median():
    x = torch.tensor([4.0, 1.0, 3.0, 2.0])
    assert float(lower_median(x)) == 2.0 == float(torch.median(x))


def test_weiszfeld_recovers_scale_and_is_robust():
    gen = torch.Generator().manual_seed(4)
    pred = torch.rand(2, 16, 16, generator=gen, dtype=F64) * 10 + 0.5
    gt = 3.0 * pred
    assert float(fit_scale_weiszfeld(pred, gt)) == pytest.approx(3.0, rel=1e-9)
    # 10 % gross outliers barely move the L1 scale, unlike a least-squares fit.
    gt_out = gt.clone()
    gt_out.view(-1)[:51] *= 5
    s = float(fit_scale_weiszfeld(pred, gt_out))
    assert s == pytest.approx(3.0, rel=1e-3)
    s_ls = float((pred * gt_out).sum() / (pred * pred).sum())
    assert abs(s_ls - 3.0) > 0.5


def test_weiszfeld_matches_protocol_hand_computation():
    # Two-point case computed by hand, following the protocol's update rule.
    pred = torch.tensor([1.0, 2.0], dtype=F64)
    gt = torch.tensor([2.0, 3.0], dtype=F64)
    s = gt.mean() / pred.mean()
    for _ in range(10):
        w = 1 / ((s * pred - gt).abs() + 1e-8)
        s = (w * pred * gt).sum() / (w * pred * pred).sum()
    assert float(fit_scale_weiszfeld(pred, gt)) == pytest.approx(float(s), rel=1e-12)


def test_weiszfeld_valid_mask_and_min_scale():
    pred = torch.tensor([1.0, 2.0, 100.0], dtype=F64)
    gt = torch.tensor([2.0, 4.0, -5.0], dtype=F64)
    valid = torch.tensor([True, True, False])
    assert float(fit_scale_weiszfeld(pred, gt, valid)) == pytest.approx(2.0, rel=1e-9)
    assert float(fit_scale_weiszfeld(pred, -gt, valid)) == pytest.approx(1e-3)  # clamped


def _l1(pred, gt, s, t):
    return float((s * pred + t - gt).abs().sum())


def test_lad_noise_free_recovery_adam_and_exact():
    gen = torch.Generator().manual_seed(5)
    pred = torch.rand(4000, generator=gen, dtype=F64) * 4 + 1
    s_true, t_true = 2.0, 0.05
    gt = s_true * pred + t_true
    s_e, t_e = fit_scale_shift_lad(pred, gt, method="exact")
    assert float(s_e) == pytest.approx(s_true, abs=1e-9)
    assert float(t_e) == pytest.approx(t_true, abs=1e-9)
    # Adam (protocol): steps of ~lr=1e-4 from s = median(gt)/median(pred), t = 0; within 1e-2.
    s_a, t_a = fit_scale_shift_lad(pred, gt, method="adam")
    assert float(s_a) == pytest.approx(s_true, abs=1e-2)
    assert float(t_a) == pytest.approx(t_true, abs=3e-2)
    assert _l1(pred, gt, s_e, t_e) <= _l1(pred, gt, s_a, t_a)


def test_lad_exact_at_least_as_good_as_adam_with_outliers():
    gen = torch.Generator().manual_seed(6)
    pred = torch.rand(3000, generator=gen, dtype=F64) * 5 + 0.5
    gt = 1.7 * pred - 0.3 + 0.05 * torch.randn(3000, generator=gen, dtype=F64)
    gt[:300] += 20 * torch.rand(300, generator=gen, dtype=F64)
    s_e, t_e = fit_scale_shift_lad(pred, gt, method="exact")
    s_a, t_a = fit_scale_shift_lad(pred, gt, method="adam")
    assert _l1(pred, gt, s_e, t_e) <= _l1(pred, gt, s_a, t_a) + 1e-9
    # Exact is optimal: small moves of (s, t) do not lower the L1 cost.
    base = _l1(pred, gt, s_e, t_e)
    for ds, dt in [(1e-4, 0), (-1e-4, 0), (0, 1e-4), (0, -1e-4), (1e-4, -3e-4), (-1e-4, 3e-4)]:
        assert _l1(pred, gt, float(s_e) + ds, float(t_e) + dt) >= base - 1e-9
    assert float(s_e) == pytest.approx(1.7, abs=0.02)
    assert float(t_e) == pytest.approx(-0.3, abs=0.05)


def test_lad_adam_protocol_initialisation_and_mask():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=F64)
    gt = 2 * pred
    valid = torch.tensor([[True, True], [True, False]])
    # median(gt)/median(pred) = 2 is already optimal: Adam moves little.
    s, t = fit_scale_shift_lad(pred, gt, valid, method="adam", max_iters=1)
    assert float(s) == pytest.approx(2.0, abs=2e-4) and abs(float(t)) <= 2e-4
    with pytest.raises(ValueError):
        fit_scale_shift_lad(pred, gt, method="lstsq")


def test_sim3_matrix_layout():
    R = torch.eye(3, dtype=F64)
    M = sim3_matrix(torch.tensor(2.0, dtype=F64), R, torch.tensor([1.0, 2, 3], dtype=F64))
    assert M.shape == (4, 4)
    torch.testing.assert_close(M[:3, :3], 2 * R)
    assert M[3].tolist() == [0, 0, 0, 1]
    assert math.isclose(float(apply_sim3(M, torch.ones(1, 3, dtype=F64))[0, 0]), 3.0)


def test_lad_adam_equals_torch_optim_adam():
    # The hand-written loop must be the protocol's: torch.optim.Adam on sum |s p + t - g|.
    gen = torch.Generator().manual_seed(7)
    pred = torch.rand(500, generator=gen, dtype=F64) * 3 + 0.5
    gt = 1.3 * pred + 0.02 + 0.1 * torch.randn(500, generator=gen, dtype=F64)
    s0 = float(lower_median(gt) / lower_median(pred))
    s = torch.tensor([s0], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0], dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([s, t], lr=1e-4)
    prev = None
    for _ in range(120):
        opt.zero_grad()
        loss = (s * pred + t - gt).abs().sum()
        loss.backward()
        opt.step()
        if prev is not None and abs(prev - loss.item()) < 1e-6:
            break
        prev = loss.item()
    s_h, t_h = fit_scale_shift_lad(pred, gt, method="adam", max_iters=120)
    assert float(s_h) == pytest.approx(s.item(), abs=1e-12)
    assert float(t_h) == pytest.approx(t.item(), abs=1e-12)
