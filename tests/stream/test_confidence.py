"""`mem4d.stream.confidence`: the per-frame adaptive threshold and the empty-output warning."""

from __future__ import annotations

import numpy as np
import pytest

from mem4d.stream.confidence import ConfidenceStats, ConfidenceThreshold, parse_conf_threshold


def test_parse():
    assert parse_conf_threshold("auto") == ConfidenceThreshold(quantile=0.1)
    assert parse_conf_threshold("auto:0.3") == ConfidenceThreshold(quantile=0.3)
    assert parse_conf_threshold("1.5") == ConfidenceThreshold(value=1.5)
    assert parse_conf_threshold("auto:0.3").describe() == "auto:0.3"
    for bad in ("high", "auto:1", "auto:-0.1", "nan"):
        with pytest.raises(ValueError, match="--conf-threshold|quantile|finite"):
            parse_conf_threshold(bad)


def test_auto_keeps_the_same_share_whatever_the_confidence_scale():
    rng = np.random.default_rng(0)
    valid = np.ones((48, 64), bool)
    valid[:8] = False  # no depth there: not counted
    auto = parse_conf_threshold("auto")
    for scale in (0.01, 1.0, 30.0):  # a confidence barely above 1 (real video) or far above it
        conf = 1.0 + scale * rng.random((48, 64))
        kept = (conf >= auto.for_frame(conf, valid))[valid].mean()
        assert 0.89 <= kept <= 0.91
    flat = np.ones((48, 64))  # no information in the confidence (e.g. --pose-refinement none): keep all
    assert (flat >= auto.for_frame(flat, valid)).all()
    assert ConfidenceThreshold(value=1.5).for_frame(flat, valid) == 1.5


def test_warning_when_little_or_nothing_passes():
    conf = np.full((10, 10), 1.01)
    valid = np.ones((10, 10), bool)
    fixed, auto = ConfidenceThreshold(value=1.5), parse_conf_threshold("auto")
    stats = ConfidenceStats()
    stats.update(conf, valid, fixed.for_frame(conf, valid))
    message = stats.warning(fixed, static_points=0, scene_memory=True)
    assert message is not None and "static.ply is empty" in message and "--conf-threshold auto" in message
    assert "median confidence 1.010" in message and "scene_memory/" in message
    stats = ConfidenceStats()
    conf2 = conf.copy()
    conf2[:1] = 2.0  # 10 % pass
    stats.update(conf2, valid, fixed.for_frame(conf2, valid))
    assert "nearly empty" in stats.warning(fixed, static_points=5)
    stats = ConfidenceStats()
    stats.update(conf, valid, auto.for_frame(conf, valid))
    assert stats.confident_fraction == 1.0 and stats.warning(auto, static_points=40) is None
    assert "moving" in stats.warning(auto, static_points=0)  # confident but all moving: another cause
    summary = stats.summary()
    assert summary["median_confidence"] == pytest.approx(1.01) and summary["conf_threshold_range"][0] == 1.01
