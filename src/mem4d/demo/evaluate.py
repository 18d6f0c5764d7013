"""Scores a `mem4d reconstruct` folder against the ground truth of the synthetic scene it was made from.

Rows of the table: the model, and the evaluation harness's no-information floor
(`mem4d.eval.baselines`' ``constant-depth``: the median GT depth everywhere, identity poses; its
sibling ``identity-pose``, 1 m everywhere, would repeat every column but metric depth, so the demo
shows one row), scored with the same metrics as
`mem4d eval`: depth after per-sequence scale alignment and as predicted (metric), and camera
poses after Sim(3) alignment (ATE, RPE; `mem4d.eval.score.pose_scores`, which gives the
well-defined limit for a camera that never moves).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from mem4d.data.sample import Sample

__all__ = ["COLUMNS", "DemoPrediction", "evaluate", "format_table", "load_prediction", "motion_summary"]

# (key, header, format, lower-is-better)
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("scale_abs_rel", "AbsRel (scale)", "{:.3f}", True),
    ("scale_delta1", "δ<1.25 (scale)", "{:.3f}", False),
    ("metric_abs_rel", "AbsRel (metric)", "{:.3f}", True),
    ("metric_delta1", "δ<1.25 (metric)", "{:.3f}", False),
    ("ate", "ATE (m)", "{:.3f}", True),
    ("rpe_trans", "RPE trans (m)", "{:.4f}", True),
    ("rpe_rot", "RPE rot (°)", "{:.2f}", True),
    ("motion_iou", "moving IoU", "{:.3f}", False),
)


class DemoPrediction(SimpleNamespace):
    """depth (T, H, W) float32, cam2world (T, 4, 4) float64, dynamic (T, H, W) float32 or None."""

    depth: np.ndarray
    cam2world: np.ndarray
    dynamic: np.ndarray | None


def load_prediction(recon_dir: str | Path, num_frames: int) -> DemoPrediction:
    """Reads depth/*.npy, dynamic/*.npy (when written) and trajectory.txt of a reconstruction folder."""
    from mem4d.eval.trajectory_io import read_tum_trajectory

    root = Path(recon_dir)
    depth = np.stack([np.load(root / "depth" / f"{t:06d}.npy") for t in range(num_frames)]).astype(np.float32)
    dyn_dir = root / "dynamic"
    dynamic = None
    if (dyn_dir / "000000.npy").is_file():
        dynamic = np.stack([np.load(dyn_dir / f"{t:06d}.npy") for t in range(num_frames)]).astype(np.float32)
    traj = read_tum_trajectory(root / "trajectory.txt")
    if len(traj) != num_frames:
        raise ValueError(f"{root / 'trajectory.txt'} has {len(traj)} poses, expected {num_frames}")
    return DemoPrediction(depth=depth, cam2world=traj.cam2world.double().numpy(), dynamic=dynamic)


def _depth_scores(pred: np.ndarray, gt: Sample) -> dict[str, float]:
    from mem4d.eval.metrics import depth_metrics

    out: dict[str, float] = {}
    for align in ("scale", "metric"):
        m = depth_metrics(pred, gt.depth, gt.valid, align=align)
        out[f"{align}_abs_rel"] = m["abs_rel"]
        out[f"{align}_delta1"] = m["delta1"]
        if align == "scale":
            out["depth_scale"] = m["scale"]
    return out


def _pose_scores(pred_c2w: np.ndarray, gt: Sample) -> dict[str, float]:
    from mem4d.eval.metrics import PoseAlignmentError
    from mem4d.eval.score import pose_scores

    try:
        m = pose_scores(np.asarray(pred_c2w, dtype=np.float64), gt.cam2world.double().numpy())
    except PoseAlignmentError:  # e.g. a prediction moving along a line only: Sim(3) is undefined
        return {"ate": math.nan, "rpe_trans": math.nan, "rpe_rot": math.nan, "traj_scale": math.nan}
    return {"ate": m["ate"], "rpe_trans": m["rpe_trans"], "rpe_rot": m["rpe_rot"], "traj_scale": m["scale"]}


def _motion_scores(prob: np.ndarray | None, gt: Sample) -> dict[str, float]:
    """IoU, precision and recall of the predicted moving pixels (probability > 0.5) against the true ones."""
    if prob is None:
        return {"motion_iou": math.nan, "motion_precision": math.nan, "motion_recall": math.nan}
    pred = prob > 0.5
    mask = gt.dynamic_mask.numpy().astype(bool)
    hit, union, n_pred, n_true = (int(x.sum()) for x in (pred & mask, pred | mask, pred, mask))
    return {"motion_iou": hit / union if union else math.nan,
            "motion_precision": hit / n_pred if n_pred else math.nan,
            "motion_recall": hit / n_true if n_true else math.nan}


def motion_summary(row: dict[str, Any]) -> str:
    """One line on how good the moving-pixel map is (plain text)."""
    iou, prec, rec = (row.get(k, math.nan) for k in ("motion_iou", "motion_precision", "motion_recall"))
    if not all(isinstance(v, (int, float)) for v in (iou, prec, rec)) or math.isnan(iou):
        return "Moving-pixel map: not scored (the model has no motion head, or nothing moves)."
    quality = "good" if iou >= 0.7 else "fair" if iou >= 0.4 else "poor"
    return (f"Moving-pixel map ({quality}): IoU {iou:.2f} with the true moving pixels (0 = no overlap, 1 = exact); "
            f"{100 * prec:.0f} % of the pixels it marks moving do move (precision), and it finds "
            f"{100 * rec:.0f} % of those that move (recall); a pixel counts as marked when its probability is > 0.5.")


def evaluate(pred: DemoPrediction, gt: Sample) -> list[dict[str, Any]]:
    """Rows ``{"name", "description", <COLUMNS keys>, ...}``: the model first, then the no-information floor."""
    from mem4d.eval.baselines import ConstantDepth

    rows: list[dict[str, Any]] = []
    row: dict[str, Any] = {"name": "mem4d", "description": "the model, streamed frame by frame"}
    row.update(_depth_scores(pred.depth, gt))
    row.update(_pose_scores(pred.cam2world, gt))
    row.update(_motion_scores(pred.dynamic, gt))
    rows.append(row)
    bench = SimpleNamespace(depth_protocol=None)  # the synthetic GT needs no depth cap
    baseline = ConstantDepth()
    arrays = baseline.run(gt, gt, bench, want_points=False)  # type: ignore[arg-type]
    row = {"name": baseline.label, "description": "no image information: " + baseline.description}
    row.update(_depth_scores(arrays["depth"], gt))
    row.update(_pose_scores(arrays["cam2world"], gt))
    row.update(_motion_scores(None, gt))
    rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of the rows (n/a for NaN)."""
    headers = ["method"] + [h for _, h, _, _ in COLUMNS]
    body = [[r["name"]] + [_fmt(r.get(k), f) for k, _, f, _ in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in [headers] + body) for i in range(len(headers))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for line in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    return "\n".join(lines)


def _fmt(value: Any, fmt: str) -> str:
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "n/a"
    return fmt.format(value)
