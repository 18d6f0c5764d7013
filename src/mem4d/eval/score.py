"""Stage 2 of the evaluation harness: score a prediction folder against the ground truth.

``score(pred_dir, out)`` reads ``manifest.json`` written by :func:`mem4d.eval.predict.predict`,
re-reads the ground truth of the benchmark it names (same sequences, frames and input size,
so the two stages can run on different machines), checks every prediction file against it
and computes, for the tasks the benchmark declares (PROTOCOLS section 1):

- ``depth`` (paper Table 1): per sequence, the prediction resized to the GT size (bicubic)
  and aligned over all frames jointly, once per alignment of the benchmark (per-sequence
  ``scale`` and ``metric``): Abs Rel, Sq Rel, RMSE, Log RMSE, delta < 1.25^k; the dataset
  value is the mean over sequences weighted by valid pixels
  (:func:`mem4d.eval.metrics.depth_metrics` / ``aggregate_depth_metrics``).
- ``pose`` (Table 2): per sequence, ATE, RPE-trans, RPE-rot after Umeyama Sim(3)
  (:func:`mem4d.eval.metrics.pose_metrics`, evo's definitions); prediction and GT are paired
  frame by frame (the protocol replaces prediction timestamps by GT ones when the counts
  match). Dataset value = plain mean over the scored sequences. A sequence evo cannot align
  (degenerate covariance) is skipped and listed, as in the protocol, except when *all*
  predicted camera centres coincide: then every Sim(3) gives the same aligned trajectory (a
  single point, best placed at the GT centroid) and the errors are well defined (ATE = RMS
  distance of the GT centres to their centroid; relative translations of the prediction are
  zero); those are scored and flagged ``degenerate="constant_position"``.
- ``motion`` (not in the paper), whenever the predictions carry ``dynamic_prob`` and the
  ground truth has moving-pixel masks (the synthetic benchmarks): ``dynamic_prob`` resized to
  the GT size (bilinear), thresholded at 0.5, against the mask over valid pixels: IoU per
  sequence (pixels of all frames pooled) and for the dataset (all pixels pooled), with
  precision and recall.
- ``recon`` (Table 3): predicted world points and GT points (GT depth resampled to the model
  resolution, in GT camera-0 coordinates) are aligned by median depth shift and scale over
  all GT-valid pixels, cropped to the central 224x224 pixels at 512 px (scaled with the input
  size), ICP'd (threshold 0.1 m) and scored: Acc, Comp (mean, median), normal consistency
  (mean, median); dataset value = mean over scenes. The protocol maps both clouds to the
  world with the GT camera-1 pose first; every step after it is invariant to one rigid
  motion of both clouds, so that step is left out.

Outputs (written atomically, like predict): ``results.json`` (everything above, per
sequence and per dataset, plus the manifest's provenance and timing) and ``results.md``
(tables laid out like the paper's; :mod:`mem4d.eval.report`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mem4d.data.sample import Sample
from mem4d.eval.benchmarks import Benchmark, get_benchmark, gt_fingerprint, recon_crop_size
from mem4d.eval.metrics import (
    PoseAlignmentError,
    aggregate_depth_metrics,
    align_median_scale_shift,
    central_crop,
    depth_metrics,
    evaluate_reconstruction,
    pose_metrics,
    relative_pose_errors,
)
from mem4d.eval.predict import FORMAT_VERSION, MANIFEST_NAME, atomic_output_dir, check_output_dir

__all__ = [
    "POSE_KEYS",
    "RECON_KEYS",
    "RESULTS_JSON",
    "RESULTS_MD",
    "depth_scores",
    "pose_scores",
    "read_manifest",
    "read_prediction",
    "motion_scores",
    "recon_scores",
    "score",
]

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
POSE_KEYS = ("ate", "rpe_trans", "rpe_rot")
RECON_KEYS = ("acc", "acc_med", "comp", "comp_med", "nc", "nc_med")
_REQUIRED = ("depth", "cam2world", "intrinsics", "frame_ids")


# ----------------------------------------------------------------------------------------
# Reading predictions
# ----------------------------------------------------------------------------------------


def read_manifest(pred_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a prediction folder, checked for the fields ``score`` needs."""
    pred_dir = Path(pred_dir).expanduser()
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_dir} not found (write one with `mem4d eval predict`)")
    path = pred_dir / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {pred_dir} is not a `mem4d eval predict` output")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); re-run `mem4d eval predict`") from err
    if not isinstance(manifest, dict) or manifest.get("kind") != "mem4d-eval-predictions":
        raise ValueError(f"{path} is not a mem4d prediction manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {manifest.get('format_version')}, this mem4d reads "
                         f"{FORMAT_VERSION}; re-run `mem4d eval predict`")
    for key in ("benchmark", "run", "sequences", "checkpoint"):
        if key not in manifest:
            raise ValueError(f"{path} lacks {key!r}; re-run `mem4d eval predict`")
    if not manifest["sequences"]:
        raise ValueError(f"{path} lists no sequences")
    return manifest


