"""The ablation study plans the right runs, with the same recipe for every run but the variant and
the training seed, and refuses settings that would make its rows incomparable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mem4d.ablation.command import main
from mem4d.ablation.plan import (
    StudyRun,
    StudySettings,
    check_compatible,
    parse_seeds,
    plan_runs,
    recipe_sha256,
    training_overrides,
)
from mem4d.train.recipe import Recipe

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "ablation-tiny.yaml"
ALL = ("full", "unified", "no_tdm", "no_psm", "no_tca")


def _settings(**kw) -> StudySettings:
    base = dict(recipe_sha256=recipe_sha256(RECIPE), overrides=(), steps=100, camera_pose="procrustes", eval_size=128)
    return StudySettings(**{**base, **kw})


def test_default_plan_is_full_and_unified_twice_the_others_once():
    runs = plan_runs(ALL, parse_seeds(None, ALL))
    assert [r.name for r in runs] == ["full-s0", "unified-s0", "no_tdm-s0", "no_psm-s0", "no_tca-s0",
                                      "full-s1", "unified-s1"]


def test_seeds_per_variant():
    assert parse_seeds("full=3,no_psm=2", ("full", "unified", "no_psm"), default=1) == {"full": 3, "unified": 1,
                                                                                        "no_psm": 2}
    runs = plan_runs(("full", "no_psm"), {"full": 1, "no_psm": 2})
    assert runs == [StudyRun("full", 0), StudyRun("no_psm", 0), StudyRun("no_psm", 1)]
    for bad in ("full", "bogus=2", "full=0", "full=x"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad, ALL)
    with pytest.raises(ValueError, match="unknown variant"):
        plan_runs(("full", "dual"), {"full": 1})
    with pytest.raises(ValueError, match="twice"):
        plan_runs(("full", "full"), {"full": 1})


def test_runs_differ_only_in_variant_and_training_seed():
    settings = _settings(overrides=("data.image_size=[48,64]",), camera_pose="absolute", steps=37)
    a = Recipe.from_yaml(RECIPE, training_overrides(settings, StudyRun("full", 0))).to_dict()
    b = Recipe.from_yaml(RECIPE, training_overrides(settings, StudyRun("full", 1))).to_dict()
    c = Recipe.from_yaml(RECIPE, training_overrides(settings, StudyRun("unified", 0))).to_dict()
    assert a["train"]["steps"] == c["train"]["steps"] == 37
    assert a["data"] == b["data"] == c["data"] and a["data"]["image_size"] == (48, 64)  # same data seed stream
    assert a["model"]["overrides"]["heads"]["camera_pose"] == "absolute"
    assert (a["train"]["seed"], b["train"]["seed"]) == (0, 1)
    assert {k: v for k, v in a["train"].items() if k != "seed"} == {k: v for k, v in b["train"].items() if k != "seed"}
    assert (a["model"]["overrides"]["variant"], c["model"]["overrides"]["variant"]) == ("full", "unified")
    a["model"]["overrides"]["variant"] = "unified"
    assert a == c
    assert a["model"]["init_from"] is None  # every variant from scratch


def test_settings_refuse_what_the_study_sets():
    for key in ("train.seed=3", "train.steps=5", "model.overrides.variant=full", "model.init_from=x"):
        with pytest.raises(ValueError, match="the study sets it"):
            _settings(overrides=(key,))
    with pytest.raises(ValueError, match="camera-pose"):
        _settings(camera_pose="chained")
    with pytest.raises(ValueError, match="multiple of 16"):
        _settings(eval_size=100)


def test_a_rerun_must_match_the_plan(tmp_path):
    stored = _settings().to_dict()
    check_compatible(json.loads(json.dumps(stored)), _settings(), tmp_path)  # the same settings through JSON
    with pytest.raises(ValueError, match=r"steps: 100 in the study, 200 now.*bench/ablation.py --steps 100"):
        check_compatible(stored, _settings(steps=200), tmp_path, ["bench/ablation.py", "--steps", "100"])
    assert StudySettings.from_dict(json.loads(json.dumps(stored))) == _settings()


def test_command_bad_input_exits_2(tmp_path, capsys):
    study = tmp_path / "study"
    assert main(["--config", str(RECIPE), "--study", str(study), "--variants", "full,dual"]) == 2
    assert "unknown variant" in capsys.readouterr().err
    assert main(["--config", str(RECIPE), "--study", str(study), "--set", "train.seed=4"]) == 2
    assert "the study sets it" in capsys.readouterr().err
    assert main(["--config", str(RECIPE), "--study", str(study), "--benchmarks", "nope"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml"), "--study", str(study)]) == 2
    assert "not found" in capsys.readouterr().err
    assert not study.exists()  # nothing written on bad input


def test_a_recipe_that_starts_from_weights_is_refused(tmp_path, capsys):
    code = main(["--config", str(REPO / "configs" / "procrustes-tiny.yaml"), "--study", str(tmp_path / "s"),
                 "--variants", "full", "--no-train"])
    assert code == 2
    assert "from scratch" in capsys.readouterr().err
