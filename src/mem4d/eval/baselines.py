"""Reference baselines run by the same harness, so that every table has a floor (and a ceiling).

``--ckpt baseline:NAME`` in ``mem4d eval predict``; each writes the same npz files as a model
(depth, confidence, cam2world, intrinsics, and pointmaps when the benchmark needs them), so
``score`` treats it like any checkpoint.

- ``constant-depth``: every pixel of every frame at one depth, the median of the sequence's
  valid ground-truth depth (after the benchmark's depth cap); all cameras at the identity.
  It *uses* GT statistics on purpose: it is the "no per-pixel information" floor, the best a
  method can do without knowing anything about the image (under metric scale included).
- ``identity-pose``: all ``cam2world = I`` (the camera never moves) and a constant depth of
  1 m, no GT used at all. Its pose errors are the "no motion" floor. Sim(3) alignment of a
  trajectory whose centres all coincide is degenerate for evo (the protocol would skip the
  sequence); ``score`` reports its well-defined limit instead (scale 0: ATE = RMS distance
  of the GT centres to their mean; see :func:`mem4d.eval.score.pose_scores`).
- ``oracle``: the ground truth itself, resampled to the model resolution like the images
  (depth, intrinsics, poses, world points). Not a method: a check of the harness, which must
  score it near zero error (what remains is the resampling of depth edges).

All three use a nominal 60-degree horizontal field of view with a centred principal point
where they need intrinsics (``oracle`` uses the GT's).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mem4d.data.sample import Sample
from mem4d.eval.benchmarks import Benchmark
from mem4d.eval.predict import Predictor

__all__ = ["BASELINES", "ConstantDepth", "IdentityPose", "Oracle", "make_baseline"]

NOMINAL_FOV_X = math.radians(60.0)


def _nominal_intrinsics(T: int, h: int, w: int) -> np.ndarray:
    from mem4d.geometry.camera import fov_to_intrinsics

    fx = (w / 2) / math.tan(NOMINAL_FOV_X / 2)
    fov_y = 2 * math.atan((h / 2) / fx)
    K = fov_to_intrinsics(NOMINAL_FOV_X, fov_y, h, w).double()
    return np.repeat(K.numpy()[None], T, axis=0).astype(np.float32)


def _points(depth: np.ndarray, K: np.ndarray, cam2world: np.ndarray) -> np.ndarray:
    from mem4d.geometry.camera import depth_to_pts_world

    pts = depth_to_pts_world(torch.from_numpy(depth).double(), torch.from_numpy(K).double(),
                             torch.from_numpy(cam2world).double())
    return pts.float().numpy()


def _outputs(depth: np.ndarray, K: np.ndarray, cam2world: np.ndarray, want_points: bool) -> dict[str, np.ndarray]:
    T = depth.shape[0]
    out = {
        "depth": depth.astype(np.float32),
        "conf": np.ones_like(depth, dtype=np.float32),
        "cam2world": cam2world.astype(np.float64),
        "intrinsics": K.astype(np.float32),
        "frame_time_s": np.zeros(T, dtype=np.float64),
    }
    if want_points:
        out["pts_world"] = _points(depth, K, cam2world)
        out["conf_world"] = np.ones_like(depth, dtype=np.float32)
    return out


def _identity(T: int) -> np.ndarray:
    return np.repeat(np.eye(4)[None], T, axis=0)


class _Baseline(Predictor):
    name = ""
    description = ""

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"baseline:{self.name}"

    def describe(self) -> dict[str, Any]:
        return {"kind": "baseline", "name": self.name, "uses_gt": self.uses_gt, "description": self.description}


class ConstantDepth(_Baseline):
    name = "constant-depth"
    uses_gt = True
    description = "depth = median valid GT depth of the sequence, cam2world = I"

    def run(self, frames: Sample, gt: Sample, benchmark: Benchmark, want_points: bool) -> dict[str, np.ndarray]:
        T, _, h, w = frames.images.shape
        valid = gt.valid & torch.isfinite(gt.depth) & (gt.depth > 0)
        proto = benchmark.depth_protocol
        if proto is not None and proto.max_depth is not None:
            valid &= gt.depth < proto.max_depth
        d = float(gt.depth[valid].double().median()) if bool(valid.any()) else 1.0
        depth = np.full((T, h, w), d, dtype=np.float32)
        return _outputs(depth, _nominal_intrinsics(T, h, w), _identity(T), want_points)


class IdentityPose(_Baseline):
    name = "identity-pose"
    uses_gt = False
    description = "cam2world = I for every frame, depth = 1 m everywhere"

    def run(self, frames: Sample, gt: Sample, benchmark: Benchmark, want_points: bool) -> dict[str, np.ndarray]:
        T, _, h, w = frames.images.shape
        depth = np.ones((T, h, w), dtype=np.float32)
        return _outputs(depth, _nominal_intrinsics(T, h, w), _identity(T), want_points)


class Oracle(_Baseline):
    name = "oracle"
    uses_gt = True
    description = "the ground truth resampled to the model resolution (harness check, not a method)"

    def run(self, frames: Sample, gt: Sample, benchmark: Benchmark, want_points: bool) -> dict[str, np.ndarray]:
        depth = torch.where(frames.valid, frames.depth, torch.zeros(())).numpy().astype(np.float32)
        K = frames.intrinsics.double().numpy()
        out = _outputs(depth, K, frames.cam2world.double().numpy(), want_points)
        if frames.dynamic_mask is not None:
            out["dynamic_prob"] = frames.dynamic_mask.numpy().astype(np.float16)
        return out


BASELINES: dict[str, type[_Baseline]] = {c.name: c for c in (ConstantDepth, IdentityPose, Oracle)}


def make_baseline(name: str) -> Predictor:
    """The baseline ``name`` (``ValueError`` listing the known ones)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join('baseline:' + n for n in BASELINES)}")
    return BASELINES[name]()