def read_prediction(path: Path) -> dict[str, np.ndarray]:
    """All arrays of one prediction npz (no pickles); ``ValueError`` if missing keys / corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"prediction file {path} is missing (listed in the manifest)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ValueError(f"{path} is corrupt or not a prediction npz ({type(err).__name__}: {err}); "
                         "re-run `mem4d eval predict`") from err
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"{path} lacks {missing}; re-run `mem4d eval predict`")
    return arrays


def _check_prediction(arrays: dict[str, np.ndarray], gt: Sample, entry: dict, path: Path, need_points: bool) -> None:
    T = gt.num_frames
    depth, c2w = arrays["depth"], arrays["cam2world"]
    h, w = (int(v) for v in entry["input_size"])
    if depth.ndim != 3 or depth.shape[0] != T:
        raise ValueError(f"{path}: depth has shape {depth.shape} but the ground truth of {entry['name']!r} has "
                         f"{T} frames; the prediction does not match the benchmark (re-run predict)")
    if depth.shape[1:] != (h, w):
        raise ValueError(f"{path}: depth is {depth.shape[1]}x{depth.shape[2]}, the manifest says {h}x{w}")
    if c2w.shape != (T, 4, 4):
        raise ValueError(f"{path}: cam2world has shape {c2w.shape}, expected {(T, 4, 4)}")
    ids = [str(x) for x in arrays["frame_ids"].tolist()]
    if ids != list(gt.meta["frame_ids"]):
        raise ValueError(f"{path}: frame ids {ids[:3]}... differ from the ground truth's "
                         f"{list(gt.meta['frame_ids'])[:3]}...; the prediction does not match the benchmark")
    for key in ("depth", "cam2world"):
        if not np.isfinite(arrays[key]).all():
            raise ValueError(f"{path}: {key} has non-finite values")
    if need_points:
        pts = arrays.get("pts_world")
        if pts is None:
            raise ValueError(f"{path} has no pts_world, needed for reconstruction; re-run predict")
        if pts.shape != (T, h, w, 3):
            raise ValueError(f"{path}: pts_world has shape {pts.shape}, expected {(T, h, w, 3)}")
        if not np.isfinite(pts).all():
            raise ValueError(f"{path}: pts_world has non-finite values")


# ----------------------------------------------------------------------------------------
# Per-task scores of one sequence
# ----------------------------------------------------------------------------------------


def depth_scores(pred_depth: np.ndarray, gt: Sample, bench: Benchmark) -> dict[str, dict[str, float]]:
    """``{align: depth_metrics(...)}`` for each of the benchmark's alignments."""
    out = {}
    for align in bench.depth_aligns:
        out[align] = depth_metrics(pred_depth, gt.depth, gt.valid, align=align, protocol=bench.depth_protocol)
    return out


def _constant_position(c2w: np.ndarray) -> bool:
    c = c2w[:, :3, 3].astype(np.float64)
    spread = np.linalg.norm(c - c.mean(0), axis=-1).max()
    return bool(spread <= 1e-12 * max(1.0, float(np.abs(c).max())))


def pose_scores(pred_cam2world: np.ndarray, gt_cam2world: np.ndarray) -> dict[str, Any]:
    """ATE / RPE-trans / RPE-rot of one sequence (see the module docstring).

    Raises:
        PoseAlignmentError: when evo's alignment is degenerate and the prediction is not a
            single camera position (the protocol skips such sequences).
    """
    from mem4d.geometry.rotation import rotation_angle

    try:
        return pose_metrics(pred_cam2world, gt_cam2world, align="sim3")
    except PoseAlignmentError:
        if len(pred_cam2world) < 2 or not _constant_position(pred_cam2world):
            raise
    P = torch.as_tensor(np.asarray(pred_cam2world, dtype=np.float64)).clone()
    Q = torch.as_tensor(np.asarray(gt_cam2world, dtype=np.float64))
    centres = Q[:, :3, 3]
    ate = torch.sqrt(((centres - centres.mean(0)) ** 2).sum(-1).mean())
    P[:, :3, 3] = 0.0
    E = relative_pose_errors(P, Q, 1)
    return {
        "ate": float(ate),
        "rpe_trans": float(torch.sqrt((E[:, :3, 3] ** 2).sum(-1).mean())),
        "rpe_rot": float(torch.sqrt((rotation_angle(E[:, :3, :3]) ** 2).mean()) * (180.0 / math.pi)),
        "scale": 0.0,
        "n_poses": len(Q),
        "degenerate": "constant_position",
    }


