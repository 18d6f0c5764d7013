"""bench/bench_loop_corrected_trajectory.py: both trajectories scored alike; a closed loop's spread trajectory is closer."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def bench(bench_script):
    return bench_script("bench_loop_corrected_trajectory")


def test_a_loop_the_shipped_model_closes_scores_better_spread_than_streamed(bench, tmp_path):
    import torch

    out, before = tmp_path / "traj.json", torch.get_num_threads()
    try:
        assert bench.main(["--benchmarks", "loops", "--limit", "1", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(before)
    r = json.loads(out.read_text())["loops"]
    assert r["sequences"] == 1 and r["closures"] >= 1, r  # loop seed 0 closes onto frame 0 at frame 36
    assert r["loop_corrected"]["ate"] < r["streamed"]["ate"]
    assert r["loop_corrected"]["rpe_rot"] < r["streamed"]["rpe_rot"]  # no jump at the closing frame
