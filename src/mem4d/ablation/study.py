"""Runs an ablation study end to end, resumably: train every run, score every final model, write
``study.json`` and ``table.md``.

A study folder::

    STUDY/plan.json                 the settings (`StudySettings`); a rerun must match them
    STUDY/recipe.yaml               the recipe every run trains from (a copy, so configs/ may move on)
    STUDY/runs/<variant>-s<seed>/   each run's training folder (`mem4d train --out`)
    STUDY/logs/<run>.log            its training output
    STUDY/eval/<run>/<benchmark>/   `mem4d eval score` results (predictions deleted once scored)
    STUDY/eval/<run>/loop_probe.json
    STUDY/eval/floor/...            the no-information baseline, scored the same way
    STUDY/speed.json                interleaved CPU ms per frame of one final model per variant
    STUDY/study.json, table.md      everything above, aggregated over seeds

Every step is skipped when its output exists: a run whose newest checkpoint is at the budget
and has ``final/`` is done; a run with a checkpoint below it is resumed (``mem4d train --resume``);
a benchmark with ``results.json`` and a probe with its report are not redone. So rerunning the
same command after an interruption (or in the next session) continues where it stopped.

Training runs in a child process (``python -m mem4d.cli.main train``), ``--jobs`` runs at a time
(default one), each with the recipe's thread count; evaluation and timing run in this process on
one thread.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mem4d.ablation.plan import StudyRun, StudySettings, check_compatible, training_overrides
from mem4d.ablation.table import aggregate, render_tables, run_metrics

__all__ = ["Study", "run_status", "run_study", "subprocess_trainer"]

PLAN_JSON = "plan.json"
RECIPE_COPY = "recipe.yaml"
STUDY_JSON = "study.json"
TABLE_MD = "table.md"
SPEED_JSON = "speed.json"
PROBE_JSON = "loop_probe.json"
FLOOR = "floor"
FLOOR_BASELINE = "baseline:constant-depth"  # median GT depth everywhere, every camera at the identity

# (recipe copy, run folder, --set entries, resume, log file) -> exit status
Trainer = Callable[[Path, Path, list[str], bool, Path], int]


def subprocess_trainer(recipe: Path, out: Path, overrides: list[str], resume: bool, log_path: Path) -> int:
    """Trains one run with ``mem4d train`` in a child process, its output appended to ``log_path``."""
    cmd = [sys.executable, "-m", "mem4d.cli.main", "train", "--config", str(recipe), "--out", str(out), "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    if resume:
        cmd.append("--resume")
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def run_status(run_dir: Path, steps: int) -> str:
    """``"done"`` (newest checkpoint at ``steps`` and ``final/`` written), ``"partial"`` (a folder,
    perhaps a checkpoint, below the budget) or ``"new"`` (nothing yet)."""
    from mem4d.train.checkpoint import latest_checkpoint

    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "new"
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None and (run_dir / "final" / "config.json").is_file():
        step = json.loads((ckpt / "trainer.json").read_text())["step"]
        if step > steps:
            raise ValueError(f"{run_dir} was trained to step {step}, past the study's budget of {steps}")
        if step == steps:
            return "done"
    return "partial"


def _check_recipe(path: Path, overrides: tuple[str, ...]) -> None:
    from mem4d.train.recipe import Recipe

    recipe = Recipe.from_yaml(path, list(overrides))
    if recipe.model.init_from or recipe.model.init_encoder:
        raise ValueError(f"{path}: model.init_from / init_encoder is set; an ablation trains every variant "
                         "from scratch (starting all of them from one variant's weights would favour that variant)")


class Study:
    """A study folder with its settings and runs (see the module docstring).

    Args:
        directory: the study folder (created; a rerun on it must give the same settings).
        recipe: the recipe file; copied into the folder on the first invocation.
        settings: what every run shares.
        runs: the planned runs (`mem4d.ablation.plan.plan_runs`).
        command: the command line, recorded in study.json.
    """

    def __init__(self, directory: str | Path, recipe: str | Path, settings: StudySettings, runs: list[StudyRun],
                 command: list[str] | None = None) -> None:
        from mem4d.ablation.plan import recipe_sha256

        self.directory = Path(directory)
        self.settings = settings
        self.runs = list(runs)
        self.command = command
        recipe = Path(recipe)
        if not recipe.is_file():
            raise FileNotFoundError(f"recipe {recipe} not found; see configs/ablation-tiny.yaml")
        if recipe_sha256(recipe) != settings.recipe_sha256:
            raise ValueError(f"recipe {recipe} does not match settings.recipe_sha256")
        _check_recipe(recipe, settings.overrides)
        plan = self.directory / PLAN_JSON
        if plan.is_file():
            stored = json.loads(plan.read_text())
            check_compatible(stored["settings"], settings, self.directory, stored.get("command"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.recipe = self.directory / RECIPE_COPY
        if not self.recipe.is_file():
            shutil.copyfile(recipe, self.recipe)
        if not plan.is_file():
            plan.write_text(json.dumps({"settings": settings.to_dict(), "recipe_source": str(recipe),
                                        "command": command}, indent=2) + "\n")

    def run_dir(self, run: StudyRun) -> Path:
        return self.directory / "runs" / run.name

    def eval_dir(self, name: str) -> Path:
        return self.directory / "eval" / name

    def image_size(self) -> tuple[int, int]:
        """The recipe's ``data.image_size`` (with the study's overrides): the models' own size."""
        from mem4d.train.recipe import Recipe

        return tuple(Recipe.from_yaml(self.recipe, list(self.settings.overrides)).data.image_size)

    def probe_size(self) -> tuple[int, int]:
        """(H, W) of the probe's scenes: the evaluation size's long side, the recipe's aspect."""
        H, W = self.image_size()
        long = self.settings.eval_size
        short = max(16, round(min(H, W) * long / max(H, W) / 16) * 16)
        return (short, long) if W >= H else (long, short)


