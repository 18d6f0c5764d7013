"""The evaluation harness end to end: registry, `mem4d eval predict` + `score`, baselines.

Runs are tiny (2 sequences x 6 frames, 64 px long side, an untrained tiny model, 1 thread) so
the file stays well under a minute on 2 CPU cores. The CLI runs in-process with only the
`eval` subcommand registered (so a colleague's half-written subcommand cannot break these
tests; `test_cli_eval.py` checks the real registration).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mem4d.eval import benchmarks as B

from mem4d.cli.main import main as run_cli

SYNTH = ["--benchmark", "synthetic-dynamic", "--size", "64", "--limit-seqs", "2", "--max-frames", "6",
         "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("harness")


@pytest.fixture(scope="module")
def tiny_ckpt(work: Path) -> Path:
    from mem4d import Mem4D, Mem4DConfig

    torch.manual_seed(0)
    path = work / "tiny-untrained"
    Mem4D(Mem4DConfig.tiny()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def synth_run(work: Path, tiny_ckpt: Path) -> tuple[Path, Path]:
    pred, res = work / "pred-synth", work / "res-synth"
    assert run_cli(["eval", "predict", *SYNTH, "--ckpt", str(tiny_ckpt), "--out", str(pred)]) == 0
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(res), "--quiet"]) == 0
    return pred, res


def _baseline(work: Path, name: str) -> dict:
    pred, res = work / f"pred-{name}", work / f"res-{name}"
    if not res.exists():
        assert run_cli(["eval", "predict", *SYNTH, "--ckpt", f"baseline:{name}", "--out", str(pred)]) == 0
        assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(res), "--quiet"]) == 0
    return json.loads((res / "results.json").read_text())


# -- registry -----------------------------------------------------------------------------------


def test_registry_has_the_protocol_benchmarks():
    want = {"sintel": ("depth",), "bonn": ("depth",), "kitti": ("depth",), "sintel-pose": ("pose",),
            "tum-dynamics": ("pose",), "7scenes": ("recon",), "nrgbd": ("recon",),
            "7scenes-sample": ("depth", "pose", "recon"), "synthetic-dynamic": ("depth", "pose"),
            "synthetic-static": ("depth", "pose", "recon")}
    for name, tasks in want.items():
        bench = B.get_benchmark(name)
        assert bench.tasks == tasks, name
    assert B.get_benchmark("sintel").input_mode == "resize" and B.get_benchmark("sintel-pose").input_mode == "crop"
    assert B.get_benchmark("sintel").depth_protocol.max_depth == 70.0
    assert B.get_benchmark("sintel").depth_protocol.post_clip_max == 70.0
    assert B.get_benchmark("bonn").depth_protocol.max_depth == 70.0
    assert B.get_benchmark("kitti").depth_protocol.max_depth is None
    assert B.get_benchmark("bonn").source_kwargs["frame_range"] == (30, 140)
    assert len(B.get_benchmark("sintel-pose").sequence_patterns) == 14
    assert len(B.get_benchmark("tum-dynamics").sequence_patterns) == 8
    with pytest.raises(ValueError, match="known benchmarks: .*synthetic-dynamic"):
        B.get_benchmark("nope")


def test_protocol_frame_sampling():
    assert B.get_benchmark("tum-dynamics").frames(1000) == list(range(0, 270, 3))
    assert B.get_benchmark("tum-dynamics").frames(100) == list(range(0, 100, 3))
    assert B.get_benchmark("kitti").frames(300) == list(range(110))
    assert B.get_benchmark("7scenes").frames(1000) == [0, 200, 400, 600, 800]
    assert B.get_benchmark("nrgbd").frames(1500) == [0, 500, 1000]
    assert B.get_benchmark("nrgbd").frames(600) == [0, 300]
    assert B.get_benchmark("sintel").frames(50) == list(range(50))


def test_input_sizes():
    assert B.input_size((480, 640), 512, "crop") == (384, 512)
    assert B.input_size((436, 1024), 512, "crop") == (208, 512)  # 218 floored to 16s
    assert B.input_size((436, 1024), 512, "resize") == (224, 512)  # 218 rounded, no crop
    assert B.input_size((375, 1242), 512, "resize") == (160, 512)
    assert B.input_size((192, 256), 64, "resize") == (48, 64)
    assert B.recon_crop_size((384, 512), 512) == 224
    with pytest.raises(ValueError, match="multiple of 16"):
        B.input_size((480, 640), 500, "crop")


def test_synthetic_benchmarks_are_fixed_and_deterministic():
    dyn, sta = B.get_benchmark("synthetic-dynamic"), B.get_benchmark("synthetic-static")
    for bench in (dyn, sta):
        assert len(bench.sequences()) >= 20 and bench.num_frames == 48
        assert len({s.camera_path for s in bench.specs}) >= 4
    assert {s.num_objects for s in dyn.specs} == {1, 2, 3, 4}
    assert {s.num_objects for s in sta.specs} == {0}
    assert dyn.sequences() == B.get_benchmark("synthetic-dynamic").sequences()
    spec = dyn.specs[1]
    size = dyn.render_size(64)
    assert size == (48, 64) and dyn.render_size() == (192, 256)
    a = B._render.__wrapped__(spec, 2, size, True)  # two independent renderings
    b = B._render.__wrapped__(spec, 2, size, True)
    assert a is not b
    for key in ("images", "depth", "valid", "cam2world", "intrinsics", "dynamic_mask"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert B.gt_fingerprint(a) == B.gt_fingerprint(b)
    assert torch.equal(a.cam2world[0], torch.eye(4, dtype=a.cam2world.dtype))
    assert a.dynamic_mask.any()
    loaded = dyn.load(spec.name, max_frames=2, size=64)
    assert torch.equal(loaded.images, a.images) and loaded.meta["frame_ids"] == ["0", "1"]
    static = B._render.__wrapped__(sta.specs[0], 2, size, False)
    assert not static.dynamic_mask.any() and static.meta["num_objects"] == 0


# -- end to end ---------------------------------------------------------------------------------


def test_synthetic_predict_writes_npz_and_manifest(synth_run, tiny_ckpt):
    pred, _ = synth_run
    manifest = json.loads((pred / "manifest.json").read_text())
    assert manifest["benchmark"]["name"] == "synthetic-dynamic"
    ck = manifest["checkpoint"]
    assert ck["kind"] == "model" and ck["path"] == str(tiny_ckpt.resolve())
    assert len(ck["weights_sha256"]) == 64 and len(ck["config_sha256"]) == 64 and len(ck["model_config_hash"]) == 64
    env = manifest["environment"]
    for key in ("git", "device", "device_name", "torch_version", "threads", "mem4d_version"):
        assert key in env
    assert env["threads"] == 1 and env["torch_version"] == torch.__version__
    assert manifest["date"] and manifest["run"]["limited"] and manifest["run"]["size"] == 64
    assert manifest["timing"]["frames"] == 12 and manifest["timing"]["median_s"] > 0
    assert len(manifest["sequences"]) == 2
    for entry in manifest["sequences"]:
        with np.load(pred / entry["file"], allow_pickle=False) as z:
            assert z["depth"].shape == (6, 48, 64) and z["depth"].dtype == np.float32
            assert z["cam2world"].shape == (6, 4, 4) and z["intrinsics"].shape == (6, 3, 3)
            assert z["conf"].shape == (6, 48, 64) and z["frame_time_s"].shape == (6,)
            assert "pts_world" not in z.files  # no reconstruction task on this benchmark
            np.testing.assert_allclose(z["cam2world"][0], np.eye(4), atol=1e-6)
    assert not list(pred.parent.glob(".pred-synth*"))  # no temporary folder left


def test_synthetic_score_writes_results(synth_run):
    _, res = synth_run
    results = json.loads((res / "results.json").read_text())
    assert results["method"] == "tiny-untrained" and results["published"] is None
    for align in ("scale", "metric"):
        d = results["depth"][align]["dataset"]
        assert {"abs_rel", "delta1", "rmse", "n_valid"} <= set(d) and d["n_sequences"] == 2
        assert len(results["depth"][align]["per_sequence"]) == 2
    p = results["pose"]["dataset"]
    assert {"ate", "rpe_trans", "rpe_rot"} <= set(p) and p["n_sequences"] + p["n_skipped"] == 2
    assert "recon" not in results
    md = (res / "results.md").read_text()
    assert "Video depth (Table 1 layout)" in md and "Camera pose (Table 2 layout)" in md
    assert "Abs Rel" in md and "δ<1.25" in md and "ATE" in md and "limited run" in md
    assert "Mem4D (paper)" not in md  # not the paper's benchmark


def test_7scenes_sample_end_to_end(work, tiny_ckpt):
    pred, res = work / "pred-7s", work / "res-7s"
    assert run_cli(["eval", "predict", "--benchmark", "7scenes-sample", "--ckpt", str(tiny_ckpt), "--out", str(pred),
                    "--size", "64", "--max-frames", "3", "--threads", "1", "--quiet"]) == 0
    manifest = json.loads((pred / "manifest.json").read_text())
    assert manifest["sequences"][0]["num_frames"] == 3 and manifest["sequences"][0]["native_size"] == [480, 640]
    with np.load(pred / manifest["sequences"][0]["file"]) as z:
        assert z["pts_world"].shape == (3, 48, 64, 3)
        assert list(z["frame_ids"]) == ["frame-000000", "frame-000005", "frame-000010"]
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(res), "--quiet"]) == 0
    results = json.loads((res / "results.json").read_text())
    assert set(results["depth"]) == {"scale", "metric"}
    assert results["pose"]["dataset"]["n_sequences"] == 1
    r = results["recon"]["dataset"]
    assert {"acc", "acc_med", "comp", "comp_med", "nc", "nc_med"} <= set(r) and r["n_sequences"] == 1
    md = (res / "results.md").read_text()
    assert "3D reconstruction (Table 3 layout)" in md and "7-Scenes sample" in md


def test_baselines_give_floors(work):
    const = _baseline(work, "constant-depth")
    ident = _baseline(work, "identity-pose")
    oracle = _baseline(work, "oracle")
    c = const["depth"]["scale"]["dataset"]
    assert 0.05 < c["abs_rel"] < 1.0 and 0.0 < c["delta1"] < 0.9
    # the floor uses the GT median: metric scale is about as good as per-sequence scale
    assert const["depth"]["metric"]["dataset"]["abs_rel"] < 1.0
    p = ident["pose"]["dataset"]
    assert p["n_sequences"] == 2 and p["n_skipped"] == 0 and p["ate"] > 0 and p["rpe_trans"] > 0
    assert all(m["degenerate"] == "constant_position" for m in ident["pose"]["per_sequence"].values())
    # the oracle is the ground truth: the harness must score it (almost) perfectly
    assert oracle["depth"]["metric"]["dataset"]["abs_rel"] < 1e-5  # rendered at the input size: exact
    assert oracle["depth"]["scale"]["dataset"]["delta1"] > 0.95
    assert oracle["pose"]["dataset"]["ate"] < 1e-6 and oracle["pose"]["dataset"]["rpe_rot"] < 1e-3
    assert c["abs_rel"] > 5 * oracle["depth"]["scale"]["dataset"]["abs_rel"]
    assert oracle["motion"]["dataset"]["iou"] > 0.99  # its moving-pixel map is the ground-truth mask
    assert "motion" not in const  # no dynamic_prob, no motion score


def test_moving_pixel_scores():
    from mem4d.data.synthetic import make_scene
    from mem4d.eval.score import motion_scores

    gt = make_scene(3, 2, image_size=(48, 64), dynamic=True, num_objects=2)
    mask = gt.dynamic_mask.numpy()
    assert mask.any()
    exact = motion_scores(mask.astype(np.float32), gt)
    assert exact["iou"] == 1.0 and exact["fp"] == 0 and exact["fn"] == 0
    none = motion_scores(np.zeros_like(mask, dtype=np.float32), gt)
    assert none["iou"] == 0.0 and none["recall"] == 0.0
    everything = motion_scores(np.ones_like(mask, dtype=np.float32), gt)
    assert 0 < everything["iou"] == everything["precision"] < 0.5 and everything["recall"] == 1.0
    half = motion_scores(np.repeat(np.repeat(mask, 2, 1), 2, 2)[:, ::2, ::2].astype(np.float32), gt)
    assert half["iou"] == 1.0
    small = motion_scores(mask[:, ::2, ::2].astype(np.float32), gt)  # predicted at half the size: resized
    assert small["iou"] > 0.6


def test_table_merges_results(work, synth_run, capsys):
    _baseline(work, "identity-pose")
    capsys.readouterr()
    assert run_cli(["eval", "table", str(synth_run[1]), str(work / "res-identity-pose")]) == 0
    text = capsys.readouterr().out
    assert "| Per-sequence scale | tiny-untrained |" in text and "| baseline:identity-pose |" in text


def test_pose_degenerate_rules():
    from mem4d.eval.metrics import PoseAlignmentError
    from mem4d.eval.score import pose_scores

    gt = np.repeat(np.eye(4)[None], 5, axis=0)
    gt[:, 0, 3] = np.arange(5) * 0.1
    gt[:, 1, 3] = np.array([0, 0.05, 0.0, 0.05, 0.0])
    ident = np.repeat(np.eye(4)[None], 5, axis=0)
    m = pose_scores(ident, gt)
    centres = gt[:, :3, 3]
    expect = np.sqrt(((centres - centres.mean(0)) ** 2).sum(-1).mean())
    assert m["degenerate"] == "constant_position" and m["ate"] == pytest.approx(expect)
    assert m["rpe_trans"] == pytest.approx(np.sqrt((np.diff(centres, axis=0) ** 2).sum(-1).mean()))
    assert m["rpe_rot"] == pytest.approx(0.0, abs=1e-9)
    collinear = ident.copy()
    collinear[:, 0, 3] = np.arange(5) * 0.3
    with pytest.raises(PoseAlignmentError):  # evo cannot align it: the protocol skips it
        pose_scores(collinear, gt)


def _write_fake_sintel(root: Path, names: list[str], T: int = 3, H: int = 40, W: int = 96) -> None:
    from PIL import Image

    from mem4d.data.sources.sintel import write_cam, write_dpt

    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        for kind in ("final", "depth", "camdata_left"):
            (root / "training" / kind / name).mkdir(parents=True, exist_ok=True)
        for t in range(T):
            stem = f"frame_{t + 1:04d}"
            img = (rng.random((H, W, 3)) * 255).astype(np.uint8)
            Image.fromarray(img).save(root / "training" / "final" / name / f"{stem}.png")
            x = np.linspace(0.0, 1.0, W)[None, :] + 0.2 * np.linspace(0.0, 1.0, H)[:, None]
            depth = (5.0 + 80.0 * x + t).astype(np.float32)  # smooth; the right side is beyond the 70 m cap
            write_dpt(root / "training" / "depth" / name / f"{stem}.dpt", depth)
            M = np.array([[50.0, 0, W / 2], [0, 50.0, H / 2], [0, 0, 1]])
            a = 0.05 * t + 0.1 * k
            R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
            world2cam = np.concatenate([R, np.array([[0.3 * t], [0.1 * t * t], [0.2 * k]])], axis=1)
            write_cam(root / "training" / "camdata_left" / name / f"{stem}.cam", M, world2cam)


def test_dataset_benchmarks_on_a_fake_sintel(tmp_path):
    from mem4d.eval.benchmarks import _SINTEL_POSE_SEQS

    _write_fake_sintel(tmp_path / "sintel", list(_SINTEL_POSE_SEQS) + ["bamboo_1"])
    common = ["--data-root", str(tmp_path), "--size", "64", "--limit-seqs", "2", "--quiet"]
    results = {}
    for bench, ckpt in (("sintel", "oracle"), ("sintel-pose", "oracle"), ("sintel-pose", "identity-pose")):
        pred, res = tmp_path / f"p-{bench}-{ckpt}", tmp_path / f"r-{bench}-{ckpt}"
        assert run_cli(["eval", "predict", "--benchmark", bench, "--ckpt", f"baseline:{ckpt}", "--out", str(pred),
                        *common]) == 0
        assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(res), "--data-root", str(tmp_path),
                        "--quiet"]) == 0
        results[bench, ckpt] = json.loads((res / "results.json").read_text())
    depth = results["sintel", "oracle"]
    assert depth["sequences"] == ["alley_2", "ambush_4"]  # sorted: all training/final sequences
    assert depth["depth"]["metric"]["dataset"]["abs_rel"] < 0.1
    assert depth["depth"]["scale"]["dataset"]["n_valid"] < 2 * 3 * 40 * 96  # the 70 m cap removed pixels
    pose = results["sintel-pose", "oracle"]
    assert pose["sequences"] == ["alley_2", "ambush_4"] and pose["pose"]["dataset"]["ate"] < 1e-6
    assert results["sintel-pose", "identity-pose"]["pose"]["dataset"]["ate"] > 0.01
