"""What the model returns: `FrameOutput` (one streamed frame) and `SequenceOutput` (a clip).

Conventions (CONVENTIONS.md): OpenCV camera axes, metric units, world frame = camera of the
stream's frame 0 (``cam2world`` of frame 0 is exactly the identity), quaternions WXYZ with
w >= 0, intrinsics in pixels with the principal point at ((W-1)/2, (H-1)/2).

``pts_world`` and ``pts_cam`` come from two separate DPT heads (paper Eq. 6); they are *not*
forced to satisfy ``pts_world == cam2world . pts_cam`` (training pushes them towards it),
except with ``heads.camera_pose == "procrustes"`` (``pts_world`` is ``cam2world`` applied to the
points the fit read, ``heads.fit_points``) and with ``heads.pose_refinement == "photometric"``
(``pts_world == cam2world . pts_cam``). The pointmap head's rays need not be those of
``intrinsics`` (on a scene-memory loop they were 14 % off in focal); ``depth`` lifted along the
rays of ``intrinsics`` is what the pose refinement reads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["FrameOutput", "SequenceOutput"]


class _TensorFields:
    def _map(self, fn):  # type: ignore[no-untyped-def]
        return replace(self, **{f.name: (None if getattr(self, f.name) is None else fn(getattr(self, f.name)))
                                for f in fields(self)})  # type: ignore[arg-type]

    def to(self, device: torch.device | str) -> _TensorFields:
        """Moves every tensor to ``device``."""
        return self._map(lambda t: t.to(device))

    def detach(self) -> _TensorFields:
        return self._map(lambda t: t.detach())

    def tensors(self) -> dict[str, Tensor]:
        """Set fields by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}  # type: ignore[arg-type]


@dataclass
class FrameOutput(_TensorFields):
    """Predictions for one frame of B streams.

    Attributes:
        pts_world: (B, H, W, 3) global pointmap X^g_t in the world frame (metres).
        conf_world: (B, H, W) its confidence, >= 1.
        pts_cam: (B, H, W, 3) self-view pointmap X^s_t in camera t's frame (metres).
        conf_cam: (B, H, W) its confidence, >= 1.
        depth: (B, H, W) z-depth, equal to ``pts_cam[..., 2]``.
        intrinsics: (B, 3, 3) pinhole intrinsics from the predicted horizontal FoV, fy = fx.
        cam2world: (B, 4, 4) camera t -> world (camera 0); identity for frame 0.
        fov_x: (B,) horizontal field of view in radians, in (0, pi).
        quat_wxyz: (B, 4) unit quaternion of cam2world's rotation, w >= 0.
        translation: (B, 3) cam2world's translation (metres).
        dynamic_prob: (B, H, W) probability that the pixel moves independently of the camera,
            or None when the model has no motion head.
        flow: (B, H/4, W/4, 2) with ``heads.camera_pose == "procrustes"``: where each 4x4 cell
            of this frame is in the previous frame, (dx, dy) pixels (zeros for frame 0); else None.
        flow_weight: (B, H/4, W/4) the weight of each cell in the pose fit, in [0, 1] (zeros
            for frame 0); else None.
        loop_keyframe: (B,) int64 with ``heads.loop_closure``: the index of the past frame this
            frame closed a loop onto, -1 where no loop closed; else None.
        loop_correction: (B, 4, 4) with ``heads.loop_closure``: the world-side correction of the
            loop (``cam2world`` = loop_correction @ the chained pose; the identity where no loop
            closed). The frames between the keyframe and this one drifted by a growing share of
            it; a consumer that keeps them spreads it over them (`mem4d.scene.SceneMemory.
            close_loop`). Else None.
    """

    pts_world: Tensor
    conf_world: Tensor
    pts_cam: Tensor
    conf_cam: Tensor
    depth: Tensor
    intrinsics: Tensor
    cam2world: Tensor
    fov_x: Tensor
    quat_wxyz: Tensor
    translation: Tensor
    dynamic_prob: Tensor | None = None
    flow: Tensor | None = None
    flow_weight: Tensor | None = None
    loop_keyframe: Tensor | None = None
    loop_correction: Tensor | None = None


@dataclass
class SequenceOutput(_TensorFields):
    """Predictions for T frames of B streams: every `FrameOutput` field with a T dim after B.

    ``seq[t]`` / ``seq.frame(t)`` gives frame t as a `FrameOutput`; ``len(seq)`` is T.
    """

    pts_world: Tensor
    conf_world: Tensor
    pts_cam: Tensor
    conf_cam: Tensor
    depth: Tensor
    intrinsics: Tensor
    cam2world: Tensor
    fov_x: Tensor
    quat_wxyz: Tensor
    translation: Tensor
    dynamic_prob: Tensor | None = None
    flow: Tensor | None = None
    flow_weight: Tensor | None = None
    loop_keyframe: Tensor | None = None
    loop_correction: Tensor | None = None

    @classmethod
    def stack(cls, frames: list[FrameOutput]) -> SequenceOutput:
        """Stacks per-frame outputs along a new dim 1."""
        if not frames:
            raise ValueError("SequenceOutput.stack needs at least one FrameOutput")
        out = {}
        for f in fields(FrameOutput):
            values = [getattr(fr, f.name) for fr in frames]
            out[f.name] = None if values[0] is None else torch.stack(values, dim=1)
        return cls(**out)

    @property
    def num_frames(self) -> int:
        return int(self.pts_world.shape[1])

    def __len__(self) -> int:
        return self.num_frames

    def frame(self, t: int) -> FrameOutput:
        """Frame ``t`` (negative indices count from the end)."""
        if not -self.num_frames <= t < self.num_frames:
            raise IndexError(f"frame {t} out of range for a sequence of {self.num_frames} frames")
        return FrameOutput(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[:, t])
                              for f in fields(FrameOutput)})

    def __getitem__(self, t: int) -> FrameOutput:
        return self.frame(t)