def motion_scores(dynamic_prob: np.ndarray, gt: Sample) -> dict[str, float]:
    """Moving-pixel counts and IoU of one sequence (see the module docstring)."""
    prob = torch.from_numpy(np.asarray(dynamic_prob, dtype=np.float32))[:, None]
    if tuple(prob.shape[-2:]) != tuple(gt.image_size):
        prob = torch.nn.functional.interpolate(prob, size=gt.image_size, mode="bilinear", align_corners=False)
    pred, mask, valid = prob[:, 0] > 0.5, gt.dynamic_mask.bool(), gt.valid.bool()
    tp = int((pred & mask & valid).sum())
    fp = int((pred & ~mask & valid).sum())
    fn = int((~pred & mask & valid).sum())
    return {"tp": tp, "fp": fp, "fn": fn, **_iou(tp, fp, fn)}


def _iou(tp: int, fp: int, fn: int) -> dict[str, float]:
    nan = float("nan")
    return {"iou": tp / (tp + fp + fn) if tp + fp + fn else nan, "precision": tp / (tp + fp) if tp + fp else nan,
            "recall": tp / (tp + fn) if tp + fn else nan}


def recon_scores(pred_pts: np.ndarray, frames: Sample, size: int, icp_threshold: float) -> dict[str, float]:
    """Reconstruction metrics of one scene; ``frames`` is the GT at the model resolution."""
    from mem4d.geometry.camera import depth_to_pts_world

    valid = frames.valid & (frames.depth > 0)
    if not bool(valid.any()):
        raise ValueError("no valid ground-truth pixel")
    gt_pts = depth_to_pts_world(frames.depth.double(), frames.intrinsics.double(), frames.cam2world.double())
    aligned, info = align_median_scale_shift(torch.from_numpy(pred_pts).double(), gt_pts, valid)
    c = recon_crop_size(frames.image_size, size)
    v = central_crop(valid, c, hw_axes=(-2, -1))
    P = central_crop(aligned, c)[v]
    G = central_crop(gt_pts, c)[v]
    if len(P) < 3:
        raise ValueError(f"only {len(P)} valid ground-truth pixels in the central {c}x{c} crop")
    out = evaluate_reconstruction(P.numpy(), G.numpy(), icp_threshold=icp_threshold)
    out.update(n_points=len(P), crop=c, **{f"align_{k}": v for k, v in info.items()})
    return out


def _score_root(bench: Benchmark, data_root: str | os.PathLike | None, recorded: str | None):
    """The data root argument for the benchmark: ``--data-root``, else the benchmark's own
    lookup (``MEM4D_DATA`` / shared data) if it finds the data, else the root predict used."""
    if data_root:
        bench.root(data_root)
        return data_root
    try:
        bench.root(None)
        return None
    except FileNotFoundError:
        if recorded and Path(recorded).is_dir():
            return recorded
        raise


