"""What every command shares: the --size convention, --threads, --device defaults and help texts (issue 14)."""

from __future__ import annotations

import argparse
import importlib.metadata
import re
from pathlib import Path

import pytest

from mem4d.cli.main import build_parser, main
from mem4d.cli.sizes import format_hw, long_side_only, parse_size, synthetic_size
from mem4d.cli.threads import default_threads, parse_threads, passive_waiting, prefer_passive_waiting

REPO = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _commands() -> dict[str, argparse.ArgumentParser]:
    top = _subparsers(build_parser())
    out = {name: p for name, p in top.items() if name not in ("eval", "scene")}
    out.update({f"eval {n}": p for n, p in _subparsers(top["eval"]).items()})
    out.update({f"scene {n}": p for n, p in _subparsers(top["scene"]).items()})
    return out


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_size_is_the_long_side_everywhere():
    assert parse_size("128") == 128 and parse_size("96x128") == (96, 128)
    assert synthetic_size("128") == (96, 128) and synthetic_size("256") == (192, 256)
    assert synthetic_size("512") == (384, 512) and synthetic_size("40x64") == (40, 64)
    assert long_side_only("256") == 256 and long_side_only(None) is None
    with pytest.raises(ValueError, match="long side only"):
        long_side_only("96x128")
    with pytest.raises(ValueError, match="long side in pixels"):
        parse_size("big")
    assert format_hw(96, 128) == "96x128"
    for name, parser in _commands().items():
        size = _option(parser, "--size")
        if size is None:
            continue
        text = " ".join((size.help or "").split())
        assert "long side" in text, (name, text)  # one meaning of a number in every command
        if size.default is not None:
            assert re.fullmatch(r"\d+", str(size.default)), (name, size.default)


def test_synthetic_commands_take_the_long_side(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "s"), "--frames", "1", "--size", "64"]) == 0
    assert "1 frame at 48x64 (HxW)" in capsys.readouterr().out
    from PIL import Image

    rgb = Image.open(tmp_path / "s" / "synth_000000" / "rgb" / "000000.png")
    assert rgb.size == (64, 48)  # PIL says (W, H)
    from mem4d.cli import bench

    p = argparse.ArgumentParser()
    bench.add_parser(p.add_subparsers())
    assert p.parse_args(["bench", "--size", "256"]).size == (192, 256)


def test_threads_default_every_core_when_idle_threads_sleep_else_one_free_and_one_on_two_cores():
    assert default_threads(4, passive=True) == 4 and default_threads(16, passive=True) == 16
    assert default_threads(4, passive=False) == 3 and default_threads(16, passive=False) == 15
    assert default_threads(2, passive=True) == 1 and default_threads(2, passive=False) == 1
    assert default_threads(1, passive=False) == 1 and default_threads(1, passive=True) == 1
    assert passive_waiting({"OMP_WAIT_POLICY": "passive"}) and not passive_waiting({})
    assert parse_threads("auto") is None and parse_threads("3") == 3
    for bad in ("0", "-2", "many"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_threads(bad)
    env: dict[str, str] = {}
    prefer_passive_waiting(env, torch_loaded=False)  # the console script, before torch is imported
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    prefer_passive_waiting(env, torch_loaded=False)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}  # the user's setting wins
    env = {}
    prefer_passive_waiting(env, torch_loaded=True)  # too late: OpenMP has read its environment
    assert env == {}


def test_the_console_script_sets_passive_waiting_before_torch_loads():
    import os
    import subprocess
    import sys

    # what main() does before a subcommand runs: torch must not be loaded yet, or OpenMP ignores the setting
    code = ("import os, sys; from mem4d.cli import main as m; m.prefer_passive_waiting(); m.build_parser(); "
            "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "PASSIVE"]


def test_commands_that_run_the_model_share_threads_and_device_options():
    commands = _commands()
    for name in ("reconstruct", "demo", "eval predict"):
        threads = _option(commands[name], "--threads")
        assert threads is not None and threads.default is None, name  # None = auto
        assert "auto" in threads.help and "OMP_WAIT_POLICY=PASSIVE" in threads.help, name
    devices = {name: _option(p, "--device").default for name, p in commands.items() if _option(p, "--device")}
    assert set(devices) >= {"reconstruct", "demo", "eval predict", "bench"}
    assert set(devices.values()) == {"auto"}, devices


def test_help_texts(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    scene_help = " ".join(re.search(r"^\s+scene\s+(.*?)^\s+\w+\s\s", top, flags=re.M | re.S).group(1).split())
    assert "stats" in scene_help and "inspect" not in scene_help  # names the verbs the command has
    commands = _commands()
    assert "counts" in (commands["scene stats"].description or "")
    assert "tiny" in (_option(commands["bench"], "--preset").help or "")
    ckpt_help = " ".join(_option(commands["eval predict"], "--ckpt").help.split())
    assert "baseline:oracle (the ground truth itself" in ckpt_help
    for name, parser in commands.items():
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"{name} {action.option_strings} has no help"


def test_make_demo_installs_what_the_demo_writes_and_opens():
    """`make demo` (the Makefile's main target) installs the extras behind scene.glb and `mem4d view`."""
    makefile = (REPO / "Makefile").read_text()
    extras = re.search(r"^MAIN_EXTRAS\s*:?=\s*(\S+)", makefile, flags=re.M).group(1).split(",")
    assert '-e ".[$(MAIN_EXTRAS)]"' in makefile
    requirements = importlib.metadata.requires("mem4d") or []
    provided = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in requirements
                if any(f'extra == "{e}"' in r for e in extras)}
    assert {"trimesh", "viser"} <= provided, provided


def test_an_unwritable_out_is_an_input_error_in_every_command(tmp_path, monkeypatch, capsys):
    import os

    out = tmp_path / "read-only" / "out"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only place (root ignores chmod)
    for argv in (["demo", "--out", str(out), "--no-model", "--frames", "2", "--size", "64"],
                 ["eval", "predict", "--benchmark", "synthetic-dynamic", "--ckpt", "baseline:oracle", "--out", str(out)],
                 ["eval", "score", "--pred", str(tmp_path), "--out", str(out)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"--out {out}" in err and "permission denied" in err and ".partial-" not in err, err
    assert not out.parent.exists()
