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


def test_demo_writes_its_files(tmp_path, capsys):
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
    printed = capsys.readouterr().out
    assert "camera_path.png" in printed and str(out) in printed


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