def _log_default(msg: str) -> None:
    print(msg, flush=True)


def train_runs(study: Study, trainer: Trainer, log: Callable[[str], None], jobs: int = 1) -> None:
    """Trains (or resumes) every planned run that is not done, ``jobs`` at a time (each run is a
    child process with the recipe's thread count, so on a 2-core CPU two one-thread runs side by
    side finish the study in about half the time). After a failure no further run is started; the
    ones already running finish, then the first failure is raised."""
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    (study.directory / "logs").mkdir(exist_ok=True)
    todo = []
    for run in study.runs:
        status = run_status(study.run_dir(run), study.settings.steps)
        if status == "done":
            log(f"{run.name}: trained ({study.settings.steps} steps), skipped")
        else:
            todo.append((run, status))
    failed = threading.Event()

    def train_one(run: StudyRun, status: str) -> None:
        if failed.is_set():
            return
        out = study.run_dir(run)
        log(f"{run.name}: {'resuming' if status == 'partial' else 'training'} to step {study.settings.steps} "
            f"(log: {study.directory / 'logs' / (run.name + '.log')})")
        out.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        code = trainer(study.recipe, out, training_overrides(study.settings, run), status == "partial",
                       study.directory / "logs" / f"{run.name}.log")
        try:
            if code != 0:
                raise RuntimeError(f"training {run.name} failed (exit {code}); see {study.directory / 'logs'}/"
                                   f"{run.name}.log, then rerun the same command to resume")
            if run_status(out, study.settings.steps) != "done":
                raise RuntimeError(f"training {run.name} ended below the budget of {study.settings.steps} steps "
                                   f"(a time limit?); rerun the same command to resume")
        except RuntimeError:
            failed.set()
            raise
        log(f"{run.name}: trained in {time.perf_counter() - start:.0f} s")

    if jobs == 1:
        for run, status in todo:
            train_one(run, status)
        return
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(train_one, run, status) for run, status in todo]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]


