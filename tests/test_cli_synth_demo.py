"""`mem4d synth` and `mem4d demo`, run in-process through `mem4d.cli.main.main` (plus one real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mem4d.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def test_synth_writes_the_cut3r_layout(tmp_path, capsys):
    out = tmp_path / "synth"
    rc = main(["synth", str(out), "--num-scenes", "2", "--frames", "3", "--size", "32x48", "--seed", "5"])
    assert rc == 0
    scenes = sorted(p.name for p in out.iterdir())
    assert scenes == ["synth_000005", "synth_000006"]  # no temporary folders left behind
    scene = out / scenes[0]
    for sub in ("rgb", "depth", "cam", "dynamic_mask", "instance"):
        assert min(p.name for p in (scene / sub).iterdir()).startswith("000000.")
        assert len(list((scene / sub).iterdir())) == 3
    rgb = np.asarray(Image.open(scene / "rgb" / "000002.png"))
    assert rgb.shape == (32, 48, 3) and rgb.dtype == np.uint8
    depth = np.load(scene / "depth" / "000001.npy")
    assert depth.shape == (32, 48) and depth.dtype == np.float32 and (depth > 0).mean() > 0.3
    cam = np.load(scene / "cam" / "000000.npz")
    assert set(cam.files) == {"pose", "intrinsics"}
    assert cam["pose"].shape == (4, 4) and cam["intrinsics"].shape == (3, 3)
    np.testing.assert_allclose(cam["pose"], np.eye(4), atol=1e-6)
    inst = Image.open(scene / "instance" / "000000.png")
    assert inst.mode.startswith("I")  # 16-bit
    meta = json.loads((scene / "meta.json").read_text())
    assert meta["meta"]["seed"] == 5
    assert "wrote 2 scene(s)" in capsys.readouterr().out


def test_synth_static_scene_flow_and_overwrite(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["synth", str(out), "--frames", "2", "--size", "16x24", "--static", "--scene-flow", "--camera-path", "orbit"]
    assert main(args) == 0
    scene = out / "synth_000000"
    assert not np.asarray(Image.open(scene / "dynamic_mask" / "000000.png")).any()
    assert np.load(scene / "scene_flow" / "000000.npy").shape == (16, 24, 3)
    # existing scenes are not replaced silently
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--size", "10x10"], "between"),
        (["--size", "foo"], "HxW"),
        (["--frames", "0"], "--frames"),
        (["--num-scenes", "0"], "--num-scenes"),
        (["--num-objects", "7"], "--num-objects"),
        (["--noise", "-1"], "--noise"),
    ],
)
def test_synth_bad_arguments_fail_cleanly(tmp_path, capsys, bad, message):
    out = tmp_path / "never"
    assert main(["synth", str(out), *bad]) == 2
    err = capsys.readouterr().err
    assert "mem4d synth: error:" in err and message in err
    assert not out.exists()


def test_an_unwritable_output_path_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["synth", str(blocker / "out"), "--frames", "2", "--size", "32x32"]) == 2
    err = capsys.readouterr().err
    assert "mem4d synth: error: Not a directory" in err and str(blocker / "out") in err
    assert "Traceback" not in err


def test_synth_unknown_choice_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(tmp_path / "x"), "--camera-path", "zigzag"])
    assert exc.value.code == 2
    assert not (tmp_path / "x").exists()


def test_cli_choices_match_the_generator():
    from mem4d.cli import synth
    from mem4d.data import synthetic

    assert synth.PATH_KINDS == synthetic.PATH_KINDS
    assert synth.ENVIRONMENTS == synthetic.ENVIRONMENTS


@pytest.fixture
def no_shipped_model(tmp_path, monkeypatch):
    """The demo sees no shipped model, whether or not this checkout has one."""
    from mem4d.model import pretrained

    monkeypatch.setattr(pretrained, "DEFAULT_DIR", tmp_path / "no-weights")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained tiny model saved with save_pretrained."""
    import torch

    from mem4d.config import Mem4DConfig
    from mem4d.model.mem4d import Mem4D

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    Mem4D(Mem4DConfig.tiny()).save_pretrained(path)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_demo_writes_its_files(tmp_path, capsys, no_shipped_model):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "4", "--size", "48x64"]) == 0
    for t in range(4):
        assert (out / "frames" / f"{t:06d}.png").exists()
        assert (out / "depth" / f"{t:06d}.png").exists()
        assert np.load(out / "depth" / f"{t:06d}.npy").shape == (48, 64)
        assert (out / "dynamic_mask" / f"{t:06d}.png").exists()
    plot = Image.open(out / "camera_path.png")
    assert plot.size[0] > 300
    assert np.asarray(Image.open(out / "depth" / "000000.png")).shape == (48, 64, 3)
    assert json.loads((out / "scene.json").read_text())["num_frames"] == 4
    assert not (out / "reconstruction").exists()
    report = (out / "report.html").read_text()
    assert "No trained model ships with mem4d yet" in report and "configs/ship-tiny.yaml" in report
    assert report.count("data:image/png;base64,") >= 4 * 3 + 2  # frame strips, trajectory, scene plot
    assert "http://" not in report and "https://" not in report  # self-contained
    assert json.loads((out / "demo.json").read_text())["ckpt"] is None
    printed = capsys.readouterr().out
    assert "camera_path.png" in printed and str(out) in printed and "report.html" in printed
    assert "NO TRAINED MODEL" in printed
    assert "mem4d train --config configs/ship-tiny.yaml --out runs/ship" in printed
    assert "mem4d demo --ckpt runs/ship/final" in printed
    assert _leftovers(tmp_path) == []