def _mean(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_sequences": len(rows)}
    for k in keys:
        out[k] = float(np.mean([r[k] for r in rows])) if rows else None
    return out


# ----------------------------------------------------------------------------------------
# Stage 2
# ----------------------------------------------------------------------------------------


def score(
    pred_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Scores ``pred_dir`` and writes ``results.json`` + ``results.md`` into ``out``.

    Args:
        pred_dir: a folder written by ``mem4d eval predict``.
        out: results folder (must not exist unless ``overwrite``).
        data_root: dataset root (else ``$MEM4D_DATA``, else the root recorded by predict).

    Returns:
        the results dict (as written to ``results.json``).
    """
    from mem4d.eval.report import render_results

    out = Path(out).expanduser()
    pred_dir = Path(pred_dir).expanduser()
    check_output_dir(out, overwrite)
    manifest = read_manifest(pred_dir)
    bench = get_benchmark(manifest["benchmark"]["name"])
    run = manifest["run"]
    size, max_frames = int(run["size"]), run.get("max_frames")
    root = _score_root(bench, data_root, run.get("data_root"))
    log = log or (lambda _msg: None)
    tasks = bench.tasks
    warnings: list[str] = []

    depth_rows: dict[str, dict[str, dict[str, float]]] = {a: {} for a in bench.depth_aligns}
    pose_rows: dict[str, dict[str, Any]] = {}
    pose_skipped: dict[str, str] = {}
    recon_rows: dict[str, dict[str, Any]] = {}
    recon_skipped: dict[str, str] = {}
    motion_rows: dict[str, dict[str, float]] = {}
    known = set(bench.sequences(root)) if bench.needs_data else None

    for i, entry in enumerate(manifest["sequences"]):
        name = entry["name"]
        if known is not None and name not in known:
            raise ValueError(f"sequence {name!r} of the predictions is not in benchmark {bench.name!r} under {root}")
        gt = bench.load(name, root, max_frames, size=size)
        path = pred_dir / entry["file"]
        arrays = read_prediction(path)
        _check_prediction(arrays, gt, entry, path, "recon" in tasks)
        if entry.get("gt_fingerprint") and entry["gt_fingerprint"] != gt_fingerprint(gt):
            msg = (f"{name}: the ground truth differs from the one predict saw (fingerprint "
                   f"{entry['gt_fingerprint']} vs {gt_fingerprint(gt)}): different data or generator")
            warnings.append(msg)
            print(f"warning: {msg}", file=sys.stderr)
        if "depth" in tasks:
            for align, m in depth_scores(arrays["depth"], gt, bench).items():
                depth_rows[align][name] = m
        if "pose" in tasks:
            try:
                pose_rows[name] = pose_scores(arrays["cam2world"], gt.cam2world.double().numpy())
            except PoseAlignmentError as err:
                pose_skipped[name] = str(err)
        if "dynamic_prob" in arrays and gt.dynamic_mask is not None:
            motion_rows[name] = motion_scores(arrays["dynamic_prob"], gt)
        if "recon" in tasks:
            frames = bench.prepare(gt, size)
            if tuple(frames.image_size) != tuple(entry["input_size"]):
                raise ValueError(f"{path}: predicted at {entry['input_size']}, the benchmark now prepares "
                                 f"{list(frames.image_size)}; re-run predict")
            try:
                recon_rows[name] = recon_scores(arrays["pts_world"], frames, size, bench.recon_icp_threshold)
            except ValueError as err:
                recon_skipped[name] = str(err)
        log(f"[{i + 1}/{len(manifest['sequences'])}] scored {name}")

    results: dict[str, Any] = {
        "kind": "mem4d-eval-results",
        "format_version": FORMAT_VERSION,
        "benchmark": manifest["benchmark"],
        "method": manifest.get("label", "?"),
        "run": run,
        "checkpoint": {k: v for k, v in manifest["checkpoint"].items() if k != "model_config"},
        "environment": manifest.get("environment", {}),
        "prediction_date": manifest.get("date"),
        "scored_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "pred_dir": str(pred_dir.resolve()),
        "timing": manifest.get("timing", {}),
        "sequences": [e["name"] for e in manifest["sequences"]],
        "published": None if run.get("limited") else bench.published,
        "warnings": warnings,
    }
    if "depth" in tasks:
        results["depth"] = {}
        for align, rows in depth_rows.items():
            try:
                dataset = aggregate_depth_metrics(list(rows.values()))
            except ValueError as err:  # no valid pixel anywhere
                dataset = {"error": str(err)}
            results["depth"][align] = {"dataset": dataset, "per_sequence": rows}
    if "pose" in tasks:
        results["pose"] = {"dataset": _mean(list(pose_rows.values()), POSE_KEYS), "per_sequence": pose_rows,
                           "skipped": pose_skipped}
        results["pose"]["dataset"]["n_skipped"] = len(pose_skipped)
    if "recon" in tasks:
        results["recon"] = {"dataset": _mean(list(recon_rows.values()), RECON_KEYS), "per_sequence": recon_rows,
                            "skipped": recon_skipped}
        results["recon"]["dataset"]["n_skipped"] = len(recon_skipped)

    if motion_rows:
        tp, fp, fn = (sum(r[k] for r in motion_rows.values()) for k in ("tp", "fp", "fn"))
        dataset = {"n_sequences": len(motion_rows), **_iou(tp, fp, fn),
                   "mean_sequence_iou": float(np.nanmean([r["iou"] for r in motion_rows.values()]))}
        results["motion"] = {"dataset": dataset, "per_sequence": motion_rows}

    markdown = render_results(results)
    with atomic_output_dir(out, overwrite) as tmp:
        (tmp / RESULTS_JSON).write_text(json.dumps(_jsonable(results), indent=2, allow_nan=False) + "\n")
        (tmp / RESULTS_MD).write_text(markdown)
    return results


def _jsonable(x: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
