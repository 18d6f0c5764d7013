"""Markdown tables laid out like the paper's (Mem4D, arXiv 2508.07908, Tables 1-3).

- Table 1, video depth: row groups by alignment (per-sequence scale, metric scale), one row
  per method, for each dataset the columns Abs Rel (lower is better) and delta < 1.25 in
  percent (higher is better).
- Table 2, camera pose: one row per method, for each dataset ATE, RPE trans, RPE rot.
- Table 3, 3D reconstruction: one row per method, for each dataset Acc, Comp, NC (mean and
  median).

:func:`render_results` renders one ``results.json`` (written by ``mem4d eval score``) with a
provenance header and per-sequence tables; :func:`render_tables` puts several results (e.g.
a checkpoint and the baselines, over several benchmarks) side by side. The paper's own
numbers appear as a reference row only for benchmarks that are the paper's (same dataset,
sequences and frames: an unlimited run of ``sintel``, ``bonn``, ``kitti``, ``sintel-pose``
or ``tum-dynamics``); the paper ran at 512 px on an A100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["PAPER_ROW", "render_results", "render_tables"]

PAPER_ROW = "Mem4D (paper)"
_ALIGN_TITLES = {"scale": "Per-sequence scale", "metric": "Metric scale", "scale&shift": "Scale & shift",
                 "median": "Per-frame median"}


def _num(x: Any, digits: int = 3, percent: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    v = float(x) * (100.0 if percent else 1.0)
    return f"{v:.{1 if percent else digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _bench(r: dict[str, Any]) -> tuple[str, str]:
    b = r["benchmark"]
    return b["name"], _display(b["name"])


def _display(name: str) -> str:
    try:
        from mem4d.eval.benchmarks import get_benchmark

        return get_benchmark(name).title
    except ValueError:
        return name


def _columns(results: Sequence[dict[str, Any]], task: str) -> list[str]:
    names: list[str] = []
    for r in results:
        if task in r and r["benchmark"]["name"] not in names:
            names.append(r["benchmark"]["name"])
    return names


def _methods(results: Sequence[dict[str, Any]], task: str) -> list[str]:
    out: list[str] = []
    for r in results:
        if task in r and r["method"] not in out:
            out.append(r["method"])
    return out


def _lookup(results: Sequence[dict[str, Any]], method: str, bench: str, task: str) -> dict[str, Any] | None:
    found = None
    for r in results:  # the last one wins when a method was scored twice on a benchmark
        if r["method"] == method and r["benchmark"]["name"] == bench and task in r:
            found = r[task]
    return found


def _published(results: Sequence[dict[str, Any]], bench: str, task: str) -> dict[str, Any] | None:
    for r in results:
        if r["benchmark"]["name"] == bench and r.get("published") and task in r["published"]:
            return r["published"][task]
    return None


def _depth_table(results: Sequence[dict[str, Any]]) -> str:
    benches = _columns(results, "depth")
    if not benches:
        return ""
    aligns: list[str] = []
    for r in results:
        for a in r.get("depth", {}):
            if a not in aligns:
                aligns.append(a)
    header = ["Alignment", "Method"]
    for b in benches:
        header += [f"{_display(b)} Abs Rel ↓", f"{_display(b)} δ<1.25 ↑"]
    rows = []
    for a in aligns:
        for m in _methods(results, "depth"):
            row = [_ALIGN_TITLES.get(a, a), m]
            for b in benches:
                d = (_lookup(results, m, b, "depth") or {}).get(a, {}).get("dataset", {})
                row += [_num(d.get("abs_rel")), _num(d.get("delta1"), percent=True)]
            rows.append(row)
        if any(((_published(results, b, "depth") or {}).get(a)) for b in benches):
            row = [_ALIGN_TITLES.get(a, a), PAPER_ROW]
            for b in benches:
                p = (_published(results, b, "depth") or {}).get(a) or {}
                row += [_num(p.get("abs_rel")), _num(p.get("delta1"), percent=True)]
            rows.append(row)
    return "### Video depth (Table 1 layout)\n\n" + _table(header, rows)


def _flat_table(results: Sequence[dict[str, Any]], task: str, title: str,
                columns: list[tuple[str, str, int]]) -> str:
    benches = _columns(results, task)
    if not benches:
        return ""
    header = ["Method"]
    for b in benches:
        header += [f"{_display(b)} {label}" for _, label, _ in columns]
    rows = []
    for m in _methods(results, task):
        row = [m]
        for b in benches:
            d = (_lookup(results, m, b, task) or {}).get("dataset", {})
            row += [_num(d.get(k), digits) for k, _, digits in columns]
        rows.append(row)
    if any(_published(results, b, task) for b in benches):
        row = [PAPER_ROW]
        for b in benches:
            p = _published(results, b, task) or {}
            row += [_num(p.get(k), digits) for k, _, digits in columns]
        rows.append(row)
    return f"### {title}\n\n" + _table(header, rows)


_POSE_COLS = [("ate", "ATE ↓", 3), ("rpe_trans", "RPE trans ↓", 3), ("rpe_rot", "RPE rot ↓", 3)]
_MOTION_COLS = [("iou", "IoU ↑", 3), ("precision", "precision ↑", 3), ("recall", "recall ↑", 3)]
_RECON_COLS = [("acc", "Acc Mean ↓", 3), ("acc_med", "Acc Med. ↓", 3), ("comp", "Comp Mean ↓", 3),
               ("comp_med", "Comp Med. ↓", 3), ("nc", "NC Mean ↑", 3), ("nc_med", "NC Med. ↑", 3)]


def render_tables(results: Sequence[dict[str, Any]]) -> str:
    """The paper-style tables (depth, pose, reconstruction) for one or more ``results.json``."""
    parts = [
        _depth_table(results),
        _flat_table(results, "pose", "Camera pose (Table 2 layout)", _POSE_COLS),
        _flat_table(results, "recon", "3D reconstruction (Table 3 layout)", _RECON_COLS),
        _flat_table(results, "motion", "Moving pixels (dynamic_prob > 0.5; not in the paper)", _MOTION_COLS),
    ]
    return "\n".join(p for p in parts if p)


def _header(r: dict[str, Any]) -> str:
    b, run, ck = r["benchmark"], r["run"], r.get("checkpoint", {})
    env, tm = r.get("environment", {}), r.get("timing", {})
    name, title = _bench(r)
    lines = [f"# {r['method']} on {title}", ""]
    seqs = r.get("sequences", [])
    limits = []
    if run.get("limit_seqs") is not None:
        limits.append(f"--limit-seqs {run['limit_seqs']}")
    if run.get("max_frames") is not None:
        limits.append(f"--max-frames {run['max_frames']}")
    lines.append(f"- benchmark: `{name}` ({', '.join(b.get('tasks', []))}), {len(seqs)} sequence{'s' * (len(seqs) != 1)}"
                 + (f"; **limited run** ({' '.join(limits)}): not comparable with the paper" if limits else ""))
    lines.append(f"- input: long side {run.get('size')} px ({b.get('input_mode')})")
    if ck.get("kind") == "model":
        lines.append(f"- checkpoint: `{ck.get('path')}` (weights sha256 `{str(ck.get('weights_sha256', ''))[:12]}`, "
                     f"config `{str(ck.get('model_config_hash', ''))[:12]}`, variant {ck.get('variant')})")
    else:
        lines.append(f"- checkpoint: `{ck.get('arg')}`: {ck.get('description', '')}")
    git = env.get("git") or {}
    lines.append(f"- code: mem4d {env.get('mem4d_version', '?')}"
                 + (f", git {str(git.get('commit', ''))[:10]}{' (dirty)' if git.get('dirty') else ''}" if git else ""))
    if tm.get("frames") and ck.get("kind") == "model":
        fps = tm.get("fps_median")
        lines.append(f"- speed: {tm['median_s'] * 1000:.1f} ms/frame median, p90 {tm['p90_s'] * 1000:.1f} ms "
                     f"({_num(fps, 1)} FPS) on {env.get('device_name', '?')} ({env.get('device', '?')}), "
                     f"torch {env.get('torch_version', '?')}, threads {env.get('threads', '?')}; all frames, "
                     "no warm-up excluded (not the timing protocol)")
    if r.get("published"):
        lines.append(f"- the `{PAPER_ROW}` row is from the paper (512 px, A100), for reference")
    for w in r.get("warnings", []):
        lines.append(f"- warning: {w}")
    return "\n".join(lines) + "\n"


def _per_sequence(r: dict[str, Any]) -> str:
    parts = []
    if "depth" in r:
        aligns = list(r["depth"])
        seqs = list(next(iter(r["depth"].values()))["per_sequence"]) if aligns else []
        header = ["Sequence", "valid px"]
        for a in aligns:
            header += [f"{_ALIGN_TITLES.get(a, a)} Abs Rel", "δ<1.25 (%)"]
        rows = []
        for s in seqs:
            first = r["depth"][aligns[0]]["per_sequence"][s]
            row = [s, str(first.get("n_valid", "–"))]
            for a in aligns:
                m = r["depth"][a]["per_sequence"][s]
                row += [_num(m.get("abs_rel")), _num(m.get("delta1"), percent=True)]
            rows.append(row)
        parts.append("### Depth per sequence\n\n" + _table(header, rows))
    if "pose" in r:
        rows = []
        for s, m in r["pose"]["per_sequence"].items():
            rows.append([s, _num(m["ate"], 4), _num(m["rpe_trans"], 4), _num(m["rpe_rot"], 3),
                         str(m.get("n_poses", "")), m.get("degenerate", "")])
        for s, why in r["pose"].get("skipped", {}).items():
            rows.append([s, "–", "–", "–", "", f"skipped: {why}"])
        parts.append("### Pose per sequence\n\n"
                     + _table(["Sequence", "ATE", "RPE trans", "RPE rot (deg)", "frames", "note"], rows))
    if "recon" in r:
        rows = []
        for s, m in r["recon"]["per_sequence"].items():
            rows.append([s] + [_num(m[k]) for k, _, _ in _RECON_COLS] + [str(m.get("n_points", ""))])
        for s, why in r["recon"].get("skipped", {}).items():
            rows.append([s] + ["–"] * len(_RECON_COLS) + [f"skipped: {why}"])
        parts.append("### Reconstruction per sequence\n\n"
                     + _table(["Sequence"] + [label for _, label, _ in _RECON_COLS] + ["points"], rows))
    return "\n".join(parts)


def render_results(results: dict[str, Any]) -> str:
    """``results.md`` of one scored run: provenance, paper-style tables, per-sequence tables."""
    return "\n".join([_header(results), "## Results\n", render_tables([results]), "## Per sequence\n",
                      _per_sequence(results)])
