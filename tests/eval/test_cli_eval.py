"""The `mem4d eval` subcommand: registration, parser, `list`, `table` (in-process)."""

from __future__ import annotations

import argparse
import json

import pytest

from mem4d.cli.main import main as run_cli


def test_eval_is_registered():
    from mem4d.cli.main import SUBCOMMANDS

    assert SUBCOMMANDS.get("eval") == "eval"


def test_parser_protocol():
    from mem4d.cli import eval as cli_eval

    parser = argparse.ArgumentParser()
    cli_eval.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "predict", "--benchmark", "sintel", "--ckpt", "default", "--out", "x",
                              "--limit-seqs", "2", "--max-frames", "6", "--size", "64", "--device", "cpu"])
    assert args.run is cli_eval.run and args.limit_seqs == 2 and args.max_frames == 6 and args.size == 64
    args = parser.parse_args(["eval", "score", "--pred", "p", "--out", "r", "--data-root", "d"])
    assert args.pred == "p" and args.data_root == "d"


def test_stage_required(capsys):
    assert run_cli(["eval"]) == 2
    assert "predict" in capsys.readouterr().out


@pytest.mark.parametrize("stage", ["predict", "score"])
def test_stage_help(stage, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(["eval", stage, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out and ("--limit-seqs" in out if stage == "predict" else "--pred" in out)


def test_list(capsys):
    from mem4d.eval.benchmarks import BENCHMARKS

    assert run_cli(["eval", "list"]) == 0
    out = capsys.readouterr().out
    for name in BENCHMARKS:
        assert name in out


def test_table_errors(tmp_path, capsys):
    assert run_cli(["eval", "table", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "results.json").write_text(json.dumps({"kind": "something else"}))
    assert run_cli(["eval", "table", str(tmp_path)]) == 2
    assert "not a mem4d results.json" in capsys.readouterr().err


def test_table_with_published_reference_row(tmp_path):
    from mem4d.eval.report import render_tables

    base = {"kind": "mem4d-eval-results", "run": {"limited": False}}
    results = [
        {**base, "method": "ours", "benchmark": {"name": "tum-dynamics"},
         "published": {"pose": {"ate": 0.061, "rpe_trans": 0.020, "rpe_rot": 0.517}},
         "pose": {"dataset": {"ate": 0.1, "rpe_trans": 0.05, "rpe_rot": 1.0}}},
        {**base, "method": "ours", "benchmark": {"name": "bonn"},
         "published": {"depth": {"scale": {"abs_rel": 0.072, "delta1": 0.957}}},
         "depth": {"scale": {"dataset": {"abs_rel": 0.2, "delta1": 0.7}}}},
    ]
    text = render_tables(results)
    assert "| Mem4D (paper) | 0.061 | 0.020 | 0.517 |" in text
    assert "| Per-sequence scale | Mem4D (paper) | 0.072 | 95.7 |" in text
    assert "| Per-sequence scale | ours | 0.200 | 70.0 |" in text
    assert "TUM-dynamics ATE ↓" in text and "Bonn Abs Rel ↓" in text
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.json").write_text(json.dumps(results[0]))
    assert run_cli(["eval", "table", str(tmp_path / "a"), "--out", str(tmp_path / "t.md")]) == 0
    assert "Mem4D (paper)" in (tmp_path / "t.md").read_text()
