"""scripts/gpu_burst.sh, run on the CPU for a few steps: it trains from the given weights, stops at
its time limit, and leaves float16 weights (sharded) and metrics.jsonl under $OUT."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def test_burst_script_trains_and_returns_weights_and_metrics(tmp_path):
    from mem4d.config import Mem4DConfig
    from mem4d.model.mem4d import Mem4D

    torch.manual_seed(0)
    Mem4D(Mem4DConfig.tiny()).save_pretrained(tmp_path / "init")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "MEM4D_BURST_DEVICE": "cpu", "PYTHON": sys.executable}
    overrides = ["train.batch_size=1", "train.amp=off", "data.image_size=[32,48]", "data.num_frames=2",
                 "data.max_frames=3", "data.val_scenes=1", "data.val_frames=3", "train.log_every=1", "train.steps=3"]
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_burst.sh"), "configs/gpu-burst.yaml", "5",
                           str(tmp_path / "init"), *overrides], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    assert any("val/ate" in r for r in rows)
    model = Mem4D.from_pretrained(out / "weights")
    assert model.config.heads.camera_pose == "procrustes"
    files = list((out / "weights").iterdir())
    assert all(f.stat().st_size < 16 * 2**20 for f in files)
    assert "torch" in (out / "environment.txt").read_text()
