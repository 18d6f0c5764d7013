"""scripts/reproduce_default_model.sh: every stage's command is a valid recipe, and the stages chain
(each starts from the one before), so the shipped model's recipe stays re-runnable from the repo."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from mem4d.train.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "reproduce_default_model.sh"


def _commands(runs: Path, *args: str) -> list[list[str]]:
    out = subprocess.run(["bash", str(SCRIPT), str(runs), *args], env={**os.environ, "DRY_RUN": "1"},
                         capture_output=True, text=True, check=True).stdout
    return [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("+ ")]


def _trainings(commands: list[list[str]]) -> list[tuple[str, Recipe]]:
    runs = []
    for c in commands:
        if "train" in c and "--config" in c:
            sets = [c[i + 1] for i, a in enumerate(c) if a == "--set"]
            runs.append((c[c.index("--out") + 1], Recipe.from_yaml(c[c.index("--config") + 1], sets)))
    return runs


@pytest.mark.parametrize("args", [(), ("--from-scratch",)])
def test_every_stage_is_a_valid_recipe_and_starts_from_the_one_before(tmp_path, args):
    runs = _trainings(_commands(tmp_path, *args))
    names = [Path(out).name for out, _ in runs]
    assert names[-8:] == ["si", "sih", "sih3", "mr", "mi", "mi3", "mp", "mp2"]
    assert len(names) == (10 if args else 8)
    inits = {Path(out).name: r.model.init_from for out, r in runs}
    assert inits["si"] == str(tmp_path / "previous-default")
    assert inits["sih"] == str(tmp_path / "si" / "final") and inits["sih3"] == str(tmp_path / "sih" / "final")
    assert inits["mr"] == str(tmp_path / "sih3" / "final") and inits["mi"] == str(tmp_path / "mr" / "final")
    assert inits["mi3"] == str(tmp_path / "mi" / "final") and inits["mp"] == str(tmp_path / "mi3" / "final")
    assert inits["mp2"] == str(tmp_path / "mp" / "final")
    recipes = dict((Path(out).name, r) for out, r in runs)
    assert (recipes["si"].train.stop_at, recipes["si"].train.steps) == (500, 2000)
    assert (recipes["sih3"].train.stop_at, recipes["sih3"].train.steps) == (700, 1000)
    assert recipes["sih3"].loss.flow == 1.0 and recipes["si"].loss.scale_invariant == 1.0
    assert recipes["mr"].model.overrides["heads"]["motion_refine"] is True and recipes["mr"].train.steps == 2000
    assert (recipes["mi"].loss.motion_iou, recipes["mi"].loss.motion_pos_weight, recipes["mi"].train.steps) == (1.0, 1.0, 1000)
    assert recipes["mi3"].loss.motion_iou == 1.0 and list(recipes["mi3"].data.sizes.long_side) == [64, 256]
    assert recipes["mp"].model.overrides["heads"]["motion_photometric"] is True and recipes["mp"].train.steps == 1000
    assert (recipes["mp2"].train.steps, recipes["mp2"].data.seed) == (600, 9191)


def test_the_start_is_in_the_repositorys_history():
    commit = next(line.split("=")[1].split()[0] for line in SCRIPT.read_text().splitlines()
                  if line.startswith("PREVIOUS_COMMIT="))
    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout (the script needs the repository's history)")
    for f in ("config.json", "model.safetensors"):
        subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}:src/mem4d/weights/default/{f}"], check=True)


def test_an_unknown_option_is_refused(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), str(tmp_path), "--fast"], capture_output=True, text=True,
                          env={**os.environ, "DRY_RUN": "1"})
    assert proc.returncode == 2 and "--from-scratch" in proc.stderr


def test_the_last_step_ships_with_the_shipped_models_inference_settings(tmp_path):
    """The ship command's flags record the heads settings the shipped config carries (the
    refinement's options are inference settings: a re-run must turn on the same ones)."""
    import json

    from mem4d.model.pretrained import CONFIG_NAME, DEFAULT_DIR

    ship = next(c for c in _commands(tmp_path) if any(a.endswith("ship_default_model.py") for a in c))
    heads = json.loads((DEFAULT_DIR / CONFIG_NAME).read_text())["mem4d_config"]["heads"]
    assert ship[ship.index("--pose-refinement") + 1] == heads["pose_refinement"]
    assert ("--refine-probes" in ship) == heads.get("refine_probes", False)
    assert ("--refine-focal" in ship) == heads.get("refine_focal", False)
    assert ("--loop-closure" in ship) == heads.get("loop_closure", False)
