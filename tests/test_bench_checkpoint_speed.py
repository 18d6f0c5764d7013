"""bench/bench_checkpoint_speed.py: every setting is measured in every pass, and ratios are to the first."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mem4d.config import Mem4DConfig
from mem4d.model.mem4d import Mem4D


@pytest.fixture(scope="module")
def bench(bench_script):
    return bench_script("bench_checkpoint_speed")


def _save(path: Path, refinement: str) -> str:
    torch.manual_seed(0)
    cfg = Mem4DConfig.tiny()
    Mem4D(dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, pose_refinement=refinement))).save_pretrained(path)
    return str(path)


def test_alternating_passes_and_the_refinement_off_variant(bench, tmp_path):
    refined, plain = _save(tmp_path / "refined", "photometric"), _save(tmp_path / "plain", "none")
    out = tmp_path / "speed.json"
    assert bench.main([refined, plain, "--size", "32x48", "--frames", "3", "--passes", "2", "--no-refinement-too",
                       "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["ckpt"], r["refinement"]) for r in rows] == [(refined, "photometric"), (refined, "none"), (plain, "none")]
    assert all(len(r["fps"]) == 2 and r["fps_median"] > 0 for r in rows)
    assert rows[0]["ratio_to_first"] == 1.0
    with pytest.raises(ValueError, match="frames"):
        bench.run([plain], (32, 48), frames=1)
