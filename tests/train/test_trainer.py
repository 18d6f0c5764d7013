"""The trainer: it learns, it resumes exactly after being killed, and DDP replicas agree."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mem4d.train.recipe import Recipe
from mem4d.train.trainer import train

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "tiny-synthetic.yaml"


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tiny_recipe_loss_falls_by_half(tmp_path):
    recipe = Recipe.from_yaml(TINY, ["train.tensorboard=false"])
    last = train(recipe, tmp_path / "run", progress=False)
    rows = [r for r in _rows(tmp_path / "run") if "loss" in r]
    first, final = rows[0]["loss"], rows[-1]["loss"]
    assert final < 0.5 * first, f"loss {first:.4f} -> {final:.4f}"
    assert {"step", "loss", "lr", "conf_world", "abs_trans"} <= set(rows[0])
    assert "val/abs_rel" in last and "val/ate" in last
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "checkpoints" / "latest").is_file()


def test_a_non_empty_run_folder_is_refused_without_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    recipe = Recipe.from_yaml(TINY, ["train.steps=1"])
    with pytest.raises(ValueError, match="--resume"):
        train(recipe, tmp_path / "run", progress=False)


def _train_cmd(out: Path, steps: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mem4d.cli.main", "train", "--config", str(TINY), "--out", str(out), "--no-progress",
        "--set", f"train.steps={steps}", "--set", "train.ckpt_every=4", "--set", "train.log_every=2",
        "--set", "train.tensorboard=false", "--set", "data.val_scenes=0", "--set", "train.threads=1", *extra,
    ]


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    steps = 12
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train_cmd(tmp_path / "straight", steps), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(killed, steps), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "checkpoints" / "step_0000004").is_dir():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoints" / "step_0000004").is_dir(), "no checkpoint before the kill"
    assert not (killed / "final").exists(), "the run finished before it was killed; the test proves nothing"
    subprocess.run(_train_cmd(killed, steps, "--resume"), check=True, env=env, capture_output=True)

    a = load_file(str(tmp_path / "straight" / "final" / "model.safetensors"))
    b = load_file(str(killed / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps_logged = [r["step"] for r in _rows(killed)]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == steps


def test_ddp_two_cpu_processes_keep_identical_replicas(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "mem4d.cli.main", "train", "--config", str(TINY), "--out", str(tmp_path / "ddp"), "--no-progress",
        "--set", "train.steps=3", "--set", "train.batch_size=1", "--set", "train.tensorboard=false",
        "--set", "data.val_scenes=0", "--set", "train.threads=1", "--set", "train.log_every=1",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    replicas = json.loads((tmp_path / "ddp" / "replicas.json").read_text())
    assert replicas["world_size"] == 2
    assert len(set(replicas["digests"])) == 1, "DDP replicas diverged"


def test_validation_survives_a_camera_that_only_rotates():
    from mem4d.config import Mem4DConfig
    from mem4d.data.synthetic import make_scene
    from mem4d.model.mem4d import Mem4D
    from mem4d.train.trainer import validate

    torch.manual_seed(0)
    model = Mem4D(Mem4DConfig.tiny())
    turning = make_scene(0, 4, image_size=(32, 48), camera_path="rotation")
    moving = make_scene(1, 4, image_size=(32, 48), camera_path="forward")
    row = validate(model, [turning], torch.device("cpu"))
    assert "val/ate" not in row and 0 <= row["val/delta1"] <= 1  # no Sim(3) alignment exists: skipped
    row = validate(model, [turning, moving], torch.device("cpu"))
    assert row["val/ate"] > 0 and model.training


def test_data_workers_make_the_same_clips_as_the_loop():
    from mem4d.train.batches import make_batches
    from mem4d.train.trainer import _batches

    recipe = Recipe.from_yaml(TINY, ["data.scenes=null", "data.max_frames=5"])
    data = make_batches(recipe.data, 2)
    inline = list(_batches(data, 3, 6, workers=0))
    ahead = list(_batches(data, 3, 6, workers=2))
    assert len(inline) == len(ahead) == 3
    for a, b in zip(inline, ahead):
        for sa, sb in zip(a, b):
            assert torch.equal(sa.images, sb.images) and torch.equal(sa.cam2world, sb.cam2world)


def test_a_time_limit_stops_with_a_checkpoint_and_final_weights(tmp_path):
    recipe = Recipe.from_yaml(TINY, ["train.steps=1000", "train.time_limit_min=0.0", "train.tensorboard=false",
                                     "data.val_scenes=0", "train.threads=1"])
    train(recipe, tmp_path / "run", progress=False)
    rows = _rows(tmp_path / "run")
    assert rows[-1]["step"] == 1  # the deadline had passed after the first step
    assert (tmp_path / "run" / "checkpoints" / "step_0000001").is_dir()
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    resumed = Recipe.from_yaml(TINY, ["train.steps=3", "train.tensorboard=false", "data.val_scenes=0", "train.threads=1"])
    train(resumed, tmp_path / "run", resume=True, progress=False)
    assert [r["step"] for r in _rows(tmp_path / "run") if "loss" in r][-1] == 3


def test_frozen_modules_keep_their_weights_while_the_rest_learns(tmp_path):
    from mem4d.model.mem4d import Mem4D

    frozen = ["encoder", "proj", "tca", "tdm", "psm", "decoder", "camera_token", "head_cam"]
    recipe = Recipe.from_yaml(TINY, ["train.steps=3", "train.tensorboard=false", "data.val_scenes=0",
                                     "train.threads=1", f"train.freeze={frozen}"])
    train(recipe, tmp_path / "run", progress=False)
    torch.manual_seed(recipe.train.seed)  # the same start as the run's
    from mem4d.train.trainer import build_model

    start, end = build_model(recipe).state_dict(), Mem4D.from_pretrained(tmp_path / "run" / "final").state_dict()
    same = {k: torch.equal(start[k], end[k]) for k in end}
    assert all(v for k, v in same.items() if k.split(".")[0] in frozen)
    assert not all(v for k, v in same.items() if k.split(".")[0] == "camera_head")
    with pytest.raises(ValueError, match="train.freeze names no module"):
        build_model(Recipe.from_yaml(TINY, ["train.freeze=[trunk]"]))


def test_stop_at_keeps_the_schedule_and_resumes_exactly(tmp_path):
    """train.stop_at=2 of a 4-step schedule, then --resume to 4, equals 4 steps in one go."""
    base = ["train.steps=4", "train.tensorboard=false", "data.val_scenes=0", "train.threads=1", "train.log_every=1"]
    train(Recipe.from_yaml(TINY, base + ["train.stop_at=2"]), tmp_path / "split", progress=False)
    rows = _rows(tmp_path / "split")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]
    assert (tmp_path / "split" / "checkpoints" / "step_0000002").is_dir()
    assert (tmp_path / "split" / "final" / "model.safetensors").is_file()
    train(Recipe.from_yaml(TINY, base), tmp_path / "split", resume=True, progress=False)
    train(Recipe.from_yaml(TINY, base), tmp_path / "whole", progress=False)
    split, whole = _rows(tmp_path / "split"), _rows(tmp_path / "whole")
    assert [r["lr"] for r in split if "loss" in r] == [r["lr"] for r in whole if "loss" in r]
    assert [r["loss"] for r in split if "loss" in r] == pytest.approx([r["loss"] for r in whole if "loss" in r], rel=1e-5)
