"""Video-depth metrics (PROTOCOLS 1.1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mem4d.eval.metrics import (
    DEPTH_METRIC_KEYS,
    DEPTH_PROTOCOLS,
    DepthProtocol,
    aggregate_depth_metrics,
    depth_metrics,
    resize_depth,
)


def _gt(T=3, H=12, W=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(T, H, W, generator=gen, dtype=torch.float64) * 9 + 1


@pytest.mark.parametrize("align", ["scale", "scale&shift", "median", "metric"])
def test_perfect_prediction(align):
    gt = _gt()
    m = depth_metrics(gt.clone(), gt, align=align)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert m["rmse"] == pytest.approx(0.0, abs=1e-5)
    assert m["delta1"] == m["delta2"] == m["delta3"] == 1.0
    assert m["n_valid"] == gt.numel()
    assert set(DEPTH_METRIC_KEYS) <= set(m)


def test_scaled_prediction_zero_error_with_scale_alignment_only():
    gt = _gt()
    pred = 2.0 * gt  # a depth network with the wrong scale
    m = depth_metrics(pred, gt, align="scale")
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    assert m["scale"] == pytest.approx(0.5, rel=1e-9)
    assert m["delta1"] == 1.0
    m = depth_metrics(pred, gt, align="metric")
    assert m["abs_rel"] == pytest.approx(1.0, rel=1e-12)  # |2g - g| / g
    assert m["sq_rel"] == pytest.approx(float(gt.mean()), rel=1e-12)  # (2g - g)^2 / g = g
    assert m["rmse"] == pytest.approx(float(gt.pow(2).mean().sqrt()), rel=1e-12)
    assert m["log_rmse"] == pytest.approx(math.log(2.0), rel=1e-12)
    assert m["delta1"] == m["delta2"] == m["delta3"] == 0.0  # ratio 2 > 1.25**3 = 1.953


def test_hand_built_case():
    gt = torch.tensor([[[1.0, 2.0], [4.0, 10.0]]], dtype=torch.float64)
    pred = torch.tensor([[[1.0, 3.0], [4.0, 5.0]]], dtype=torch.float64)
    m = depth_metrics(pred, gt, align="metric")
    err = np.array([0.0, 1.0, 0.0, -5.0])
    g = np.array([1.0, 2.0, 4.0, 10.0])
    p = g + err
    assert m["abs_rel"] == pytest.approx(np.mean(np.abs(err) / g))  # (0 + .5 + 0 + .5) / 4
    assert m["abs_rel"] == pytest.approx(0.25)
    assert m["sq_rel"] == pytest.approx(np.mean(err**2 / g))  # (.5 + 2.5) / 4
    assert m["rmse"] == pytest.approx(math.sqrt(26 / 4))
    assert m["log_rmse"] == pytest.approx(math.sqrt(np.mean(np.log(p / g) ** 2)))
    # ratios max(p/g, g/p) = 1, 1.5, 1, 2 -> below 1.25: 2/4; below 1.5625: 3/4; below 1.953: 3/4
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.5, 0.75, 0.75)


def test_valid_mask_and_caps_respected():
    gt = _gt()
    pred = gt.clone()
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[:, :, :4] = False
    pred[~valid] = 1000.0  # garbage where invalid
    gt_inv = gt.clone()
    gt_inv[0, 0, 5] = 0.0  # invalid GT (0)
    gt_inv[0, 0, 6] = float("nan")
    m = depth_metrics(pred, gt_inv, valid, align="metric")
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert m["n_valid"] == int(valid.sum()) - 2
    # Cap: pixels with gt >= max_depth are ignored.
    gt_cap = gt.clone()
    gt_cap[1] = 80.0
    pred_cap = gt_cap.clone()
    pred_cap[1] = 1.0
    m = depth_metrics(pred_cap, gt_cap, align="metric", max_depth=70)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12) and m["n_valid"] == 2 * 12 * 16
    m = depth_metrics(pred_cap, gt_cap, align="metric", protocol="kitti")
    assert m["abs_rel"] == pytest.approx((79 / 80) / 3) and m["n_valid"] == 3 * 12 * 16


def test_sintel_clip_after_alignment():
    gt = torch.full((1, 4, 4), 60.0, dtype=torch.float64)
    pred = gt.clone()
    pred[0, 0, 0] = 90.0
    m_clip = depth_metrics(pred, gt, align="metric", protocol="sintel")
    m_raw = depth_metrics(pred, gt, align="metric", protocol="bonn")
    assert m_clip["abs_rel"] == pytest.approx((10 / 60) / 16)
    assert m_raw["abs_rel"] == pytest.approx((30 / 60) / 16)
    assert DEPTH_PROTOCOLS["sintel"] == DepthProtocol("sintel", 70.0, 70.0)
    with pytest.raises(ValueError):
        DepthProtocol("bad", max_depth=-1.0)


def test_nonpositive_prediction_guard():
    gt = torch.tensor([[[2.0, 2.0]]], dtype=torch.float64)
    pred = torch.tensor([[[-1.0, 2.0]]], dtype=torch.float64)
    m = depth_metrics(pred, gt, align="metric")
    # abs_rel etc. use the raw prediction; log/delta clamp it to 1e-5 (reference behaviour).
    assert m["abs_rel"] == pytest.approx((3 / 2) / 2)
    assert m["log_rmse"] == pytest.approx(math.sqrt(math.log(1e-5 / 2) ** 2 / 2))
    assert m["delta1"] == 0.5
    assert all(math.isfinite(m[k]) for k in DEPTH_METRIC_KEYS)


def test_scale_and_shift_alignment():
    gt = _gt()
    pred = (gt - 0.05) / 1.5  # gt = 1.5 pred + 0.05
    m = depth_metrics(pred, gt, align="scale&shift", lad_method="exact")
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-9)
    assert m["scale"] == pytest.approx(1.5, rel=1e-9) and m["shift"] == pytest.approx(0.05, abs=1e-9)
    m = depth_metrics(pred, gt, align="scale&shift")  # protocol Adam: close, not exact
    assert m["abs_rel"] < 5e-3 and m["delta1"] == 1.0


def test_prediction_resized_to_gt():
    gt = _gt(T=2, H=12, W=16)
    pred = torch.ones(2, 6, 8, dtype=torch.float64) * 3
    m = depth_metrics(pred, gt, align="median")
    assert m["n_valid"] == gt.numel()
    r = resize_depth(pred, (12, 16))
    assert r.shape == (2, 12, 16)
    torch.testing.assert_close(r, torch.full_like(r, 3.0))  # constants stay constant
    # Matches F.interpolate bicubic, align_corners=False.
    x = torch.rand(1, 5, 7, dtype=torch.float64)
    ref = torch.nn.functional.interpolate(x[None], size=(9, 11), mode="bicubic", align_corners=False)[0]
    torch.testing.assert_close(resize_depth(x, (9, 11)), ref)


def test_empty_valid_and_weighted_aggregation():
    gt = _gt(T=1, H=2, W=2)
    m0 = depth_metrics(gt, gt, torch.zeros_like(gt, dtype=torch.bool))
    assert m0["n_valid"] == 0 and math.isnan(m0["abs_rel"])
    a = {"abs_rel": 0.1, "sq_rel": 1.0, "rmse": 2.0, "log_rmse": 0.1, "delta1": 0.9, "delta2": 1.0, "delta3": 1.0, "n_valid": 300}
    b = {"abs_rel": 0.3, "sq_rel": 3.0, "rmse": 4.0, "log_rmse": 0.3, "delta1": 0.5, "delta2": 0.7, "delta3": 1.0, "n_valid": 100}
    agg = aggregate_depth_metrics([a, b, m0])
    assert agg["abs_rel"] == pytest.approx(0.15)  # (0.1 * 300 + 0.3 * 100) / 400
    assert agg["delta1"] == pytest.approx(0.8)
    assert agg["rmse"] == pytest.approx(2.5)
    assert agg["n_valid"] == 400 and agg["n_sequences"] == 3
    # Weighted by pixels == metrics of the concatenated sequence for "metric" alignment.
    g1, g2 = _gt(T=2, seed=1), _gt(T=1, seed=2)
    p1, p2 = g1 * 1.1, g2 * 0.8
    v2 = torch.rand(g2.shape, generator=torch.Generator().manual_seed(3)) > 0.5
    m1 = depth_metrics(p1, g1, align="metric")
    m2 = depth_metrics(p2, g2, v2, align="metric")
    joint = depth_metrics(torch.cat([p1, p2]), torch.cat([g1, g2]), torch.cat([torch.ones_like(v2).repeat(2, 1, 1), v2]), align="metric")
    agg = aggregate_depth_metrics([m1, m2])
    for k in ("abs_rel", "sq_rel", "delta1"):
        assert agg[k] == pytest.approx(joint[k], rel=1e-12)
    with pytest.raises(ValueError):
        aggregate_depth_metrics([m0])


def test_numpy_and_2d_inputs():
    gt = _gt(T=1)[0].numpy().astype(np.float32)
    m = depth_metrics(gt * 3, gt, align="scale")
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-6) and m["n_valid"] == gt.size
    with pytest.raises(ValueError):
        depth_metrics(gt, gt, align="lstsq")
