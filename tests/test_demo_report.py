"""`mem4d.demo`: scoring against the synthetic ground truth and the self-contained report."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from mem4d.data.synthetic import make_scene
from mem4d.demo.evaluate import DemoPrediction, evaluate, format_table
from mem4d.demo.report import build_report, pick_frames, trajectory_png


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 5, (32, 48), dynamic=True, num_objects=2, camera_path="loop")


def test_the_ground_truth_scores_perfectly_and_beats_the_baselines(scene):
    perfect = DemoPrediction(depth=scene.depth.numpy(), cam2world=scene.cam2world.double().numpy(),
                             dynamic=scene.dynamic_mask.numpy().astype(np.float32))
    rows = evaluate(perfect, scene)
    assert [r["name"] for r in rows] == ["mem4d", "baseline:constant-depth", "baseline:identity-pose"]
    model, const, ident = rows
    assert model["scale_abs_rel"] < 1e-6 and model["metric_abs_rel"] < 1e-6 and model["metric_delta1"] == 1.0
    assert model["ate"] < 1e-6 and model["rpe_rot"] < 1e-3 and model["motion_iou"] == 1.0
    assert const["scale_abs_rel"] > 0.05 and const["ate"] > 0
    assert ident["metric_delta1"] < const["metric_delta1"] or ident["metric_abs_rel"] > const["metric_abs_rel"]
    assert math.isnan(const["motion_iou"])
    table = format_table(rows)
    assert "baseline:identity-pose" in table and "n/a" in table and "AbsRel (scale)" in table


def test_report_is_self_contained(scene):
    frames = (scene.images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    picks = pick_frames(scene.num_frames, 3)
    assert picks == [0, 2, 4]
    png = trajectory_png(scene.cam2world.double().numpy(), scene.cam2world.double().numpy(), "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = build_report(title="T <x>", scene_text="a & b", columns=["input"], strips=[(t, [frames[t]]) for t in picks],
                        trajectory=png, rows=None, note_html="<b>note</b>")
    assert "T &lt;x&gt;" in text and "a &amp; b" in text and "<b>note</b>" in text
    uris = [u.split('"')[0] for u in text.split('src="data:image/png;base64,')[1:]]
    assert len(uris) == 4
    assert all(base64.b64decode(u)[:4] == b"\x89PNG" for u in uris)
