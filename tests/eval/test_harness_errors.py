"""Error cases of `mem4d eval predict` / `score`: a clear message, exit code 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mem4d.cli.main import main as run_cli

SYNTH = ["--benchmark", "synthetic-dynamic", "--size", "64", "--limit-seqs", "2", "--max-frames", "6", "--quiet"]


def _nothing_written(parent: Path, name: str) -> bool:
    return not (parent / name).exists() and not list(parent.glob(f".{name}.*"))


@pytest.fixture(scope="module")
def oracle_pred(tmp_path_factory) -> Path:
    pred = tmp_path_factory.mktemp("errors") / "pred"
    assert run_cli(["eval", "predict", *SYNTH, "--ckpt", "baseline:oracle", "--out", str(pred)]) == 0
    return pred


@pytest.fixture
def pred_copy(oracle_pred: Path, tmp_path: Path) -> tuple[Path, dict]:
    dst = tmp_path / "pred"
    shutil.copytree(oracle_pred, dst)
    return dst, json.loads((dst / "manifest.json").read_text())


def _rewrite(path: Path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez_compressed(path, **arrays)


# -- predict ------------------------------------------------------------------------------------


def test_unknown_benchmark(tmp_path, capsys):
    out = str(tmp_path / "o")
    rc = run_cli(["eval", "predict", "--benchmark", "sintle", "--ckpt", "baseline:oracle", "--out", out])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown benchmark 'sintle'" in err and "sintel-pose" in err and "synthetic-dynamic" in err
    assert _nothing_written(tmp_path, "o")


def test_missing_data_root(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEM4D_DATA", raising=False)
    rc = run_cli(["eval", "predict", "--benchmark", "bonn", "--ckpt", "baseline:oracle", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--data-root" in err and "MEM4D_DATA" in err and "rgbd_bonn" in err
    assert _nothing_written(tmp_path, "o")
    rc = run_cli(["eval", "predict", "--benchmark", "tum-dynamics", "--ckpt", "baseline:oracle",
                  "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "not found" in err and "freiburg3" in err
    assert _nothing_written(tmp_path, "o")


def test_benchmark_without_sequences(tmp_path, capsys):
    (tmp_path / "data" / "sintel" / "training" / "final").mkdir(parents=True)
    rc = run_cli(["eval", "predict", "--benchmark", "sintel", "--ckpt", "baseline:oracle",
                  "--data-root", str(tmp_path / "data"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no sequences" in err and "camdata_left" in err
    assert _nothing_written(tmp_path, "o")


def test_bad_checkpoints(tmp_path, capsys):
    for ckpt, msg in (("baseline:median", "unknown baseline"), (str(tmp_path / "missing"), "not found")):
        rc = run_cli(["eval", "predict", *SYNTH, "--ckpt", ckpt, "--out", str(tmp_path / "o")])
        assert rc == 2 and msg in capsys.readouterr().err
        assert _nothing_written(tmp_path, "o")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    rc = run_cli(["eval", "predict", *SYNTH, "--ckpt", str(broken), "--out", str(tmp_path / "o")])
    assert rc == 2 and _nothing_written(tmp_path, "o")


def test_bad_size(tmp_path, capsys):
    rc = run_cli(["eval", "predict", "--benchmark", "synthetic-dynamic", "--size", "50", "--ckpt", "baseline:oracle",
                  "--out", str(tmp_path / "o")])
    assert rc == 2 and "multiple of 16" in capsys.readouterr().err and _nothing_written(tmp_path, "o")


def test_existing_output_refused_then_overwritten(oracle_pred, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = run_cli(["eval", "predict", *SYNTH, "--ckpt", "baseline:identity-pose", "--out", str(out)])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    assert run_cli(["eval", "predict", *SYNTH, "--ckpt", "baseline:identity-pose", "--out", str(out),
                    "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "manifest.json").is_file()
    assert not list(tmp_path.glob(".o.*"))


def test_failure_mid_run_leaves_nothing(tmp_path, monkeypatch):
    from mem4d.eval import baselines

    calls = []
    original = baselines.Oracle.run

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash on the second sequence")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(baselines.Oracle, "run", flaky)
    out = tmp_path / "new" / "deeper" / "o"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_cli(["eval", "predict", *SYNTH, "--ckpt", "baseline:oracle", "--out", str(out)])
    assert len(calls) == 2
    assert not (tmp_path / "new").exists()  # parents it created are removed too


# -- score --------------------------------------------------------------------------------------


def test_score_frame_count_mismatch(pred_copy, tmp_path, capsys):
    pred, manifest = pred_copy
    path = pred / manifest["sequences"][1]["file"]
    with np.load(path) as z:
        cut = {k: z[k][:-1] for k in ("depth", "conf", "cam2world", "intrinsics", "frame_ids", "frame_time_s")}
    _rewrite(path, **cut)
    rc = run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "6 frames" in err and "does not match" in err
    assert _nothing_written(tmp_path, "r")


def test_score_shape_and_id_mismatch(pred_copy, tmp_path, capsys):
    pred, manifest = pred_copy
    path = pred / manifest["sequences"][0]["file"]
    with np.load(path) as z:
        depth, ids = z["depth"], z["frame_ids"]
    _rewrite(path, depth=depth[:, :32])
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r")]) == 2
    assert "the manifest says 48x64" in capsys.readouterr().err
    _rewrite(path, depth=depth, frame_ids=ids[::-1])
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r")]) == 2
    assert "frame ids" in capsys.readouterr().err
    _rewrite(path, frame_ids=ids, cam2world=np.full((6, 4, 4), np.nan))
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r")]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert _nothing_written(tmp_path, "r")


def test_score_corrupt_or_missing_files(pred_copy, tmp_path, capsys):
    pred, manifest = pred_copy
    (pred / manifest["sequences"][1]["file"]).write_bytes(b"PK\x03\x04 definitely not a zip")
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r")]) == 2
    assert "corrupt" in capsys.readouterr().err
    (pred / manifest["sequences"][1]["file"]).unlink()
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r")]) == 2
    assert "missing" in capsys.readouterr().err
    (pred / "manifest.json").write_text("{not json")
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r")]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert run_cli(["eval", "score", "--pred", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err
    assert _nothing_written(tmp_path, "r")


def test_score_warns_when_ground_truth_changed(pred_copy, tmp_path, capsys):
    pred, manifest = pred_copy
    manifest["sequences"][0]["gt_fingerprint"] = "0" * 16
    (pred / "manifest.json").write_text(json.dumps(manifest))
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "ground truth differs" in capsys.readouterr().err
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert len(results["warnings"]) == 1
    assert run_cli(["eval", "score", "--pred", str(pred), "--out", str(tmp_path / "r"), "--quiet"]) == 2
