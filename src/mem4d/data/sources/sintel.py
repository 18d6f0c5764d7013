"""MPI Sintel reader (images of MPI-Sintel-complete + the Sintel depth/camera training data).

Layout (``root`` is the Sintel folder holding ``training/``, or ``training/`` itself)::

    training/final/<seq>/frame_XXXX.png        (or training/clean/ with pass_name="clean")
    training/depth/<seq>/frame_XXXX.dpt
    training/camdata_left/<seq>/frame_XXXX.cam

File formats (Sintel SDK, little-endian):
- ``.dpt``: float32 tag 202021.25, int32 width, int32 height, then width*height float32 depth;
- ``.cam``: float32 tag 202021.25, then the 3x3 intrinsic matrix M and the 3x4 extrinsic
  matrix N as float64 (row-major), with ``x = M N X`` for a homogeneous world point X, i.e.
  N is world-to-camera.

Conventions converted here: ``cam2world = inverse([N; 0 0 0 1])``; Sintel's camera axes are
taken as OpenCV's (M has positive fx, fy with the principal point near the image centre and
image rows growing downwards, and MonST3R/CUT3R use the inverted N as is); depth is taken as
z-depth (the SDK's depth is the camera-space z), in the scene's units (metres as far as the
benchmarks are concerned). Non-finite and non-positive depth is invalid. Sky / far background
has huge depth values: pass ``max_depth`` (70 in the video-depth protocol) to drop it.
The depth belongs to the left view, so only ``camdata_left`` is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mem4d.data.sources.base import Frame, SequenceSource, orthonormalize_pose, read_rgb
from mem4d.geometry.se3 import se3_inverse

__all__ = ["SintelSource", "read_dpt", "read_cam", "write_dpt", "write_cam"]

TAG_FLOAT = 202021.25


def read_dpt(path: str | Path) -> np.ndarray:
    """(H, W) float32 depth of a Sintel ``.dpt`` file."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, dtype="<f4", count=1)
        if tag.size != 1 or tag[0] != np.float32(TAG_FLOAT):
            raise ValueError(f"{path}: not a Sintel .dpt file (tag {tag[:1]}, expected {TAG_FLOAT})")
        width, height = (int(x) for x in np.fromfile(f, dtype="<i4", count=2))
        if not (0 < width < 100_000 and 0 < height < 100_000):
            raise ValueError(f"{path}: implausible .dpt size {width}x{height}")
        data = np.fromfile(f, dtype="<f4", count=width * height)
    if data.size != width * height:
        raise ValueError(f"{path}: truncated .dpt ({data.size} of {width * height} values)")
    return data.reshape(height, width)


def read_cam(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(M (3, 3) intrinsics, N (3, 4) world-to-camera) of a Sintel ``.cam`` file, float64."""
    with open(path, "rb") as f:
        tag = np.fromfile(f, dtype="<f4", count=1)
        if tag.size != 1 or tag[0] != np.float32(TAG_FLOAT):
            raise ValueError(f"{path}: not a Sintel .cam file (tag {tag[:1]}, expected {TAG_FLOAT})")
        M = np.fromfile(f, dtype="<f8", count=9)
        N = np.fromfile(f, dtype="<f8", count=12)
    if M.size != 9 or N.size != 12:
        raise ValueError(f"{path}: truncated .cam file")
    return M.reshape(3, 3), N.reshape(3, 4)


def write_dpt(path: str | Path, depth: np.ndarray) -> None:
    """Writes a Sintel ``.dpt`` file (used by tests and converters)."""
    depth = np.asarray(depth, dtype="<f4")
    with open(path, "wb") as f:
        np.array([TAG_FLOAT], dtype="<f4").tofile(f)
        np.array([depth.shape[1], depth.shape[0]], dtype="<i4").tofile(f)
        depth.tofile(f)


def write_cam(path: str | Path, M: np.ndarray, N: np.ndarray) -> None:
    """Writes a Sintel ``.cam`` file: M (3, 3) intrinsics, N (3, 4) world-to-camera."""
    with open(path, "wb") as f:
        np.array([TAG_FLOAT], dtype="<f4").tofile(f)
        np.asarray(M, dtype="<f8").reshape(9).tofile(f)
        np.asarray(N, dtype="<f8").reshape(12).tofile(f)


@dataclass
class _Seq:
    stems: list[str]


class SintelSource(SequenceSource):
    """Sintel training sequences with depth and cameras (see the module docstring).

    Args:
        root: Sintel root (with ``training/``) or the ``training`` folder.
        pass_name: ``"final"`` (default, as in the benchmarks) or ``"clean"``.
        **kwargs: ``sequences``, ``max_depth``, ``min_depth`` of :class:`SequenceSource`.
    """

    name = "sintel"

    def __init__(
        self,
        root: str | Path,
        *,
        pass_name: str = "final",
        sequences: Iterable[str] | None = None,
        max_depth: float | None = None,
        min_depth: float = 0.0,
    ) -> None:
        super().__init__(root, sequences=sequences, max_depth=max_depth, min_depth=min_depth)
        if pass_name not in ("final", "clean"):
            raise ValueError(f"sintel: pass_name must be 'final' or 'clean', got {pass_name!r}")
        self.pass_name = pass_name
        self.training = self.root / "training" if (self.root / "training").is_dir() else self.root
        self._seqs: dict[str, _Seq] = {}

    def _dir(self, kind: str, sequence: str) -> Path:
        return self.training / kind / sequence

    def _discover(self) -> list[str]:
        images = self.training / self.pass_name
        if not images.is_dir():
            return []
        return [
            p.name
            for p in sorted(images.iterdir())
            if p.is_dir() and self._dir("depth", p.name).is_dir() and self._dir("camdata_left", p.name).is_dir()
        ]

    def _get(self, sequence: str) -> _Seq:
        if sequence not in self._seqs:
            self._check_sequence(sequence)
            stems = sorted(p.stem for p in self._dir(self.pass_name, sequence).glob("frame_*.png"))
            stems = [s for s in stems if (self._dir("depth", sequence) / f"{s}.dpt").is_file()
                     and (self._dir("camdata_left", sequence) / f"{s}.cam").is_file()]
            self._seqs[sequence] = _Seq(stems)
        return self._seqs[sequence]

    def num_frames(self, sequence: str) -> int:
        return len(self._get(sequence).stems)

    def load_frame(self, sequence: str, index: int) -> Frame:
        stem = self._get(sequence).stems[index]
        depth = read_dpt(self._dir("depth", sequence) / f"{stem}.dpt")
        M, N = read_cam(self._dir("camdata_left", sequence) / f"{stem}.cam")
        world2cam = np.eye(4)
        world2cam[:3] = N
        world2cam = orthonormalize_pose(world2cam, what=f"sintel/{sequence}/{stem}.cam")
        cam2world = se3_inverse(torch.from_numpy(world2cam)).numpy()
        valid = np.isfinite(depth) & (depth > 0)
        return Frame(
            image=read_rgb(self._dir(self.pass_name, sequence) / f"{stem}.png"),
            depth=np.where(valid, depth, 0.0).astype(np.float32),
            valid=valid,
            intrinsics=M,
            cam2world=cam2world,
            frame_id=stem,
        )
