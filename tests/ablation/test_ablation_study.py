"""A study end to end with a stand-in trainer (tiny models at 32x32, one short benchmark): every
planned run is trained with its own overrides, scored, timed and tabulated; a rerun skips what is
done and resumes what is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mem4d.ablation.loop_probe import LoopProbeSettings
from mem4d.ablation.plan import StudyRun, StudySettings, plan_runs, recipe_sha256
from mem4d.ablation.speed import interleaved_speed
from mem4d.ablation.study import Study, run_status, run_study
from mem4d.config import Mem4DConfig
from mem4d.model.mem4d import Mem4D
from mem4d.train.recipe import Recipe
from mem4d.train.trainer import build_model

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "ablation-tiny.yaml"
STEPS = 6


def _settings(**kw) -> StudySettings:
    base = dict(recipe_sha256=recipe_sha256(RECIPE), overrides=("data.image_size=[32,32]",), steps=STEPS,
                camera_pose="absolute", eval_size=32, benchmarks=("synthetic-dynamic",), limit_seqs=1, max_frames=3,
                probe=LoopProbeSettings(scenes=1, frames=22, loop_frames=16), speed_frames=15, speed_rounds=1,
                floors=False)
    return StudySettings(**{**base, **kw})


class FakeTrainer:
    """Builds the model the run's recipe describes (so the overrides are real) and writes what a
    finished `mem4d train` leaves: a checkpoint at the budget and final/. ``stop_at`` simulates a
    run killed after its checkpoint at that step (exit status 1)."""

    def __init__(self, stop_at: dict[str, int] | None = None):
        self.calls: list[tuple[str, bool]] = []
        self.stop_at = stop_at or {}

    def __call__(self, recipe: Path, out: Path, overrides: list[str], resume: bool, log_path: Path) -> int:
        self.calls.append((out.name, resume))
        r = Recipe.from_yaml(recipe, overrides)
        step = self.stop_at.pop(out.name, r.train.steps)
        ckpt = out / "checkpoints" / f"step_{step:07d}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "trainer.json").write_text(json.dumps({"step": step}))
        (out / "checkpoints" / "latest").write_text(ckpt.name)
        (out / "metrics.jsonl").write_text(json.dumps({"step": step, "loss": 1.0, "frames_per_s": 3.0}) + "\n")
        if step < r.train.steps:
            return 1
        log_path.write_text(" ".join(overrides))
        build_model(r).save_pretrained(out / "final")
        return 0


def test_study_trains_scores_and_resumes(tmp_path):
    runs = plan_runs(("full", "unified"), {"full": 2, "unified": 1})
    study = Study(tmp_path / "study", RECIPE, _settings(), runs)
    trainer = FakeTrainer(stop_at={"unified-s0": 2})
    with pytest.raises(RuntimeError, match="training unified-s0 failed"):
        run_study(study, trainer=trainer, log=lambda _m: None)
    assert trainer.calls == [("full-s0", False), ("unified-s0", False)]
    assert run_status(study.run_dir(StudyRun("unified", 0)), STEPS) == "partial"
    assert run_status(study.run_dir(StudyRun("full", 0)), STEPS) == "done"
    assert run_status(study.run_dir(StudyRun("full", 1)), STEPS) == "new"

    # the same study again: full-s0 is skipped, unified-s0 resumed, full-s1 started
    study = Study(tmp_path / "study", RECIPE, _settings(), runs)
    report = run_study(study, trainer=trainer, log=lambda _m: None)
    assert trainer.calls[2:] == [("unified-s0", True), ("full-s1", False)]
    assert report["complete"] and not report["pending"]
    for run in runs:
        final = Mem4D.from_pretrained(study.run_dir(run) / "final")
        assert (final.config.variant, final.config.heads.camera_pose) == (run.variant, "absolute")
        assert report["runs"][run.name]["metrics"]["dyn_abs_rel"] is not None
        assert report["runs"][run.name]["metrics"]["loop_drift"] is not None
    log = (study.directory / "logs" / "full-s1.log").read_text()
    assert "train.seed=1" in log and "model.overrides.variant=full" in log and f"train.steps={STEPS}" in log

    full = report["variants"]["full"]
    assert full["seeds"] == [0, 1] and full["metrics"]["dyn_abs_rel"]["n"] == 2
    values = [report["runs"][n]["metrics"]["ate"] for n in ("full-s0", "full-s1")]
    assert full["metrics"]["ate"]["mean"] == pytest.approx(sum(values) / 2)
    assert full["parameters"] == report["runs"]["full-s1"]["parameters"] > report["variants"]["unified"]["parameters"]
    assert report["variants"]["unified"]["cpu_ms_per_frame"] > 0
    assert json.loads((study.directory / "study.json").read_text())["variants"]["unified"]["seeds"] == [0]
    table = (study.directory / "table.md").read_text()
    assert "| full (TCA + TDM + PSM) | 0, 1 |" in table and "| unified memory | 0 |" in table

    # a third time: nothing is trained, scored or timed again
    stamps = {p: p.stat().st_mtime_ns for p in (study.directory / "eval").rglob("*.json")}
    stamps[study.directory / "speed.json"] = (study.directory / "speed.json").stat().st_mtime_ns
    again = run_study(Study(tmp_path / "study", RECIPE, _settings(), runs), trainer=trainer, log=lambda _m: None)
    assert len(trainer.calls) == 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["variants"]["full"]["metrics"] == report["variants"]["full"]["metrics"]
    assert not list(study.directory.rglob("*-pred"))  # predictions are deleted once scored


def test_subprocess_trainer_trains_the_run_it_is_given(tmp_path):
    """The real `mem4d train` child process, 2 steps at 32x32: the overrides reach it."""
    from mem4d.ablation.plan import training_overrides
    from mem4d.ablation.study import subprocess_trainer

    settings = _settings(steps=2, overrides=("data.image_size=[32,32]", "data.sizes.long_side=null",
                                             "data.val_scenes=0", "data.max_frames=2"))
    run = StudyRun("no_tca", 3)
    out, log = tmp_path / "run", tmp_path / "run.log"
    code = subprocess_trainer(RECIPE, out, training_overrides(settings, run), False, log)
    assert code == 0, log.read_text()
    assert run_status(out, 2) == "done"
    recipe = Recipe.from_yaml(out / "recipe.yaml")
    assert (recipe.train.seed, recipe.train.steps, recipe.model.overrides["variant"]) == (3, 2, "no_tca")
    assert Mem4D.from_pretrained(out / "final").config.heads.camera_pose == "absolute"


def test_a_rerun_with_another_budget_is_refused(tmp_path):
    runs = [StudyRun("full", 0)]
    Study(tmp_path / "s", RECIPE, _settings(), runs, command=["bench/ablation.py", "--steps", str(STEPS)])
    with pytest.raises(ValueError, match="steps: 6 in the study, 7 now"):
        Study(tmp_path / "s", RECIPE, _settings(steps=7), runs)


def test_floor_row_and_partial_table(tmp_path):
    runs = plan_runs(("no_psm", "unified"), {"no_psm": 1, "unified": 1})
    study = Study(tmp_path / "study", RECIPE, _settings(floors=True), runs)
    trainer = FakeTrainer()
    trainer(study.recipe, study.run_dir(runs[0]), [*study.settings.overrides, "model.overrides.variant=no_psm",
                                                   f"train.steps={STEPS}"], False, tmp_path / "log")
    report = run_study(study, train=False, log=lambda _m: None)  # score what is trained, train nothing
    assert report["pending"] == ["unified-s0"] and not report["complete"]
    assert report["floor"]["metrics"]["dyn_abs_rel"]["mean"] is not None
    table = (study.directory / "table.md").read_text()
    assert "| floor: constant depth, fixed camera | – |" in table
    assert "Not finished yet (left out): unified-s0." in table and "| unified memory" not in table


def test_interleaved_speed_times_every_model_alike():
    models = {v: Mem4D(Mem4DConfig.tiny(v)) for v in ("full", "no_psm")}
    report = interleaved_speed(models, (32, 32), frames=16, rounds=2)
    skip = max(m.config.history + (m.config.psm.capacity if m.config.use_psm else 0) for m in models.values())
    assert report["untimed_frames"] == skip == 13
    for row in report["models"].values():
        assert row["timed_frames"] == 2 * (16 - skip)
        assert row["cpu_ms"] > 0 and row["wall_ms"] > 0
    with pytest.raises(ValueError, match="must exceed"):
        interleaved_speed(models, (32, 32), frames=13)


class _BarrierTrainer(FakeTrainer):
    """A FakeTrainer whose first two calls wait for each other: they pass only if they overlap."""

    def __init__(self, stop_at: dict[str, int] | None = None):
        super().__init__(stop_at)
        import threading

        self.barrier = threading.Barrier(2, timeout=20)

    def __call__(self, recipe: Path, out: Path, overrides: list[str], resume: bool, log_path: Path) -> int:
        if len(self.calls) < 2:
            self.calls.append(("waiting", resume))
            self.barrier.wait()  # BrokenBarrierError when the runs are trained one after the other
            self.calls.remove(("waiting", resume))
        return super().__call__(recipe, out, overrides, resume, log_path)


def test_jobs_train_runs_side_by_side_and_a_failure_starts_no_further_run(tmp_path):
    from mem4d.ablation.study import train_runs

    runs = plan_runs(("full", "unified", "no_psm"), {"full": 1, "unified": 1, "no_psm": 1})
    study = Study(tmp_path / "study", RECIPE, _settings(), runs)
    trainer = _BarrierTrainer()
    train_runs(study, trainer, log=lambda _m: None, jobs=2)
    assert sorted(name for name, _ in trainer.calls) == ["full-s0", "no_psm-s0", "unified-s0"]
    assert all(run_status(study.run_dir(r), STEPS) == "done" for r in runs)

    # the first two fail side by side: the third is never started, and the failure is raised
    study = Study(tmp_path / "again", RECIPE, _settings(), runs)
    trainer = _BarrierTrainer(stop_at={"full-s0": 2, "unified-s0": 3})
    with pytest.raises(RuntimeError, match="training (full|unified)-s0 failed"):
        train_runs(study, trainer, log=lambda _m: None, jobs=2)
    assert sorted(name for name, _ in trainer.calls) == ["full-s0", "unified-s0"]
    assert run_status(study.run_dir(runs[2]), STEPS) == "new"
    with pytest.raises(ValueError, match="--jobs"):
        train_runs(study, trainer, log=lambda _m: None, jobs=0)
