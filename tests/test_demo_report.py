"""`mem4d.demo`: scoring against the synthetic ground truth and the self-contained report."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from mem4d.data.synthetic import make_scene
from mem4d.demo.evaluate import COLUMNS, DemoPrediction, evaluate, format_table, motion_summary
from mem4d.demo.report import build_report, depth_colourbar_png, pick_frames, trajectory_png


@pytest.fixture(scope="module")
def scene():
    return make_scene(3, 5, (32, 48), dynamic=True, num_objects=2, camera_path="loop")


def test_the_ground_truth_scores_perfectly_and_beats_the_baselines(scene):
    perfect = DemoPrediction(depth=scene.depth.numpy(), cam2world=scene.cam2world.double().numpy(),
                             dynamic=scene.dynamic_mask.numpy().astype(np.float32))
    rows = evaluate(perfect, scene)
    assert [r["name"] for r in rows] == ["mem4d", "baseline:constant-depth"]
    model, const = rows
    assert model["scale_abs_rel"] < 1e-6 and model["metric_abs_rel"] < 1e-6 and model["metric_delta1"] == 1.0
    assert model["ate"] < 1e-6 and model["rpe_rot"] < 1e-3 and model["motion_iou"] == 1.0
    assert model["motion_precision"] == 1.0 and model["motion_recall"] == 1.0
    assert "IoU 1.00" in motion_summary(model) and "(good)" in motion_summary(model)
    assert const["scale_abs_rel"] > 0.05 and const["ate"] > 0
    assert math.isnan(const["motion_iou"])
    table = format_table(rows)
    assert "baseline:constant-depth" in table and "n/a" in table and "AbsRel (scale)" in table


def test_no_two_rows_of_the_table_repeat_each_other(scene):
    """Each row differs from every other in its scored columns (the two identity-pose baselines did not)."""
    guess = DemoPrediction(depth=np.full(scene.depth.shape, 2.0, np.float32),
                           cam2world=np.tile(np.eye(4), (scene.num_frames, 1, 1)), dynamic=None)
    rows = evaluate(guess, scene)
    keys = [k for k, _, _, _ in COLUMNS if k != "motion_iou"]
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            assert any(not math.isclose(rows[i][k], rows[j][k], rel_tol=1e-9) for k in keys) or i == 0, (i, j)
    baselines = [r for r in rows if r["name"].startswith("baseline:")]
    assert len(baselines) == 1


def test_camera_plot_legend_matches_the_movers_and_covers_no_data(scene, tmp_path):
    from matplotlib import colormaps

    from mem4d.cli.demo import camera_plot

    fig = camera_plot(scene, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    movers = [label for label in labels if label.startswith("moving object")]
    ids = sorted(int(i) for i in np.unique(scene.instance_ids.numpy()[scene.dynamic_mask.numpy()]))
    assert len(movers) == len(ids) == 2
    for k, label in enumerate(movers):  # each entry in the colour its object is drawn in
        handle = legend.legend_handles[labels.index(label)]
        np.testing.assert_allclose(handle.get_facecolor()[0][:3], colormaps["tab10"](k)[:3], atol=1e-6)
    renderer = fig.canvas.get_renderer()
    box, axes = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.x0 >= axes.x1 or box.y1 <= axes.y0  # beside or below the axes, not over the points


def test_report_is_self_contained(scene):
    frames = (scene.images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    picks = pick_frames(scene.num_frames, 3)
    assert picks == [0, 2, 4]
    png = trajectory_png(scene.cam2world.double().numpy(), scene.cam2world.double().numpy(), "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = build_report(title="T <x>", scene_text="a & b", columns=["input"], strips=[(t, [frames[t]]) for t in picks],
                        trajectory=png, rows=None, note_html="<b>note</b>", depth_colourbar=depth_colourbar_png(1, 9),
                        motion_text="Moving-pixel map (poor): IoU 0.10 < 1")
    assert "T &lt;x&gt;" in text and "a &amp; b" in text and "<b>note</b>" in text
    assert 'alt="depth colour scale"' in text and "Moving-pixel map (poor): IoU 0.10 &lt; 1" in text
    uris = [u.split('"')[0] for u in text.split('src="data:image/png;base64,')[1:]]
    assert len(uris) == 5
    assert all(base64.b64decode(u)[:4] == b"\x89PNG" for u in uris)
