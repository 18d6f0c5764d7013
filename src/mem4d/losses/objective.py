"""Mem4D's training objective (paper Eq. 10) plus the motion-head loss:

    L = L_conf(world) + L_conf(cam) + λ_abs · L_abs + λ_rel · L_rel + λ_motion · L_motion
        [+ λ_flow · L_flow + λ_flow_weight · L_flow_weight with the correspondence head]
        [+ λ_si · (L_si(world) + L_si(cam)) with loss.scale_invariant > 0, not in the paper]
        [+ λ_ls · L_log_scale with loss.log_scale > 0, not in the paper]

Every term is returned by name so training logs show what moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from mem4d.geometry.camera import depth_to_pts_cam, intrinsics_to_fov
from mem4d.geometry.se3 import transform_points
from mem4d.losses.camera import absolute_camera_loss, relative_camera_loss
from mem4d.losses.flow import flow_losses
from mem4d.losses.motion import motion_iou_loss, motion_loss
from mem4d.losses.pointmap import confidence_regression_loss, gt_scale, log_scale_error, scale_invariant_regression


@dataclass
class Targets:
    """Ground truth of a batch of clips, everything (B, T, ...).

    Attributes:
        pts_world, pts_cam: (B, T, H, W, 3).
        valid: (B, T, H, W) bool.
        cam2world: (B, T, 4, 4), frame 0 = identity.
        fov: (B, T, 2) horizontal and vertical FoV in radians.
        dynamic_mask: (B, T, H, W) bool, or None when the data has no masks.
        intrinsics: (B, T, 3, 3) pixel intrinsics (the correspondence head's flow targets need them).
    """

    pts_world: Tensor
    pts_cam: Tensor
    valid: Tensor
    cam2world: Tensor
    fov: Tensor
    dynamic_mask: Tensor | None = None
    intrinsics: Tensor | None = None

    @classmethod
    def from_batch(
        cls, depth: Tensor, valid: Tensor, intrinsics: Tensor, cam2world: Tensor, dynamic_mask: Tensor | None = None
    ) -> "Targets":
        """Builds targets from (B, T, H, W) depth/valid, (B, T, 3, 3) intrinsics, (B, T, 4, 4) cam2world."""
        H, W = depth.shape[-2:]
        pts_cam = depth_to_pts_cam(depth, intrinsics)
        pts_world = transform_points(cam2world, pts_cam)
        fov_x, fov_y = intrinsics_to_fov(intrinsics, H, W)
        return cls(pts_world, pts_cam, valid, cam2world, torch.stack([fov_x, fov_y], -1), dynamic_mask, intrinsics)

    @classmethod
    def from_samples(cls, samples: Sequence[Any]) -> "Targets":
        """Stacks `mem4d.data.sample.Sample` clips of equal length and size into one batch."""
        stack = lambda name: torch.stack([getattr(s, name) for s in samples])  # noqa: E731
        masks = [s.dynamic_mask for s in samples]
        dynamic = torch.stack(masks) if all(m is not None for m in masks) else None
        return cls.from_batch(stack("depth"), stack("valid"), stack("intrinsics"), stack("cam2world"), dynamic)


@dataclass
class LossWeights:
    """Weights of Eq. 10 ([choice] λ_abs = λ_rel = 1, α = 0.2), of the motion-head term and of the
    correspondence head's terms (``heads.camera_pose == "procrustes"`` only, `mem4d.losses.flow`)."""

    alpha: float = 0.2
    abs_pose: float = 1.0
    rel_pose: float = 1.0
    motion: float = 0.5
    motion_pos_weight: float = 4.0
    # [choice, not in the paper] weight of the motion head's soft IoU term (mem4d.losses.motion.motion_iou_loss),
    # added beside its BCE (so only while loss.motion > 0); 0 = off
    motion_iou: float = 0.0
    flow: float = 0.1
    flow_weight: float = 0.05
    camera_norm: str = "euclidean"  # or "squared": Eq. 8-9's "L2" as squared errors (see mem4d.losses.camera)
    # [choice, not in the paper] weight of the pointmaps' regression with each clip's prediction
    # normalised by its own scale (mem4d.losses.pointmap.scale_invariant_regression): shape and a
    # scale that holds across the clip, apart from the metric scale Eq. 7 trains; 0 = off
    scale_invariant: float = 0.0
    # [choice, not in the paper] weight of each frame's log depth scale error
    # (mem4d.losses.pointmap.log_scale_error): the metric scale alone, one number per frame; 0 = off
    log_scale: float = 0.0

    def __post_init__(self) -> None:
        for name in ("scale_invariant", "motion_iou", "log_scale"):  # the optional terms' weights
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"loss.{name} must be a number >= 0, got {value!r}")
        if self.camera_norm not in ("euclidean", "squared"):
            raise ValueError(f"loss.camera_norm must be 'euclidean' or 'squared', got {self.camera_norm!r}")