def test_demo_with_a_checkpoint_reconstructs_and_scores(tmp_path, capsys, tiny_ckpt):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--ckpt", str(tiny_ckpt), "--frames", "4", "--size", "48x64"]) == 0
    recon = out / "reconstruction"
    lines = [x for x in (recon / "trajectory.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert len(lines) == 4
    assert json.loads((recon / "meta.json").read_text())["complete"] is True
    assert np.load(recon / "depth" / "000003.npy").shape == (48, 64)
    assert (out / "frames" / "000003.png").exists()  # the input stays next to it
    report = (out / "report.html").read_text()
    for text in ("AbsRel (scale)", "AbsRel (metric)", "ATE (m)", "RPE rot", "baseline:constant-depth",
                 "predicted depth", "Sim(3)", "mem4d view", "depth colour scale", "Moving-pixel map"):
        assert text in report, text
    assert "http://" not in report and "https://" not in report
    rows = json.loads((out / "metrics.json").read_text())
    assert [r["name"] for r in rows] == ["mem4d", "baseline:constant-depth"]
    assert rows[1]["scale_abs_rel"] > 0 and rows[1]["ate"] > 0
    captured = capsys.readouterr()
    printed = captured.out
    assert ".partial-" not in printed + captured.err  # no internal temporary folder is named
    assert "AbsRel (scale)" in printed and "baseline:constant-depth" in printed and "Moving-pixel map" in printed
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in recon.iterdir())
    assert f"docs/OUTPUTS.md): {' '.join(written)}" in printed  # the listing is what was written
    assert f"mem4d view {recon}" in printed
    assert "NO TRAINED MODEL" not in printed
    assert _leftovers(tmp_path) == []


def test_demo_uses_the_shipped_model_and_reruns_in_place(tmp_path, capsys, tiny_ckpt, monkeypatch):
    from mem4d.model import pretrained

    monkeypatch.setattr(pretrained, "DEFAULT_DIR", tiny_ckpt)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "3", "--size", "48x64"]
    assert main(args + ["--no-model"]) == 0
    assert not (out / "reconstruction").exists()
    capsys.readouterr()
    # an earlier demo result is replaced without --overwrite (make demo is run again and again)
    assert main(args) == 0
    assert (out / "reconstruction" / "trajectory.txt").exists()
    assert json.loads((out / "demo.json").read_text())["ckpt"] == "default"
    assert "shipped with mem4d" in capsys.readouterr().out
    assert _leftovers(tmp_path) == []


def test_demo_refuses_a_foreign_folder_without_overwrite(tmp_path, capsys, no_shipped_model):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    args = ["demo", "--out", str(out), "--frames", "2", "--size", "32x48"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "thesis.tex").exists()
    assert main(args + ["--overwrite"]) == 0
    assert not (out / "thesis.tex").exists() and (out / "report.html").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["demo", "--out", str(empty), "--frames", "2", "--size", "32x48"]) == 0


@pytest.mark.parametrize(
    "ckpt_kind, message",
    [("missing", "does not exist"), ("empty", "config.json"), ("file", "is a file"), ("default", "mem4d train")],
)
def test_demo_bad_ckpt_exits_2(tmp_path, capsys, no_shipped_model, ckpt_kind, message):
    if ckpt_kind == "missing":
        ckpt = str(tmp_path / "nowhere")
    elif ckpt_kind == "empty":
        (tmp_path / "empty").mkdir()
        ckpt = str(tmp_path / "empty")
    elif ckpt_kind == "file":
        (tmp_path / "weights.bin").write_bytes(b"x")
        ckpt = str(tmp_path / "weights.bin")
    else:
        ckpt = "default"
    out = tmp_path / "d"
    assert main(["demo", "--out", str(out), "--ckpt", ckpt, "--frames", "2", "--size", "48x64"]) == 2
    err = capsys.readouterr().err
    assert "mem4d demo: error:" in err and message in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_demo_size_must_suit_the_model(tmp_path, capsys, tiny_ckpt):
    assert main(["demo", "--out", str(tmp_path / "d"), "--ckpt", str(tiny_ckpt), "--size", "40x64"]) == 2
    assert "patch size" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_bad_size(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--size", "1x1"]) == 2
    assert "--size" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_console_script_help():
    exe = Path(sys.executable).parent / "mem4d"
    result = subprocess.run([str(exe), "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "synth" in result.stdout and "demo" in result.stdout
    result = subprocess.run([str(exe), "synth", "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--num-scenes" in result.stdout


def test_demo_lists_only_what_was_written(tmp_path, capsys, tiny_ckpt, monkeypatch):
    """Without trimesh, scene.glb is skipped: neither the printed listing nor the report promises it."""
    from mem4d.viz import glb

    def missing():
        raise glb.TrimeshMissing("scene.glb needs trimesh: pip install 'mem4d[export]'")

    monkeypatch.setattr(glb, "_trimesh", missing)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--ckpt", str(tiny_ckpt), "--frames", "3", "--size", "64"]) == 0
    assert not (out / "reconstruction" / "scene.glb").exists()
    printed = capsys.readouterr().out
    assert "scene.glb" not in printed and "static.ply" in printed
    report = (out / "report.html").read_text()
    assert "scene.glb" not in report and "<code>static.ply</code>" in report
