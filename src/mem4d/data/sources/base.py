"""The common interface of dataset readers, plus the small I/O helpers they share.

A *source* is a collection of sequences (videos) of one dataset on disk. It lists its
sequences, says how many frames each has and loads any frames of one sequence by index as a
:class:`~mem4d.data.sample.Sample` at the dataset's native resolution:

    source.sequences() -> list[str]
    source.num_frames(sequence) -> int
    source.load(sequence, indices) -> Sample

Every reader converts its dataset's conventions in one place (its ``load_frame``): images
float in [0, 1], OpenCV cameras (x right, y down, z forward), ``cam2world`` poses, z-depth in
metres with a ``valid`` mask (``depth == 0`` where invalid). Poses are in the dataset's own
world frame, in float64, with rotations projected onto SO(3) (:func:`orthonormalize_pose`); the clip pipeline (:mod:`mem4d.data.clips`) re-anchors every clip to
its first frame (``Sample.reanchor()``) and resizes it.

Anything with those three methods (and a ``name``) is a source for the clip sampler
(:class:`SourceLike`); :class:`SequenceSource` is the base class of this package's readers,
which implement ``_discover`` (sequence names), ``num_frames`` and ``load_frame``.
"""

from __future__ import annotations

import fnmatch
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from mem4d.data.sample import Sample

__all__ = [
    "Frame",
    "SequenceSource",
    "SourceLike",
    "read_rgb",
    "read_depth_png",
    "orthonormalize_pose",
    "reprojection_depth_errors",
]


@runtime_checkable
class SourceLike(Protocol):
    """What the clip sampler needs from a source (structural: no inheritance required)."""

    name: str

    def sequences(self) -> list[str]: ...

    def num_frames(self, sequence: str) -> int: ...

    def load(self, sequence: str, indices: Sequence[int]) -> Sample: ...