def evaluate(study: Study, name: str, ckpt: str, keep_predictions: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Scores ``ckpt`` on the study's benchmarks and the loop probe (each skipped when done);
    returns ``{"results": {benchmark: results.json}, "probe": report}``."""
    from mem4d.ablation.loop_probe import loop_probe
    from mem4d.eval.predict import load_predictor, predict
    from mem4d.eval.score import RESULTS_JSON, score

    s = study.settings
    folder = study.eval_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for bench in s.benchmarks:
        out, pred = folder / bench, folder / f"{bench}-pred"
        if not (out / RESULTS_JSON).is_file():
            log(f"{name}: {bench} (size {s.eval_size})")
            if not (pred / "manifest.json").is_file():
                predict(bench, ckpt, pred, size=s.eval_size, device="cpu", limit_seqs=s.limit_seqs,
                        max_frames=s.max_frames, threads=1, overwrite=True, label=name)
            score(pred, out, overwrite=True)
        if not keep_predictions and pred.exists():
            shutil.rmtree(pred)
        results[bench] = json.loads((out / RESULTS_JSON).read_text())
    probe_path = folder / PROBE_JSON
    if not probe_path.is_file():
        log(f"{name}: loop probe ({s.probe.scenes} scenes x {s.probe.frames} frames)")
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            report = loop_probe(load_predictor(ckpt), study.probe_size(), s.probe)
        finally:
            torch.set_num_threads(previous)
        tmp = probe_path.with_name(f".{probe_path.name}.tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(probe_path)
    return {"results": results, "probe": json.loads(probe_path.read_text())}


def measure_speed(study: Study, finals: dict[str, Path], log: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved CPU ms per frame of one final model per variant (cached in speed.json while the
    set of models and the settings stay the same)."""
    from mem4d.ablation.speed import interleaved_speed
    from mem4d.model.mem4d import Mem4D

    s = study.settings
    key = {"models": {v: str(p) for v, p in sorted(finals.items())}, "frames": s.speed_frames, "rounds": s.speed_rounds,
           "image_size": list(study.image_size())}
    path = study.directory / SPEED_JSON
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    log(f"speed: {len(finals)} models interleaved, {s.speed_rounds} rounds of {s.speed_frames} frames at "
        f"{key['image_size'][0]}x{key['image_size'][1]}, one thread")
    models = {v: Mem4D.from_pretrained(p) for v, p in finals.items()}
    report = {"key": key, **interleaved_speed(models, study.image_size(), s.speed_frames, s.speed_rounds)}
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _validation(run_dir: Path) -> dict[str, Any] | None:
    """The last validation row and the median training rate of a run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    val = [r for r in rows if any(k.startswith("val/") for k in r)]
    rates = sorted(r["frames_per_s"] for r in rows if "frames_per_s" in r)
    return {"last_validation": val[-1] if val else None,
            "median_train_frames_per_s": rates[len(rates) // 2] if rates else None}


def _finite(x: Any) -> Any:
    """NaN and infinities -> None (strict JSON)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _notes(study: Study, pending: list[str]) -> list[str]:
    s = study.settings
    H, W = study.image_size()
    limited = s.limit_seqs is not None or s.max_frames is not None
    notes = [
        f"Recipe `{RECIPE_COPY}` (sha256 {s.recipe_sha256[:12]}), every variant from scratch, {s.steps} steps, "
        f"`heads.camera_pose: {s.camera_pose}`, overrides {list(s.overrides) or 'none'}; models at {H}x{W}, "
        f"evaluated at long side {s.eval_size}"
        + (f", **limited evaluation** (first {s.limit_seqs or 'all'} sequences, {s.max_frames or 'all'} frames)"
           if limited else "") + ".",
        "Mean ± sample standard deviation over the training seeds listed (one seed: the value alone). CPU ms/frame: "
        "median process CPU time of a steady streaming frame, one thread, the variants interleaved.",
        "Loop probe: revisit drift is the error of the displacement between a revisit frame and its first-lap view; "
        "a camera that never moves scores near zero on it (see the floor row), so read it with the ATE.",
    ]
    if pending:
        notes.append(f"Not finished yet (left out): {', '.join(pending)}.")
    return notes


def run_study(
    study: Study,
    train: bool = True,
    trainer: Trainer = subprocess_trainer,
    keep_predictions: bool = False,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """Trains what is left, scores what is trained, writes ``study.json`` and ``table.md``; returns
    the study.json content. ``train=False`` only scores and tabulates the runs already done; ``jobs``
    runs train side by side (`train_runs`); scoring and timing stay one at a time, in this process."""
    log = log or _log_default
    if train:
        train_runs(study, trainer, log, jobs)
    s = study.settings
    runs: dict[str, dict[str, Any]] = {}
    per_variant: dict[str, list[str]] = {}
    finals: dict[str, Path] = {}
    pending = []
    for run in study.runs:
        run_dir = study.run_dir(run)
        status = run_status(run_dir, s.steps)
        record: dict[str, Any] = {"variant": run.variant, "seed": run.seed, "status": status,
                                  "run_dir": str(run_dir), "training": _validation(run_dir)}
        if status == "done":
            from mem4d.model.mem4d import Mem4D

            final = run_dir / "final"
            scores = evaluate(study, run.name, str(final), keep_predictions, log)
            model = Mem4D.from_pretrained(final)
            record.update(parameters=model.num_parameters(), parameter_breakdown=model.parameter_breakdown(),
                          metrics=run_metrics(scores["results"], scores["probe"]),
                          results={b: str(study.eval_dir(run.name) / b) for b in s.benchmarks},
                          probe=str(study.eval_dir(run.name) / PROBE_JSON))
            per_variant.setdefault(run.variant, []).append(run.name)
            finals.setdefault(run.variant, final)
        else:
            pending.append(run.name)
        runs[run.name] = record

    speed = measure_speed(study, finals, log) if finals else None
    variants: dict[str, dict[str, Any]] = {}
    for variant, names in per_variant.items():
        params = {runs[n]["parameters"] for n in names}
        assert len(params) == 1, f"{variant}: seeds with different parameter counts {params}"
        variants[variant] = {
            "seeds": [runs[n]["seed"] for n in names],
            "runs": names,
            "metrics": aggregate([runs[n]["metrics"] for n in names]),
            "parameters": params.pop(),
            "parameter_breakdown": runs[names[0]]["parameter_breakdown"],
            "cpu_ms_per_frame": speed["models"][variant]["cpu_ms"] if speed else None,
            "wall_ms_per_frame": speed["models"][variant]["wall_ms"] if speed else None,
        }
    floor = None
    if s.floors:
        scores = evaluate(study, FLOOR, FLOOR_BASELINE, keep_predictions, log)
        floor = {"baseline": FLOOR_BASELINE, "metrics": aggregate([run_metrics(scores["results"], scores["probe"])])}

    from mem4d.ablation.loop_probe import loop_period
    from mem4d.eval.predict import git_revision

    rows = {v: variants[v]["metrics"] for v in dict.fromkeys(r.variant for r in study.runs) if v in variants}
    extras = {v: {"seeds": d["seeds"], "parameters": d["parameters"], "cpu_ms": d["cpu_ms_per_frame"]}
              for v, d in variants.items()}
    if floor:
        rows[FLOOR] = floor["metrics"]
    table = render_tables(rows, extras, _notes(study, pending), loop_period(s.probe.loop_frames))
    report = {
        "kind": "mem4d-ablation-study",
        "format_version": 1,
        "settings": s.to_dict(),
        "recipe": str(study.recipe),
        "command": study.command,
        "complete": not pending,
        "pending": pending,
        "runs": runs,
        "variants": variants,
        "floor": floor,
        "speed": speed,
        "environment": {"git": git_revision(), "python": sys.version.split()[0]},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (study.directory / STUDY_JSON).write_text(json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    (study.directory / TABLE_MD).write_text(table)
    log(f"wrote {study.directory / STUDY_JSON} and {study.directory / TABLE_MD}")
    return report