class Mem4DObjective:
    """Callable `objective(pred, targets) -> (total, terms)`.

    `pred` is a `SequenceOutput` (anything with `pts_world`, `conf_world`, `pts_cam`, `conf_cam`,
    `cam2world`, `intrinsics` shaped (B, T, ...) and optionally `dynamic_prob`).
    """

    def __init__(self, weights: LossWeights | None = None):
        self.weights = weights or LossWeights()

    def __call__(self, pred: Any, targets: Targets) -> tuple[Tensor, dict[str, Tensor]]:
        w = self.weights
        squared = w.camera_norm == "squared"
        scale = gt_scale(targets.pts_world, targets.valid)
        terms: dict[str, Tensor] = {}
        terms["conf_world"], terms["reg_world"] = confidence_regression_loss(
            pred.pts_world, pred.conf_world, targets.pts_world, targets.valid, scale, w.alpha
        )
        terms["conf_cam"], terms["reg_cam"] = confidence_regression_loss(
            pred.pts_cam, pred.conf_cam, targets.pts_cam, targets.valid, scale, w.alpha
        )
        H, W = targets.valid.shape[-2:]
        fov_x, fov_y = intrinsics_to_fov(pred.intrinsics, H, W)
        terms.update(
            absolute_camera_loss(pred.cam2world, targets.cam2world, torch.stack([fov_x, fov_y], -1), targets.fov, scale,
                                 squared)
        )
        terms.update(relative_camera_loss(pred.cam2world, targets.cam2world, scale, squared))
        total = (
            terms["conf_world"]
            + terms["conf_cam"]
            + w.abs_pose * (terms["abs_rot"] + terms["abs_trans"] + terms["abs_fov"])
            + w.rel_pose * (terms["rel_rot"] + terms["rel_trans"])
        )
        if w.scale_invariant > 0:
            pred_scale = gt_scale(pred.pts_world, targets.valid)
            for kind in ("world", "cam"):
                terms[f"si_{kind}"] = scale_invariant_regression(
                    getattr(pred, f"pts_{kind}"), getattr(targets, f"pts_{kind}"), targets.valid, pred_scale, scale
                )
            total = total + w.scale_invariant * (terms["si_world"] + terms["si_cam"])
        if w.log_scale > 0:
            terms["log_scale"] = log_scale_error(pred.pts_cam[..., 2], targets.pts_cam[..., 2], targets.valid)
            total = total + w.log_scale * terms["log_scale"]
        dynamic_prob = getattr(pred, "dynamic_prob", None)
        if dynamic_prob is not None and targets.dynamic_mask is not None and w.motion > 0:
            terms["motion"] = motion_loss(dynamic_prob, targets.dynamic_mask, targets.valid, w.motion_pos_weight)
            total = total + w.motion * terms["motion"]
            if w.motion_iou > 0:
                terms["motion_iou"] = motion_iou_loss(dynamic_prob, targets.dynamic_mask, targets.valid)
                total = total + w.motion_iou * terms["motion_iou"]
        flow = getattr(pred, "flow", None)
        if flow is not None and targets.intrinsics is not None:
            terms.update(flow_losses(flow, pred.flow_weight, targets))
            total = total + w.flow * terms["flow"] + w.flow_weight * terms["flow_weight"]
        terms["total"] = total
        return total, terms
