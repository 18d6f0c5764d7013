"""``mem4d bench``: runs a few frames of the tiny preset and checks the report's fields (never speed)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from mem4d.cli import bench


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mem4d")
    bench.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_bench_is_registered():
    from mem4d.cli.main import SUBCOMMANDS

    assert SUBCOMMANDS.get("bench") == "bench"


def test_bench_reports_latency_fps_memory_and_gemm(tmp_path, capsys, restore_threads):
    out = tmp_path / "bench.json"
    args = _parse(["--preset", "tiny", "--size", "32x48", "--frames", "5", "--warmup", "1", "--threads", "1",
                   "--checkpoints", "2,4", "--gemm-seconds", "0.05", "--json", str(out)])
    assert args.run(args) == 0
    text = capsys.readouterr().out
    assert "median ms" in text and "GEMM" in text and "threads=1" in text
    r = json.loads(out.read_text())
    assert r["preset"] == "tiny" and r["image_size"] == [32, 48] and r["batch"] == 1 and r["threads"] == 1
    assert r["device"] == "cpu" and r["dtype"] == "fp32" and r["warmup_frames"] == 1
    assert r["gemm_gflops"] > 0 and r["gflop_per_step"] > 0 and r["parameters"] > 0
    assert "load_average_start" in r and "omp_wait_policy" in r
    assert [c["at_frame"] for c in r["checkpoints"]] == [2, 4, 5]
    for row in r["checkpoints"]:
        for key in ("median_ms", "p90_ms", "p99_ms", "fps", "peak_rss", "rss", "state_bytes"):
            assert row[key] > 0, key
        assert row["median_ms"] <= row["p90_ms"] <= row["p99_ms"]
    assert r["all"]["frames"] == 5 and r["ramp"]["frames"] == 5 and r["steady"] is None
    # --profile output (not run here: starting the torch profiler alone takes ~5 s)
    r["profile"] = [{"name": "module::encoder", "total_ms_per_step": 1.0, "calls_per_step": 1},
                    {"name": "aten::addmm", "self_ms_per_step": 0.5, "calls_per_step": 12}]
    assert "module::encoder" in bench.format_report(r) and "aten::addmm" in bench.format_report(r)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--size", "30x32"], "multiples of the patch size"),
        (["--frames", "0"], "frames"),
        (["--dtype", "fp16"], "fp16"),
        (["--variant", "nope"], "variant"),
    ],
)
def test_bench_rejects_bad_arguments(argv, match, restore_threads):
    args = _parse(["--preset", "tiny", "--warmup", "0", "--threads", "1", *argv])
    with pytest.raises(ValueError, match=match):
        args.run(args)


def test_bench_size_is_the_long_side_or_hxw():
    assert _parse(["--size", "64"]).size == (48, 64)  # the long side, 3:4 as every synthetic scene
    assert _parse(["--size", "32x48"]).size == (32, 48)
    with pytest.raises(SystemExit):
        _parse(["--size", "big"])
