"""bench/bench_scene_memory_model.py: plumbing and report fields of the model-fed scene-memory benchmark.

A tiny untrained Mem4D (saved with ``save_pretrained``) streams one 12-frame loop scene at
48x64; the memory is fed once with ground truth and once with the predictions. Only the
wiring and the report's fields are checked, never quality.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mem4d.data.synthetic")

SIDE_KEYS = {"revisit_psnr_mean", "revisit_psnr_min", "revisit_coverage_mean", "revisit_coverage_min",
             "retrieval_top1", "retrieval_hits", "revisit_queries", "n_subjects", "gt_objects",
             "reidentified_events", "detections", "spurious_detections", "reentries", "reid_correct",
             "reid_accuracy", "reid_swaps", "id_switches", "write_ms_mean", "write_ms_median",
             "query_ms_mean", "query_ms_median"}


@pytest.fixture(scope="module")
def bench(bench_script):
    return bench_script("bench_scene_memory_model")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    from mem4d.config import Mem4DConfig
    from mem4d.model.mem4d import Mem4D

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ckpts")
    Mem4D(Mem4DConfig.tiny()).eval().save_pretrained(root / "step_0000001")
    (root / "latest").write_text("step_0000001\n")
    return root


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_revisit_frames_follow_the_loop_definition(bench):
    pairs = bench.revisit_frames(40)
    assert [r for r, _ in pairs] == [36, 37, 38, 39]  # as N_REVISIT = 4 in test_generator_scene.py
    assert [m for _, m in pairs] == [0, 1, 2, 3]
    assert bench.revisit_frames(12) == [(10, 0), (11, 1)]


def test_reid_stats_counts_reentries_and_swaps(bench):
    # object 1: seen 0-2 as id 5, unseen 3-6, back at 7 as id 5 (correct); object 2: id 6, back as id 5 (swap)
    r = bench.reid_stats({1: [(0, 5), (1, 5), (2, 5), (7, 5)], 2: [(0, 6), (8, 5)]})
    assert (r["reentries"], r["reid_correct"], r["reid_swaps"], r["id_switches"]) == (2, 1, 1, 1)
    assert r["reid_accuracy"] == 0.5


def test_script_runs_and_reports_both_memories(bench, ckpt_dir, tmp_path, capsys, restore_threads):
    out = tmp_path / "figures.json"
    assert bench.main(["--ckpt", str(ckpt_dir), "--scenes", "1", "--frames", "12", "--size", "48x64",
                       "--json", str(out), "--depth-at-gt-poses"]) == 0
    text = capsys.readouterr().out
    assert "| metric | GT-fed memory | model-fed memory |" in text
    assert "alignment: none" in text
    for label in ("revisit masked PSNR", "revisit coverage", "retrieval top-1", "subject records",
                  "'reidentified' events", "write ms", "query ms"):
        assert label in text

    res = json.loads(out.read_text())
    assert res["ckpt"] == str(ckpt_dir / "step_0000001")  # resolved through 'latest'
    assert res["frames"] == 12 and res["size"] == [48, 64] and res["alignment"].startswith("none")
    assert "The model's depth written and queried at GT poses" in text
    for side in ("gt", "model", "depth_at_gt_poses"):
        s = res["summary"][side]
        assert SIDE_KEYS <= set(s)
        assert s["revisit_queries"] == 2
        assert 0.0 <= s["revisit_coverage_mean"] <= 1.0 and 0.0 <= s["retrieval_top1"] <= 1.0
        assert s["write_ms_mean"] > 0 and s["query_ms_mean"] > 0
    diag = res["summary"]["model_diag"]
    assert {"ate_raw_m", "ate_sim3_m", "sim3_scale", "depth_absrel", "dynamic_iou_mean", "step_ms_mean"} <= set(diag)
    (scene,) = res["per_scene"]
    assert scene["written"] == 10
    assert [p["t"] for p in scene["model"]["per_revisit"]] == [10, 11]
    # the GT-fed memory is a sanity check of the measurement itself: it sees the revisit views
    gt = res["summary"]["gt"]
    assert gt["revisit_coverage_mean"] > 0.3
    assert gt["revisit_psnr_mean"] is not None and gt["revisit_psnr_mean"] > 15.0


def test_negative_predicted_depth_is_passed_as_invalid():
    """A weak model's points behind the camera must not make SceneMemory.write raise."""
    from types import SimpleNamespace

    from mem4d.scene import SceneMemory, observation_from_frame_output

    H, W = 8, 12
    depth = torch.full((1, H, W), 2.0)
    depth[0, :4] = -1.0
    K = torch.tensor([[[10.0, 0, 5.5], [0, 10.0, 3.5], [0, 0, 1]]])
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    pts = torch.stack([(u - 5.5) / 10 * depth[0], (v - 3.5) / 10 * depth[0], depth[0]], -1)[None]
    out = SimpleNamespace(pts_world=pts, conf_world=torch.full((1, H, W), 2.0), depth=depth, intrinsics=K,
                          cam2world=torch.eye(4)[None], dynamic_prob=None)
    rgb = np.full((H, W, 3), 0.5, np.float32)
    obs = observation_from_frame_output(out, 0, rgb)
    assert (obs.depth[:4] == 0).all() and (obs.depth[4:] == 2).all()
    mem = SceneMemory()
    mem.write(obs)
    assert mem.stats().n_voxels > 0
    assert not math.isnan(mem.scene_scale)


def test_depth_at_gt_poses_with_exact_depth_is_the_gt_fed_memory(bench):
    """Half the GT depth, rescaled by its median, at GT poses: the same memory as the GT-fed one."""
    from types import SimpleNamespace

    import numpy as np

    from mem4d.scene import Observation

    sc = bench.load_scene(1, 12, (48, 64), None)
    pairs = bench.revisit_frames(12)
    r0 = pairs[0][0]
    outs = [SimpleNamespace(depth=torch.from_numpy(0.5 * sc["depth"][t])[None],
                            dynamic_prob=torch.from_numpy(sc["dyn"][t].astype(np.float32))[None]) for t in range(12)]
    obs = bench.depth_at_gt_poses(outs, sc, r0)
    assert len(obs) == r0
    np.testing.assert_allclose(obs[3].depth, np.where(sc["depth"][3] > 0, sc["depth"][3], 0.0), rtol=1e-6)
    gt_obs = [Observation(t=t, rgb=sc["rgb"][t], K=sc["K"][t], c2w=sc["c2w"][t], depth=sc["depth"][t],
                          dynamic_mask=sc["dyn"][t]) for t in range(r0)]
    poses = {r: (sc["c2w"][r], sc["K"][r]) for r, _ in pairs}
    ours, gt = (bench.eval_memory(o, sc, poses, pairs, (48, 64)) for o in (obs, gt_obs))
    assert ours["revisit_psnr_mean"] == pytest.approx(gt["revisit_psnr_mean"], abs=1e-3)
    assert ours["retrieval_hits"] == gt["retrieval_hits"]


def test_default_names_the_shipped_model(bench, tmp_path, monkeypatch):
    from mem4d.model.pretrained import DEFAULT_DIR

    monkeypatch.chdir(tmp_path)  # no folder called "default" here
    assert bench.resolve_ckpt("default") == DEFAULT_DIR
    with pytest.raises(FileNotFoundError, match="neither"):
        bench.resolve_ckpt(tmp_path / "missing")
