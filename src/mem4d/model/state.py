"""`StreamState`: everything a Mem4D stream remembers between frames.

The model holds only parameters; ``Mem4D.step(frame, state) -> (output, new_state)`` never
mutates ``state`` (the lists and dict are rebuilt each step), so an old state can be resumed,
two streams can share one model, and autograd sees no in-place writes.

What lives here (B streams in lockstep, N tokens per frame, D = ``Mem4DConfig.dim``):

- ``feats``: projected encoder features F of the last ``cfg.history`` frames, oldest first,
  each (B, N, D); the TCA window and the TDM's two past frames are read from it.
- ``tdm_feats``: with ``tdm.input == "enriched"``, the TCA outputs x of the last ``tdm.num_past``
  frames, oldest first, each (B, N, D) (what the TDM then correlates); else empty.
- ``psm_frames`` / ``psm_tokens``: the PSM queue, absolute frame indices (ascending, frame 0
  first) and their E_p features P_j (B, N, D). At most ``psm.capacity`` entries.
- ``psm_scale``: (B,) scene scale of frame 0's predicted global pointmap (E_p normaliser).
- ``psm_cache``: compressed PSM groups keyed by ``(tier, first_frame, last_frame)`` ->
  (B, n, D); only the groups used by the last readout are kept (see ``model/psm.py``);
  ``detach()`` empties it.
- ``unified``: (B, S, D) recurrent state tokens of the ``unified`` variant (None before frame 0).
- ``cam2world``: (B, 4, 4) pose of the last frame, kept when ``heads.camera_pose == "chained"``
  or poses are refined (the next frame's pose is this one times a relative pose); else None.
- ``prev_image`` (B, 3, H, W), ``prev_depth`` (B, H, W), ``prev_weight`` (B, H, W) and
  ``pose_velocity`` (B, 4, 4, the last frame-to-frame motion): what ``heads.pose_refinement
  == "photometric"`` aligns the next frame against; None otherwise.
- ``prev_match_feats`` (B, C, H/4, W/4) and ``prev_pts_cam`` (B, H, W, 3): the last frame's
  matching features and self-view pointmap, what ``heads.camera_pose == "procrustes"``
  matches the next frame against; None otherwise.
- ``focal_costs`` (B, S): with ``heads.refine_focal``, the photometric cost of each focal
  hypothesis summed over the frames so far (`mem4d.model.focal_calibration`), and
  ``intrinsics_sum`` (B, 3, 3), the network's intrinsics summed over them (their mean is the
  video's camera); None otherwise.
- ``depth_correction`` (B,): with ``heads.refine_scale``, the last frame's depth factor
  (`mem4d.model.scale_chain`); None otherwise.
- ``key_images`` (B, C, 3, h, w), ``key_depths`` / ``key_weights`` (B, C, h, w), ``key_cam2world``
  (B, C, 4, 4) and ``key_frames`` (B, C, frame index, -1 for an empty slot): with
  ``heads.loop_closure``, the keyframes that later frames close loops against
  (`mem4d.model.loop_closure`: C = its ``CAPACITY``, stored with a long side of at most its
  ``KEY_SIDE``, allocated whole at frame 0); None otherwise.

Size: grows during the first ``history + psm.capacity`` frames, then stays bounded: the
queue and the feature window are full, and only the number of partial compressed groups
(one more or one fewer, depending on how absolute group blocks align with t) varies, by a
few hundred kilobytes at most for the paper preset (constant for ``tiny``).

Saved as one safetensors file whose metadata holds the non-tensor fields as JSON (no pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["StreamState", "validate_frame"]

_FORMAT = "mem4d.StreamState/1"
_POSE_FIELDS = ("cam2world", "prev_image", "prev_depth", "prev_weight", "pose_velocity", "prev_match_feats",
                "prev_pts_cam", "focal_costs", "intrinsics_sum", "depth_correction", "key_images", "key_depths", "key_weights",
                "key_cam2world", "key_frames")


@dataclass
class StreamState:
    """Memory of B lockstep streams (see the module docstring for each field)."""

    batch_size: int
    image_size: tuple[int, int]
    frame_index: int = 0
    feats: list[Tensor] = field(default_factory=list)
    tdm_feats: list[Tensor] = field(default_factory=list)
    psm_frames: list[int] = field(default_factory=list)
    psm_tokens: list[Tensor] = field(default_factory=list)
    psm_scale: Tensor | None = None
    psm_cache: dict[tuple[int, int, int], Tensor] = field(default_factory=dict)
    unified: Tensor | None = None
    cam2world: Tensor | None = None
    prev_image: Tensor | None = None
    prev_depth: Tensor | None = None
    prev_weight: Tensor | None = None
    pose_velocity: Tensor | None = None
    prev_match_feats: Tensor | None = None
    prev_pts_cam: Tensor | None = None
    focal_costs: Tensor | None = None
    intrinsics_sum: Tensor | None = None
    depth_correction: Tensor | None = None
    key_images: Tensor | None = None
    key_depths: Tensor | None = None
    key_weights: Tensor | None = None
    key_cam2world: Tensor | None = None
    key_frames: Tensor | None = None

    # ----- tensor plumbing -----
    def _map(self, fn: Callable[[Tensor], Tensor]) -> StreamState:
        return replace(
            self,
            feats=[fn(t) for t in self.feats],
            tdm_feats=[fn(t) for t in self.tdm_feats],
            psm_frames=list(self.psm_frames),
            psm_tokens=[fn(t) for t in self.psm_tokens],
            psm_scale=None if self.psm_scale is None else fn(self.psm_scale),
            psm_cache={k: fn(v) for k, v in self.psm_cache.items()},
            unified=None if self.unified is None else fn(self.unified),
            **{name: None if getattr(self, name) is None else fn(getattr(self, name)) for name in _POSE_FIELDS},
        )

    def detach(self) -> StreamState:
        """A copy cut from the autograd graph (truncated back-propagation through time).

        The PSM compression cache is dropped, not detached: its groups were computed with the
        compressor weights of before the cut, and an optimiser step at the cut would leave them
        stale. The next readout recomputes every group from the (detached) queue, which also
        lets the compressors receive gradients from all groups again.
        """
        return replace(self._map(lambda t: t.detach()), psm_cache={})

    def to(self, device: torch.device | str) -> StreamState:
        """A copy with every tensor on ``device``."""
        return self._map(lambda t: t.to(device))

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor by a flat, stable name (the safetensors keys)."""
        out: dict[str, Tensor] = {}
        for i, t in enumerate(self.feats):
            out[f"feats.{i}"] = t
        for i, t in enumerate(self.tdm_feats):
            out[f"tdm_feats.{i}"] = t
        for j, t in zip(self.psm_frames, self.psm_tokens):
            out[f"psm_tokens.{j}"] = t
        if self.psm_scale is not None:
            out["psm_scale"] = self.psm_scale
        for (tier, first, last), t in self.psm_cache.items():
            out[f"psm_cache.{tier}.{first}.{last}"] = t
        if self.unified is not None:
            out["unified"] = self.unified
        for name in _POSE_FIELDS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def nbytes(self) -> int:
        """Bytes held by the state's tensors."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    @property
    def device(self) -> torch.device | None:
        """Device of the state's tensors (None while it holds none)."""
        ts = self.tensors()
        return next(iter(ts.values())).device if ts else None

    # ----- disk -----
    def save(self, path: str | os.PathLike) -> None:
        """Writes the state to one ``.safetensors`` file (atomically: temp file + rename)."""
        from safetensors.torch import save_file

        from mem4d.model.pretrained import atomic_write

        path = Path(path)
        meta = {
            "format": _FORMAT,
            "batch_size": self.batch_size,
            "image_size": list(self.image_size),
            "frame_index": self.frame_index,
            "num_feats": len(self.feats),
            "num_tdm_feats": len(self.tdm_feats),
            "psm_frames": self.psm_frames,
            "psm_cache": [list(k) for k in self.psm_cache],
        }
        tensors = {k: v.detach().contiguous().clone() for k, v in self.tensors().items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"mem4d": json.dumps(meta)}))

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> StreamState:
        """Reads a state written by :meth:`save`; a foreign or damaged file raises ``ValueError``."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no stream state at {path}")
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                raw = (f.metadata() or {}).get("mem4d")
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = json.loads(raw) if raw else None
        except Exception as err:  # safetensors raises several types for damaged files
            raise ValueError(f"{path} is not a readable safetensors file ({err}); save it again with StreamState.save") from err
        if not meta or meta.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a mem4d stream state (expected format {_FORMAT}); write it with StreamState.save")
        try:
            frames = [int(j) for j in meta["psm_frames"]]
            state = cls(
                batch_size=int(meta["batch_size"]),
                image_size=(int(meta["image_size"][0]), int(meta["image_size"][1])),
                frame_index=int(meta["frame_index"]),
                feats=[tensors[f"feats.{i}"] for i in range(int(meta["num_feats"]))],
                tdm_feats=[tensors[f"tdm_feats.{i}"] for i in range(int(meta.get("num_tdm_feats", 0)))],
                psm_frames=frames,
                psm_tokens=[tensors[f"psm_tokens.{j}"] for j in frames],
                psm_scale=tensors.get("psm_scale"),
                psm_cache={(int(a), int(b), int(c)): tensors[f"psm_cache.{a}.{b}.{c}"] for a, b, c in meta["psm_cache"]},
                unified=tensors.get("unified"),
                **{name: tensors.get(name) for name in _POSE_FIELDS},
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ValueError(f"{path}: stream state is incomplete or inconsistent ({err!r}); save it again") from err
        return state


def validate_frame(frame: object, state: StreamState) -> None:
    """Raises ``ValueError`` (saying what to do) unless ``frame`` fits ``state``.

    A frame is a float tensor (B, 3, H, W) with values in [0, 1], B and (H, W) as given to
    ``init_state``.
    """
    if not isinstance(frame, Tensor):
        raise ValueError(f"step expects a torch.Tensor frame (B, 3, H, W), got {type(frame).__name__}")
    B, (H, W) = state.batch_size, state.image_size
    if frame.dim() != 4 or frame.shape[1] != 3:
        hint = " (for a clip (B, T, 3, H, W) call the model itself, or step one frame at a time)" if frame.dim() == 5 else ""
        raise ValueError(f"step expects a frame of shape (B, 3, H, W), got {tuple(frame.shape)}{hint}")
    if not frame.is_floating_point():
        raise ValueError(f"frames must be float in [0, 1], got dtype {frame.dtype}; convert with frame.float() / 255")
    if frame.shape[0] != B:
        raise ValueError(f"frame batch {frame.shape[0]} != state batch_size {B}; call init_state(batch_size={frame.shape[0]}, ...)")
    if tuple(frame.shape[-2:]) != (H, W):
        raise ValueError(
            f"frame size {frame.shape[-2]}x{frame.shape[-1]} != the stream's {H}x{W} (HxW); resize frames to "
            f"{H}x{W} or start a new stream with init_state(image_size=({frame.shape[-2]}, {frame.shape[-1]}))"
        )
    ok = bool(((frame >= 0) & (frame <= 1)).all())  # NaN fails both comparisons
    if not ok:
        if bool(torch.isnan(frame).any()):
            raise ValueError("frame contains NaN values; check the decoder / preprocessing that produced it")
        raise ValueError(
            f"frame values must be in [0, 1], got range [{float(frame.min()):.3g}, {float(frame.max()):.3g}]; "
            "divide uint8 images by 255 (normalisation happens inside the model)"
        )
