"""The study's figures: per-run metrics from the harness's results, their mean and spread over
seeds per variant, and the markdown tables laid out like the paper's ablation.

A run's metrics (`run_metrics`) are read from the ``results.json`` of each benchmark
(``mem4d eval score``) and the loop probe's report: depth with the per-sequence scale, poses
after Sim(3), moving-pixel IoU pooled over the sequences (see `mem4d.eval.score`). Per variant,
`aggregate` gives mean, sample standard deviation (ddof 1; none with one seed), min and max.

Example::

    rows = {"full": aggregate([run_metrics(results_a, probe_a), run_metrics(results_b, probe_b)])}
    print(render_tables(rows, extras={"full": {"parameters": 4.3e6, "cpu_ms": 41.0}}, notes=[]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["METRICS", "Metric", "aggregate", "render_tables", "run_metrics", "VARIANT_LABELS"]


@dataclass(frozen=True)
class Metric:
    """One figure: where it is read (``source``: a benchmark name or ``"probe"``; ``path`` into its
    report), its column title, and how it is printed (``percent``: a fraction shown in %)."""

    key: str
    source: str
    path: tuple[str, ...]
    title: str
    digits: int = 3
    percent: bool = False


METRICS: tuple[Metric, ...] = (
    Metric("dyn_abs_rel", "synthetic-dynamic", ("depth", "scale", "dataset", "abs_rel"), "Abs Rel dyn ↓"),
    Metric("dyn_delta1", "synthetic-dynamic", ("depth", "scale", "dataset", "delta1"), "δ<1.25 dyn ↑", 1, True),
    Metric("static_abs_rel", "synthetic-static", ("depth", "scale", "dataset", "abs_rel"), "Abs Rel static ↓"),
    Metric("static_delta1", "synthetic-static", ("depth", "scale", "dataset", "delta1"), "δ<1.25 static ↑", 1, True),
    Metric("ate", "synthetic-dynamic", ("pose", "dataset", "ate"), "ATE (m) ↓"),
    Metric("rpe_trans", "synthetic-dynamic", ("pose", "dataset", "rpe_trans"), "RPE trans (m) ↓", 4),
    Metric("rpe_rot", "synthetic-dynamic", ("pose", "dataset", "rpe_rot"), "RPE rot (°) ↓", 2),
    Metric("iou", "synthetic-dynamic", ("motion", "dataset", "iou"), "moving-pixel IoU ↑"),
    Metric("static_ate", "synthetic-static", ("pose", "dataset", "ate"), "ATE static (m) ↓"),
    Metric("7s_abs_rel", "7scenes-sample", ("depth", "scale", "dataset", "abs_rel"), "Abs Rel ↓"),
    Metric("7s_delta1", "7scenes-sample", ("depth", "scale", "dataset", "delta1"), "δ<1.25 ↑", 1, True),
    Metric("7s_abs_rel_metric", "7scenes-sample", ("depth", "metric", "dataset", "abs_rel"), "Abs Rel metric ↓"),
    Metric("7s_ate", "7scenes-sample", ("pose", "dataset", "ate"), "ATE (m) ↓"),
    Metric("7s_rpe_rot", "7scenes-sample", ("pose", "dataset", "rpe_rot"), "RPE rot (°) ↓", 2),
    Metric("loop_ate", "probe", ("dataset", "ate"), "ATE (m) ↓"),
    Metric("loop_ate_revisit", "probe", ("dataset", "ate_revisit"), "ATE revisit (m) ↓"),
    Metric("loop_drift", "probe", ("dataset", "revisit_drift"), "revisit drift (m) ↓"),
    Metric("loop_abs_rel_first", "probe", ("dataset", "abs_rel_first"), "Abs Rel first lap ↓"),
    Metric("loop_abs_rel_revisit", "probe", ("dataset", "abs_rel_revisit"), "Abs Rel revisit ↓"),
)
_BY_KEY = {m.key: m for m in METRICS}

VARIANT_LABELS = {
    "full": "full (TCA + TDM + PSM)",
    "unified": "unified memory",
    "no_tdm": "w/o TDM",
    "no_psm": "w/o PSM",
    "no_tca": "w/o TCA",
    "floor": "floor: constant depth, fixed camera",
}

_TABLES = (
    ("Dynamic and static synthetic scenes (`synthetic-dynamic`, `synthetic-static`): depth with per-sequence "
     "scale, camera after Sim(3), moving pixels on the dynamic scenes",
     ("dyn_abs_rel", "dyn_delta1", "static_abs_rel", "static_delta1", "ate", "rpe_trans", "rpe_rot", "iou"), True),
    ("Real video: the shared 7-Scenes sample (`7scenes-sample`)",
     ("7s_abs_rel", "7s_delta1", "7s_abs_rel_metric", "7s_ate", "7s_rpe_rot"), False),
    ("Long-range memory probe: looping scenes, the camera back at its first view after {period} frames",
     ("loop_ate", "loop_ate_revisit", "loop_drift", "loop_abs_rel_first", "loop_abs_rel_revisit"), False),
)


def _lookup(report: dict[str, Any] | None, path: tuple[str, ...]) -> float | None:
    node: Any = report
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        return None
    return float(node)


def run_metrics(results: dict[str, dict[str, Any]], probe: dict[str, Any] | None) -> dict[str, float | None]:
    """One run's figures: ``results`` maps benchmark name -> its results.json; ``probe`` the loop
    probe's report. A figure whose source is missing is None."""
    return {m.key: _lookup(probe if m.source == "probe" else results.get(m.source), m.path) for m in METRICS}


