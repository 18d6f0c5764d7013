"""Long-range memory probe: does a model know where it is when the camera comes back?

The Persistent Structure Memory is there for revisits: a camera that returns to a place after
many frames should find the structure it saw then. The probe streams looping synthetic scenes
(`make_scene(camera_path="loop")`, ``frames`` long, the loop closing every ``loop_frames``
frames) through a predictor and compares the frames after the camera's return with the frames of
the first lap that show the same views.

When the camera is back. A loop path turns ``LOOP_OVERLAP`` times over ``loop_frames - 1``
frames, as a function of its angle alone (wobble included), so it is back at frame 0's view
after ``P = (loop_frames - 1) / LOOP_OVERLAP`` frames (43.5 for a 48-frame loop). The *revisit*
frames are ``t >= ceil(P)``; each is paired with the first-lap frame ``round(t - P)``, whose
ground-truth camera centre is recorded beside it (``pair_distance_m``) as a check.

Per scene (``probe_scene``):

- ``ate``: ATE (m) of the whole stream after one Sim(3) alignment (evo's, as the benchmarks);
  ``ate_first`` / ``ate_revisit``: the RMS centre error of the paired first-lap / revisit frames
  under that same alignment;
- ``revisit_drift``: RMS over the pairs of ``|(c'_t - c'_s) - (c_t - c_s)|`` (aligned prediction
  c', ground truth c): the error of the displacement between a revisit frame and its first-lap
  view, i.e. how far the model thinks it is from where it was ~P frames ago;
- ``abs_rel_first`` / ``abs_rel_revisit`` (and ``delta1_*``): depth error of the paired
  first-lap / revisit frames on static pixels (movers excluded: a mover may stand elsewhere on
  the second lap), with **one** scale for the whole stream (fitted as the benchmarks' per-sequence
  scale), so a model whose scale drifts between laps is not corrected per lap; ``abs_rel`` the
  whole stream.

A predictor whose trajectory degenerates to one point (a constant camera) cannot be Sim(3)
aligned; as in ``mem4d eval score`` its aligned centres are the ground-truth centroid.

Example::

    from mem4d.ablation.loop_probe import loop_probe
    from mem4d.eval.predict import load_predictor
    report = loop_probe(load_predictor("runs/abl/full-s0/final"), image_size=(96, 128))
    report["dataset"]["revisit_drift"]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from mem4d.data.sample import Sample
from mem4d.eval.predict import Predictor

__all__ = ["LoopProbeSettings", "loop_period", "loop_probe", "loop_scene", "probe_scene", "revisit_pairs"]

DEPTH_KEYS = ("abs_rel", "delta1", "abs_rel_first", "abs_rel_revisit", "delta1_first", "delta1_revisit")
POSE_KEYS = ("ate", "ate_first", "ate_revisit", "revisit_drift")
_ENVIRONMENTS = ("room", "courtyard")


@dataclass(frozen=True)
class LoopProbeSettings:
    """The probe's scenes: ``scenes`` seeded loops of ``frames`` frames closing every ``loop_frames``.

    Scene i: seed ``seed + i``, environment alternating room / courtyard, ``1 + i % 2`` movers.
    """

    scenes: int = 4
    frames: int = 60
    loop_frames: int = 48
    seed: int = 5000

    def __post_init__(self) -> None:
        for name in ("scenes", "frames", "loop_frames", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ValueError(f"loop probe: {name} must be a {'non-negative' if name == 'seed' else 'positive'} "
                                 f"integer, got {value!r}")
        if self.loop_frames < 3:
            raise ValueError(f"loop probe: loop_frames must be >= 3, got {self.loop_frames}")
        if not revisit_pairs(self.frames, self.loop_frames)[0]:
            raise ValueError(f"loop probe: {self.frames} frames never return to the start of a {self.loop_frames}-frame "
                             f"loop (back after {loop_period(self.loop_frames):.1f} frames); use more frames")


def loop_period(loop_frames: int) -> float:
    """Frames after which a ``loop_frames`` loop path is back at its first view."""
    from mem4d.data.synthetic.camera_paths import LOOP_OVERLAP

    return (loop_frames - 1) / LOOP_OVERLAP


def revisit_pairs(frames: int, loop_frames: int) -> tuple[list[int], list[int]]:
    """(revisit frames ``t >= ceil(P)``, their first-lap frames ``round(t - P)``) of a ``frames`` stream."""
    period = loop_period(loop_frames)
    revisit = list(range(math.ceil(period - 1e-9), frames))
    return revisit, [int(round(t - period)) for t in revisit]


def loop_scene(settings: LoopProbeSettings, index: int, image_size: tuple[int, int]) -> Sample:
    """Scene ``index`` of the probe, rendered at ``image_size`` (H, W)."""
    from mem4d.data.synthetic import make_scene

    return make_scene(
        settings.seed + index, settings.frames, image_size=tuple(image_size), dynamic=True, camera_path="loop",
        loop_frames=settings.loop_frames, num_objects=1 + index % 2, environment=_ENVIRONMENTS[index % 2],
    )


def _aligned_centres(pred_c2w: np.ndarray, gt_c2w: np.ndarray) -> np.ndarray:
    """(T, 3) predicted camera centres after evo's Sim(3) (a constant trajectory: the GT centroid)."""
    from mem4d.eval.metrics import PoseAlignmentError
    from mem4d.eval.metrics.pose import align_trajectory

    try:
        aligned, *_ = align_trajectory(torch.from_numpy(pred_c2w), torch.from_numpy(gt_c2w), "sim3")
        return aligned[:, :3, 3].numpy()
    except PoseAlignmentError:
        c = pred_c2w[:, :3, 3]
        if np.abs(c - c.mean(0)).max() > 1e-9 * max(1.0, float(np.abs(c).max())):
            raise
        return np.repeat(gt_c2w[:, :3, 3].mean(0, keepdims=True), len(gt_c2w), axis=0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt((x**2).sum(-1).mean()))


