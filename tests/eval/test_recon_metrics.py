"""Multi-view reconstruction metrics (PROTOCOLS 1.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mem4d.eval.metrics import (
    align_median_scale_shift,
    central_crop,
    estimate_normals,
    evaluate_reconstruction,
    icp_point_to_point,
    recon_metrics,
)


def _grid_plane(n: int = 20, spacing: float = 0.05, z: float = 0.0) -> np.ndarray:
    u, v = np.meshgrid(np.arange(n) * spacing, np.arange(n) * spacing, indexing="ij")
    return np.stack([u.ravel(), v.ravel(), np.full(n * n, z)], axis=-1)


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def _bumpy_surface(n: int = 30) -> np.ndarray:
    """A non-symmetric surface patch so ICP has a unique answer."""
    u, v = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    z = 0.3 * np.sin(2 * u) * np.cos(3 * v) + 0.2 * u**2 + 0.1 * v
    return np.stack([u.ravel(), v.ravel(), z.ravel()], axis=-1)


def test_identical_clouds_give_zero_error():
    pts = _bumpy_surface()
    m = recon_metrics(pts, pts)
    assert m["acc"] == m["comp"] == m["acc_med"] == m["comp_med"] == 0.0
    assert m["nc"] == pytest.approx(1.0) and m["nc_med"] == pytest.approx(1.0)


def test_known_offset():
    gt = _grid_plane(z=0.0)
    pred = _grid_plane(z=0.01)  # 1 cm above, same xy
    m = recon_metrics(pred, gt)
    assert m["acc"] == pytest.approx(0.01) and m["comp"] == pytest.approx(0.01)
    assert m["acc_med"] == pytest.approx(0.01) and m["comp_med"] == pytest.approx(0.01)
    assert m["nc"] == pytest.approx(1.0)  # parallel planes: |n . n| = 1
    # A prediction covering half of the GT: accuracy stays 0, completeness grows.
    half = gt[gt[:, 0] < 0.5 - 1e-9]
    m = recon_metrics(half, gt)
    assert m["acc"] == 0.0 and m["comp"] > 0.05
    d_missing = gt[:, 0] - half[:, 0].max()
    assert m["comp"] == pytest.approx(np.mean(np.maximum(d_missing, 0.0)))


def test_normal_consistency_of_tilted_plane_and_given_normals():
    gt = _grid_plane()
    R = _rot(np.array([1.0, 0, 0]), math.radians(60))
    pred = gt @ R.T
    n_gt = np.tile([0.0, 0, 1], (len(gt), 1))
    n_pred = n_gt @ R.T
    m = recon_metrics(pred, gt, n_pred, n_gt)
    assert m["nc1"] == pytest.approx(0.5) and m["nc2"] == pytest.approx(0.5)  # cos 60
    # Estimated normals (PCA, k = 30) recover the plane normals up to sign.
    est = estimate_normals(pred)
    assert np.allclose(np.abs((est * n_pred).sum(-1)), 1.0, atol=1e-9)
    assert np.allclose(np.linalg.norm(est, axis=-1), 1.0)


def test_estimate_normals_small_cloud_default():
    assert np.allclose(estimate_normals(np.zeros((2, 3))), [[0, 0, 1], [0, 0, 1]])


def test_icp_recovers_small_rigid_transform():
    gt = _bumpy_surface(40)
    R = _rot(np.array([0.3, -0.5, 0.8]), math.radians(2.0))
    t = np.array([0.02, -0.015, 0.01])
    pred = gt @ R.T + t  # pred = T gt  ->  ICP should find T^-1
    res = icp_point_to_point(pred, gt, threshold=0.1)
    T_inv = np.eye(4)
    T_inv[:3, :3], T_inv[:3, 3] = R.T, -R.T @ t
    np.testing.assert_allclose(res.transformation, T_inv, atol=1e-6)
    assert res.fitness == 1.0 and res.inlier_rmse < 1e-6
    assert 1 <= res.n_iterations <= 30
    m = evaluate_reconstruction(pred, gt)
    assert m["acc"] < 1e-6 and m["comp"] < 1e-6 and m["nc"] == pytest.approx(1.0)
    # Without ICP the offset shows up in the metrics.
    assert recon_metrics(pred, gt)["acc"] > 0.005


def test_icp_threshold_limits_correspondences():
    gt = _bumpy_surface(20)
    far = gt + np.array([0.0, 0.0, 5.0])
    res = icp_point_to_point(far, gt, threshold=0.1)
    assert res.fitness == 0.0 and res.n_iterations == 0
    np.testing.assert_array_equal(res.transformation, np.eye(4))


def test_central_crop():
    x = np.arange(384 * 512).reshape(384, 512)
    c = central_crop(x, 224, hw_axes=(-2, -1))
    assert c.shape == (224, 224)
    assert c[0, 0] == x[192 - 112, 256 - 112]
    pts = torch.zeros(2, 384, 512, 3)
    assert central_crop(pts).shape == (2, 224, 224, 3)
    with pytest.raises(ValueError):
        central_crop(np.zeros((100, 100, 3)))


def test_align_median_scale_shift():
    gen = np.random.default_rng(0)
    gt = gen.normal(size=(2, 8, 8, 3)) + np.array([0.0, 0.0, 4.0])
    valid = gen.uniform(size=(2, 8, 8)) > 0.2
    # Prediction = GT with z shifted and the whole cloud scaled: removed exactly.
    pred = gt.copy()
    pred[..., 2] -= 1.0
    pred *= 0.25
    out, info = align_median_scale_shift(pred, gt, valid)
    np.testing.assert_allclose(out.numpy(), gt, atol=1e-12)
    assert info["pred_scale"] == pytest.approx(0.25 * info["gt_scale"])
    # The GT z-median is put back, the median of the shifted GT cloud is the scale target.
    gv = gt[valid]
    k = (len(gv) - 1) // 2
    assert info["gt_shift_z"] == pytest.approx(np.sort(gv[:, 2])[k])
    # Tiny predictions have their scale clipped at 1e-3.
    _, info = align_median_scale_shift(pred * 1e-6, gt, valid)
    assert info["pred_scale"] == 1e-3
    with pytest.raises(ValueError):
        align_median_scale_shift(pred, gt, np.zeros((2, 8, 8), bool))