def aggregate(runs: list[dict[str, float | None]]) -> dict[str, dict[str, Any]]:
    """Per metric over the runs (seeds) of one variant: ``{"n", "mean", "std", "min", "max", "values"}``;
    ``std`` is the sample standard deviation (ddof 1), None with fewer than two values."""
    out: dict[str, dict[str, Any]] = {}
    for m in METRICS:
        values = [r[m.key] for r in runs if r.get(m.key) is not None]
        n = len(values)
        mean = sum(values) / n if n else None
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n >= 2 else None
        out[m.key] = {"n": n, "mean": mean, "std": std, "min": min(values) if n else None,
                      "max": max(values) if n else None, "values": values}
    return out


def _cell(stat: dict[str, Any] | None, metric: Metric) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    scale = 100.0 if metric.percent else 1.0
    text = f"{scale * stat['mean']:.{metric.digits}f}"
    if stat.get("std") is not None:
        text += f" ± {scale * stat['std']:.{metric.digits}f}"
    return text


def render_tables(
    rows: dict[str, dict[str, dict[str, Any]]],
    extras: dict[str, dict[str, Any]] | None = None,
    notes: list[str] | None = None,
    probe_period: float | None = None,
) -> str:
    """Markdown: the paper-style ablation table and the real-video and memory-probe tables.

    Args:
        rows: row name (a variant, or ``"floor"``) -> `aggregate` output.
        extras: row name -> ``{"seeds": [...], "parameters": int, "cpu_ms": float}`` (optional keys).
        notes: lines printed above the tables (recipe, budget, what ± means).
        probe_period: frames after which the probe's camera is back (for the title).
    """
    extras = extras or {}
    lines = list(notes or [])
    for title, keys, with_cost in _TABLES:
        if not any(rows[r].get(k, {}).get("mean") is not None for r in rows for k in keys):
            continue
        period = f"{probe_period:.1f}" if probe_period is not None else "?"
        lines += ["", f"**{title.format(period=period)}**", ""]
        head = ["variant", "seeds", *(_BY_KEY[k].title for k in keys)]
        if with_cost:
            head += ["parameters", "CPU ms/frame"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, stats in rows.items():
            extra = extras.get(name, {})
            seeds = extra.get("seeds")
            cells = [VARIANT_LABELS.get(name, name), ", ".join(map(str, seeds)) if seeds else "–"]
            cells += [_cell(stats.get(k), _BY_KEY[k]) for k in keys]
            if with_cost:
                params, cpu = extra.get("parameters"), extra.get("cpu_ms")
                cells += [f"{params / 1e6:.2f} M" if params else "–", f"{cpu:.1f}" if cpu else "–"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines).lstrip("\n") + "\n"