@dataclass
class Frame:
    """One frame of a sequence, already in this library's conventions (numpy, native size).

    Attributes:
        image: (H, W, 3) uint8, or float in [0, 1].
        depth: (H, W) z-depth in metres; anything where ``valid`` is False is ignored.
        valid: (H, W) bool.
        intrinsics: (3, 3) pinhole intrinsics in pixels (pixel centres at integers).
        cam2world: (4, 4) OpenCV camera-to-world in the dataset's world frame.
        dynamic_mask: optional (H, W) bool, True on independently moving surfaces.
        frame_id: the dataset's name for the frame (file stem, timestamp...).
        meta: extra per-frame facts (kept as a list in the clip's ``meta["frames"]``).
    """

    image: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    intrinsics: np.ndarray
    cam2world: np.ndarray
    dynamic_mask: np.ndarray | None = None
    frame_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class SequenceSource(ABC):
    """Base class of the dataset readers.

    Args:
        root: the dataset folder (layout documented by each reader).
        sequences: keep only these sequences (exact names or ``fnmatch`` patterns).
        max_depth: depth above this (metres) is marked invalid (e.g. 70 for the Sintel/Bonn
            evaluation protocol); ``None`` keeps everything finite.
        min_depth: depth at or below this is invalid (0 is always invalid).
    """

    #: Registry / dataset name, also the first part of every clip's ``name``.
    name: ClassVar[str] = "source"
    #: Whether the dataset has camera poses (False: cam2world is the identity everywhere).
    has_poses: ClassVar[bool] = True

    def __init__(
        self,
        root: str | Path,
        *,
        sequences: Iterable[str] | None = None,
        max_depth: float | None = None,
        min_depth: float = 0.0,
    ) -> None:
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise FileNotFoundError(f"{type(self).__name__}: dataset root {self.root} does not exist")
        self.max_depth = max_depth
        self.min_depth = min_depth
        self._patterns = None if sequences is None else [str(s) for s in sequences]
        self._sequences: list[str] | None = None

    # -- what a reader implements ------------------------------------------------------------

    @abstractmethod
    def _discover(self) -> list[str]:
        """All sequence names under ``root`` (sorted)."""

    @abstractmethod
    def num_frames(self, sequence: str) -> int:
        """Number of usable frames of ``sequence``."""

    @abstractmethod
    def load_frame(self, sequence: str, index: int) -> Frame:
        """Frame ``index`` (0-based, < ``num_frames``) of ``sequence`` in library conventions."""

    # -- common behaviour ----------------------------------------------------------------------

    def sequences(self) -> list[str]:
        """Names of the sequences (after the ``sequences`` filter), sorted."""
        if self._sequences is None:
            found = self._discover()
            if self._patterns is not None:
                found = [s for s in found if any(s == p or fnmatch.fnmatchcase(s, p) for p in self._patterns)]
            self._sequences = sorted(found)
        return list(self._sequences)

    def _check_sequence(self, sequence: str) -> None:
        if sequence not in self.sequences():
            raise KeyError(f"{self.name}: unknown sequence {sequence!r} under {self.root}; have {self.sequences()[:8]}...")

    def load(self, sequence: str, indices: Sequence[int]) -> Sample:
        """Frames ``indices`` of ``sequence`` as one clip at native resolution (not re-anchored)."""
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError(f"{self.name}: load() needs at least one frame index")
        n = self.num_frames(sequence)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"{self.name}/{sequence}: frame indices {bad} out of range [0, {n})")
        frames = [self.load_frame(sequence, i) for i in indices]
        return self._stack(sequence, indices, frames)

    def _stack(self, sequence: str, indices: list[int], frames: list[Frame]) -> Sample:
        H, W = frames[0].depth.shape
        images, depths, valids, Ks, poses, dyn = [], [], [], [], [], []
        for f in frames:
            if f.image.shape[:2] != (H, W) or f.depth.shape != (H, W) or f.valid.shape != (H, W):
                raise ValueError(
                    f"{self.name}/{sequence}: frame {f.frame_id!r} has image {f.image.shape[:2]}, depth "
                    f"{f.depth.shape}, valid {f.valid.shape}; expected all {(H, W)} like the clip's first frame"
                )
            image = f.image
            image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
            depth = np.asarray(f.depth, dtype=np.float32)
            valid = np.asarray(f.valid, dtype=bool) & np.isfinite(depth) & (depth > max(self.min_depth, 0.0))
            if self.max_depth is not None:
                valid &= depth <= self.max_depth
            images.append(np.clip(image, 0.0, 1.0))
            depths.append(np.where(valid, depth, 0.0).astype(np.float32))
            valids.append(valid)
            Ks.append(np.asarray(f.intrinsics, dtype=np.float64))
            poses.append(orthonormalize_pose(f.cam2world, what=f"{self.name}/{sequence} frame {f.frame_id}"))
            dyn.append(f.dynamic_mask)
        dynamic = None
        if all(d is not None for d in dyn):
            dynamic = torch.from_numpy(np.stack(dyn).astype(bool))
        ids = [f.frame_id for f in frames]
        return Sample(
            images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            depth=torch.from_numpy(np.stack(depths)),
            valid=torch.from_numpy(np.stack(valids)),
            intrinsics=torch.from_numpy(np.stack(Ks)).float(),
            cam2world=torch.from_numpy(np.stack(poses)),
            dynamic_mask=dynamic,
            name=f"{self.name}/{sequence}/{ids[0]}-{ids[-1]}",
            meta={
                "dataset": self.name,
                "sequence": sequence,
                "indices": indices,
                "frame_ids": ids,
                "has_poses": self.has_poses,
                "frames": [f.meta for f in frames] if any(f.meta for f in frames) else None,
            },
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"


# -- file helpers -------------------------------------------------------------------------------


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (PNG/JPEG; palette/grey/alpha converted)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_png_uint16(path: str | Path) -> np.ndarray:
    """Raw values of a 16-bit (or 8-bit) single-channel PNG as float64, shape (H, W)."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    if arr.ndim == 3:
        raise ValueError(f"{path}: expected a single-channel depth PNG, got shape {arr.shape}")
    return arr.astype(np.float64)


def read_depth_png(
    path: str | Path, scale: float, invalid_values: Iterable[int] = (0,)
) -> tuple[np.ndarray, np.ndarray]:
    """Depth from a 16-bit PNG: ``depth = value / scale``; ``invalid_values`` (raw) are invalid.

    Returns:
        depth (H, W) float32 metres (0 where invalid), valid (H, W) bool.
    """
    raw = read_png_uint16(path)
    valid = np.ones(raw.shape, dtype=bool)
    for v in invalid_values:
        valid &= raw != v
    depth = np.where(valid, raw / scale, 0.0).astype(np.float32)
    return depth, valid


def read_numbers(path: str | Path) -> np.ndarray:
    """All whitespace-separated numbers of a text file (``#`` comments skipped) as float64."""
    values: list[float] = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            values.extend(float(x) for x in line.replace(",", " ").split())
    return np.asarray(values, dtype=np.float64)


def orthonormalize_pose(a2b: np.ndarray, tol: float = 1e-2, what: str = "pose") -> np.ndarray:
    """The rigid transform nearest to ``a2b`` (4, 4): its 3x3 block projected onto SO(3) by SVD.

    Datasets store rotations rounded or slightly scaled (7-Scenes' are off by ~1e-4); the
    projection makes inverses exact. A block further than ``tol`` from a rotation (or with a
    negative determinant) is a format or convention error and raises ``ValueError``.
    """
    a2b = np.asarray(a2b, dtype=np.float64)
    R = a2b[:3, :3]
    U, _, Vt = np.linalg.svd(R)
    Rn = U @ Vt
    if np.linalg.det(Rn) < 0 or np.abs(Rn - R).max() > tol:
        raise ValueError(f"{what}: rotation block is not a rotation (max deviation {np.abs(Rn - R).max():.3g}, "
                         f"det {np.linalg.det(R):.3g}): {R.tolist()}")
    out = a2b.copy()
    out[:3, :3] = Rn
    out[3] = (0.0, 0.0, 0.0, 1.0)
    return out


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 3) float64 pinhole matrix."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


# -- consistency check used by the readers' tests --------------------------------------------


def reprojection_depth_errors(sample: Sample, i: int, j: int, step: int = 1) -> Tensor:
    """Relative depth errors of frame ``i``'s valid pixels re-observed in frame ``j``.

    Every valid pixel of frame i is lifted to the world with its depth, intrinsics and
    cam2world, moved into camera j and projected with j's intrinsics. Where it lands inside
    frame j (and the four depth pixels around that spot are valid), the z of the transformed
    point is compared with frame j's depth there, interpolated bilinearly in *inverse* depth
    (exact on planes). Consistent poses, intrinsics and z-depth give errors near 0 except
    at occlusions and depth edges; a convention bug (transposed pose, flipped axis, ray
    length instead of z) gives large errors almost everywhere.

    Args:
        sample: a clip (any world frame).
        i, j: source and target frames.
        step: use every ``step``-th row and column of frame i (faster checks).

    Returns:
        (N,) |z_pred - depth_j| / depth_j for the N co-visible pixels (float64).
    """
    from mem4d.geometry.camera import depth_to_pts_world, project
    from mem4d.geometry.se3 import se3_inverse, transform_points

    depth = sample.depth.double()
    K = sample.intrinsics.double()
    c2w = sample.cam2world.double()
    pts_world = depth_to_pts_world(depth[i], K[i], c2w[i])[::step, ::step][sample.valid[i, ::step, ::step]]  # (N, 3)
    pts_j = transform_points(se3_inverse(c2w[j]), pts_world)
    front = pts_j[:, 2] > 1e-6
    pts_j = pts_j[front]
    uv = project(K[j], pts_j)
    H, W = depth.shape[-2:]
    u, v = uv[:, 0], uv[:, 1]
    inside = (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    u, v, z = u[inside], v[inside], pts_j[inside, 2]
    u0 = u.floor().long().clamp(max=W - 2) if W > 1 else u.floor().long()
    v0 = v.floor().long().clamp(max=H - 2) if H > 1 else v.floor().long()
    du, dv = u - u0, v - v0
    valid_j = sample.valid[j]
    inv = torch.where(valid_j, 1.0 / depth[j].clamp_min(1e-12), torch.zeros_like(depth[j]))
    ok = valid_j[v0, u0] & valid_j[v0, u0 + 1] & valid_j[v0 + 1, u0] & valid_j[v0 + 1, u0 + 1]
    inv_interp = (
        inv[v0, u0] * (1 - du) * (1 - dv)
        + inv[v0, u0 + 1] * du * (1 - dv)
        + inv[v0 + 1, u0] * (1 - du) * dv
        + inv[v0 + 1, u0 + 1] * du * dv
    )
    d_j = 1.0 / inv_interp[ok]
    return (z[ok] - d_j).abs() / d_j
