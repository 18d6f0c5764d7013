"""What an ablation study trains and how it scores: `StudySettings` and the list of `StudyRun`s.

Every run of a study trains one variant with one training seed, from scratch, with the same
recipe, overrides, step budget and camera-pose mode; only ``model.overrides.variant`` and
``train.seed`` (the model's initialisation and the order of its random draws) differ between
runs. The data seed (``data.seed``) is the recipe's for every run, so every run sees the same clips in
the same order and is validated on the same scenes.

The settings are written to ``STUDY/plan.json`` by the first invocation; a later invocation on
the same folder must give the same settings (`check_compatible`), so a resumed study cannot mix
budgets or recipes. Variants and seeds may be added later: runs are keyed by name.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mem4d.ablation.loop_probe import LoopProbeSettings
from mem4d.config import VARIANTS

__all__ = [
    "CAMERA_POSES",
    "DEFAULT_BENCHMARKS",
    "DEFAULT_SEEDS",
    "StudyRun",
    "StudySettings",
    "check_compatible",
    "parse_seeds",
    "plan_runs",
    "training_overrides",
]

DEFAULT_BENCHMARKS = ("synthetic-dynamic", "synthetic-static", "7scenes-sample")
DEFAULT_SEEDS = {"full": 2, "unified": 2}  # the two rows the paper's claim compares; others: 1
CAMERA_POSES = ("procrustes", "absolute")  # the project's learned-motion option, the paper's head


@dataclass(frozen=True)
class StudyRun:
    """One training run of the study: ``variant`` trained with ``train.seed = seed``."""

    variant: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"


@dataclass(frozen=True)
class StudySettings:
    """Everything that must be the same for every run of a study (saved as ``plan.json``).

    Attributes:
        recipe_sha256: hash of the recipe file's text (the study trains from its own copy).
        overrides: ``--set key=value`` entries applied to the recipe for every run.
        steps: the training budget of every run (optimiser steps).
        camera_pose: ``heads.camera_pose`` of every variant (``procrustes`` or ``absolute``).
        eval_size: long side (pixels) at which the benchmarks and the probe run; the speed is
            measured at the recipe's ``data.image_size``.
        benchmarks: evaluation-harness benchmarks each final model is scored on.
        limit_seqs, max_frames: shorten the evaluation (smoke runs; recorded in the table).
        probe: the long-range memory probe's scenes.
        speed_frames, speed_rounds: the interleaved CPU timing (frames per stream, streams per model).
        floors: also score the no-information baseline (constant depth, fixed camera) as a table row.
    """

    recipe_sha256: str
    overrides: tuple[str, ...]
    steps: int
    camera_pose: str
    eval_size: int
    benchmarks: tuple[str, ...] = DEFAULT_BENCHMARKS
    limit_seqs: int | None = None
    max_frames: int | None = None
    probe: LoopProbeSettings = field(default_factory=LoopProbeSettings)
    speed_frames: int = 40
    speed_rounds: int = 3
    floors: bool = True

    def __post_init__(self) -> None:
        if self.camera_pose not in CAMERA_POSES:
            raise ValueError(f"--camera-pose must be one of {CAMERA_POSES}, got {self.camera_pose!r}")
        for name in ("steps", "eval_size", "speed_frames", "speed_rounds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.eval_size % 16:
            raise ValueError(f"the evaluation size must be a multiple of 16, got {self.eval_size}")
        for name in ("limit_seqs", "max_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.benchmarks:
            raise ValueError("a study needs at least one benchmark")
        for item in self.overrides:
            key = item.split("=", 1)[0].strip()
            if key in ("model.overrides.variant", "model.overrides.heads.camera_pose", "train.steps", "train.seed",
                       "model.init_from"):
                raise ValueError(f"--set {key}: the study sets it (use --variants, --camera-pose, --steps, --seeds; "
                                 "every variant trains from scratch)")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["overrides"] = list(self.overrides)
        out["benchmarks"] = list(self.benchmarks)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "StudySettings":
        raw = dict(raw)
        raw["overrides"] = tuple(raw.get("overrides", ()))
        raw["benchmarks"] = tuple(raw.get("benchmarks", DEFAULT_BENCHMARKS))
        raw["probe"] = LoopProbeSettings(**raw.get("probe", {}))
        return cls(**raw)


def recipe_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def parse_seeds(text: str | None, variants: tuple[str, ...], default: int = 1) -> dict[str, int]:
    """Seeds per variant from ``"full=2,unified=2"`` (variants not named: ``default``); None: `DEFAULT_SEEDS`.

    >>> parse_seeds("full=3", ("full", "no_psm"))
    {'full': 3, 'no_psm': 1}
    """
    counts = dict(DEFAULT_SEEDS) if text is None else {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in VARIANTS:
            raise ValueError(f"--seeds takes VARIANT=COUNT pairs, e.g. full=2,unified=2 (variants: {', '.join(VARIANTS)}); "
                             f"got {item!r}")
        try:
            counts[name] = int(value)
        except ValueError:
            raise ValueError(f"--seeds {item!r}: the count must be an integer") from None
        if counts[name] < 1:
            raise ValueError(f"--seeds {item!r}: a variant needs at least one seed")
    if default < 1:
        raise ValueError(f"the default seed count must be >= 1, got {default}")
    return {v: counts.get(v, default) for v in variants}


def plan_runs(variants: tuple[str, ...], seeds: dict[str, int]) -> list[StudyRun]:
    """The runs in training order: seed 0 of every variant first (a study stopped half-way has
    every row), then the further seeds.

    >>> [r.name for r in plan_runs(("full", "no_psm", "unified"), {"full": 2, "no_psm": 1, "unified": 2})]
    ['full-s0', 'no_psm-s0', 'unified-s0', 'full-s1', 'unified-s1']
    """
    if not variants:
        raise ValueError("a study needs at least one variant")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if len(set(variants)) != len(variants):
        raise ValueError(f"--variants lists a variant twice: {list(variants)}")
    most = max(seeds.get(v, 1) for v in variants)
    return [StudyRun(v, s) for s in range(most) for v in variants if s < seeds.get(v, 1)]


def training_overrides(settings: StudySettings, run: StudyRun) -> list[str]:
    """The ``--set`` entries of ``run``'s training: the study's own, then what makes the run itself."""
    return [
        *settings.overrides,
        f"model.overrides.variant={run.variant}",
        f"model.overrides.heads.camera_pose={settings.camera_pose}",
        f"train.steps={settings.steps}",
        f"train.seed={run.seed}",
    ]


def check_compatible(stored: dict[str, Any], settings: StudySettings, study_dir: Path,
                     command: list[str] | None = None) -> None:
    """Raises ``ValueError`` naming the settings that differ from the study's ``plan.json``
    (and the ``command`` that planned it, when known)."""
    now = settings.to_dict()
    differ = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    if differ:
        lines = ", ".join(f"{k}: {stored.get(k)!r} in the study, {now.get(k)!r} now" for k in differ)
        again = f" (it was planned by: {shlex.join(command)})" if command else ""
        raise ValueError(f"{study_dir} was planned with other settings ({lines}); a study trains and scores every "
                         f"run alike: rerun with the study's settings{again}, or choose a new --study folder")