def probe_scene(depth: np.ndarray, cam2world: np.ndarray, gt: Sample, loop_frames: int) -> dict[str, Any]:
    """The probe's figures for one stream (see the module docstring).

    Args:
        depth: (T, h, w) predicted depth (resized to the GT size if it differs).
        cam2world: (T, 4, 4) predicted camera-to-world.
        gt: the scene (depth, valid, dynamic_mask, cam2world).
        loop_frames: the loop's length in frames (as rendered).
    """
    from mem4d.eval.metrics import depth_metrics

    T = gt.num_frames
    if depth.shape[0] != T or cam2world.shape != (T, 4, 4):
        raise ValueError(f"prediction has {depth.shape[0]} depth maps and poses {cam2world.shape} for {T} frames")
    revisit, first = revisit_pairs(T, loop_frames)
    gt_c2w = gt.cam2world.double().numpy()
    centres, gt_centres = _aligned_centres(np.asarray(cam2world, dtype=np.float64), gt_c2w), gt_c2w[:, :3, 3]
    err = centres - gt_centres
    out: dict[str, Any] = {
        "frames": T,
        "revisit_frames": [revisit[0], revisit[-1]],
        "first_lap_frames": [first[0], first[-1]],
        "pair_distance_m": float(np.linalg.norm(gt_centres[revisit] - gt_centres[first], axis=-1).mean()),
        "ate": _rms(err),
        "ate_first": _rms(err[first]),
        "ate_revisit": _rms(err[revisit]),
        "revisit_drift": _rms((centres[revisit] - centres[first]) - (gt_centres[revisit] - gt_centres[first])),
    }
    static = gt.valid.bool() & ~gt.dynamic_mask.bool() if gt.dynamic_mask is not None else gt.valid.bool()
    pred = torch.from_numpy(np.asarray(depth, dtype=np.float64))
    whole = depth_metrics(pred, gt.depth, static, align="scale", protocol="synthetic")
    out.update(abs_rel=whole["abs_rel"], delta1=whole["delta1"], scale=whole["scale"])
    scaled = whole["scale"] * pred
    for name, frames in (("first", first), ("revisit", revisit)):
        part = depth_metrics(scaled[frames], gt.depth[frames], static[frames], align="metric", protocol="synthetic")
        out[f"abs_rel_{name}"], out[f"delta1_{name}"] = part["abs_rel"], part["delta1"]
    return out


def loop_probe(
    predictor: Predictor,
    image_size: tuple[int, int],
    settings: LoopProbeSettings | None = None,
    log=None,
) -> dict[str, Any]:
    """Streams the probe's scenes through ``predictor`` (`mem4d.eval.predict.Predictor`) at
    ``image_size`` (H, W); returns ``{"settings", "per_scene", "dataset"}`` (dataset: mean over scenes)."""
    from mem4d.eval.benchmarks import get_benchmark

    settings = settings or LoopProbeSettings()
    context = get_benchmark("synthetic-dynamic")  # baselines read its depth protocol; models ignore it
    per_scene: dict[str, dict[str, Any]] = {}
    for i in range(settings.scenes):
        gt = loop_scene(settings, i, image_size)
        arrays = predictor.run(gt, gt, context, want_points=False)
        name = f"loop{settings.seed + i:05d}-{_ENVIRONMENTS[i % 2]}-obj{1 + i % 2}"
        per_scene[name] = probe_scene(arrays["depth"], arrays["cam2world"], gt, settings.loop_frames)
        if log:
            row = per_scene[name]
            log(f"loop probe [{i + 1}/{settings.scenes}] {name}: ATE {row['ate']:.3f} m, revisit drift "
                f"{row['revisit_drift']:.3f} m, Abs Rel first lap {row['abs_rel_first']:.3f} / revisit "
                f"{row['abs_rel_revisit']:.3f}")
    dataset = {k: float(np.mean([r[k] for r in per_scene.values()])) for k in POSE_KEYS + DEPTH_KEYS}
    dataset["n_scenes"] = len(per_scene)
    return {"settings": {**asdict(settings), "image_size": list(image_size),
                         "period_frames": loop_period(settings.loop_frames)},
            "per_scene": per_scene, "dataset": dataset}
