"""The long-range memory probe: revisit frames are real revisits, the oracle scores zero, and the
pose and depth figures are what their definitions say on predictions with known errors."""

from __future__ import annotations

import numpy as np
import pytest

from mem4d.ablation.loop_probe import LoopProbeSettings, loop_period, loop_probe, loop_scene, probe_scene, revisit_pairs
from mem4d.eval.predict import load_predictor

SMALL = LoopProbeSettings(scenes=1, frames=22, loop_frames=16)
SIZE = (48, 64)


@pytest.fixture(scope="module")
def scene():
    return loop_scene(SMALL, 0, SIZE)


def test_revisit_frames_come_back_to_the_first_views(scene):
    assert loop_period(48) == pytest.approx(47 / 1.08)
    revisit, first = revisit_pairs(60, 48)
    assert revisit == list(range(44, 60)) and first == list(range(16))  # back after 43.5 frames
    revisit, first = revisit_pairs(SMALL.frames, SMALL.loop_frames)
    c = scene.cam2world[:, :3, 3].double().numpy()
    pair = np.linalg.norm(c[revisit] - c[first], axis=-1)
    extent = np.linalg.norm(c - c.mean(0), axis=-1).max()
    assert pair.max() < 0.15 * extent  # the same place, up to half a frame's motion
    assert np.linalg.norm(c[revisit] - c[[t - 5 for t in revisit]], axis=-1).min() > 2 * pair.max()
    with pytest.raises(ValueError, match="never return"):
        LoopProbeSettings(frames=40, loop_frames=48)


def test_the_oracle_scores_zero():
    report = loop_probe(load_predictor("baseline:oracle"), SIZE, SMALL)
    d = report["dataset"]
    for key in ("ate", "ate_first", "ate_revisit", "revisit_drift", "abs_rel", "abs_rel_first", "abs_rel_revisit"):
        assert d[key] == pytest.approx(0.0, abs=1e-9), key
    assert d["delta1_revisit"] == 1.0 and d["n_scenes"] == 1
    assert report["settings"]["period_frames"] == pytest.approx(15 / 1.08)


def test_a_fixed_camera(scene):
    T = scene.num_frames
    c = scene.cam2world[:, :3, 3].double().numpy()
    revisit, first = revisit_pairs(T, SMALL.loop_frames)
    out = probe_scene(scene.depth.numpy(), np.repeat(np.eye(4)[None], T, axis=0), scene, SMALL.loop_frames)
    # no Sim(3) can place one point anywhere but the centroid of the true centres
    assert out["ate"] == pytest.approx(np.sqrt(((c - c.mean(0)) ** 2).sum(-1).mean()))
    # a camera that never moves "knows" it is back: its drift is the true pair distance alone
    assert out["revisit_drift"] == pytest.approx(np.sqrt(((c[revisit] - c[first]) ** 2).sum(-1).mean()))
    assert out["abs_rel"] == pytest.approx(0.0, abs=1e-9)


def test_depth_uses_one_scale_for_both_laps(scene):
    T = scene.num_frames
    revisit, _ = revisit_pairs(T, SMALL.loop_frames)
    depth = scene.depth.double().numpy().copy()
    depth[revisit] *= 2.0  # the model's scale drifts on the second lap
    out = probe_scene(depth, scene.cam2world.double().numpy(), scene, SMALL.loop_frames)
    s = out["scale"]
    assert 0.5 <= s <= 1.0
    assert out["abs_rel_first"] == pytest.approx(abs(s - 1.0), abs=1e-9)
    assert out["abs_rel_revisit"] == pytest.approx(abs(2 * s - 1.0), abs=1e-9)
    assert out["abs_rel_first"] + out["abs_rel_revisit"] >= 0.5 - 1e-9  # per-lap scales would hide it
    assert out["ate"] == pytest.approx(0.0, abs=1e-9)


def test_movers_are_left_out_of_the_depth(scene):
    assert bool(scene.dynamic_mask.any())
    depth = scene.depth.double().numpy().copy()
    depth[scene.dynamic_mask.numpy()] *= 3.0  # wrong only on moving pixels
    out = probe_scene(depth, scene.cam2world.double().numpy(), scene, SMALL.loop_frames)
    assert out["abs_rel"] == pytest.approx(0.0, abs=1e-9)
