"""Neural RGB-D (NRGBD, Azinović et al. 2022) synthetic scenes reader.

Layout of one scene folder (``breakfast_room/``, ``green_room/``...) under ``root``::

    images/img<N>.png        colour (640x480 in the release)
    depth/depth<N>.png       uint16 millimetres, 0 = invalid (``depth_dir`` picks e.g.
                             ``depth_filtered`` or ``depth_with_noise`` instead)
    poses.txt                one camera-to-world per frame as 4 lines of 4 numbers,
                             OpenGL camera axes (x right, y up, z backward); "nan" rows
                             mark frames without a pose
    focal.txt                (optional) the focal length in pixels

Conventions converted here: depth ``/ 1000``; OpenGL -> OpenCV by negating the pose's columns
1 and 2 (``cam2world_cv = cam2world_gl @ diag(1, -1, -1, 1)``); intrinsics fx = fy =
554.2562584220408 (or ``focal.txt``), cx = W / 2, cy = H / 2 (320, 240 for the release's
640x480 frames, as in the CUT3R protocol). Frames whose pose has a NaN are
*dropped* from the sequence (the frame list skips them; ``meta["frame_ids"]`` keeps the file
numbers), so a clip never contains an unusable pose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mem4d.data.sources.base import Frame, SequenceSource, intrinsics_matrix, read_depth_png, read_numbers, read_rgb

__all__ = ["NrgbdSource", "read_nrgbd_poses", "OPENGL_TO_OPENCV"]

NRGBD_FOCAL = 554.2562584220408
#: Right-multiplying an OpenGL cam2world by this gives the OpenCV cam2world (and vice versa).
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def read_nrgbd_poses(path: str | Path) -> np.ndarray:
    """(N, 4, 4) float64 OpenGL camera-to-world blocks of a ``poses.txt`` (NaN kept)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if parts:
            rows.append([float(x) for x in parts])
    arr = np.asarray(rows, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] % 4:
        raise ValueError(f"{path}: expected 4-line blocks of 4 numbers, got {arr.shape}")
    return arr.reshape(-1, 4, 4)


def _number(name: str) -> int:
    m = re.search(r"(\d+)", name)
    return int(m.group(1)) if m else -1


@dataclass
class _Seq:
    numbers: list[int]
    cam2world: np.ndarray  # (N, 4, 4) OpenCV
    focal: float


class NrgbdSource(SequenceSource):
    """NRGBD scenes (see the module docstring).

    Args:
        root: folder of scene folders, or one scene folder.
        depth_dir: depth sub-folder (``"depth"``, ``"depth_filtered"``, ``"depth_with_noise"``).
        **kwargs: ``sequences``, ``max_depth``, ``min_depth`` of :class:`SequenceSource`.
    """

    name = "nrgbd"

    def __init__(
        self,
        root: str | Path,
        *,
        depth_dir: str = "depth",
        sequences: Iterable[str] | None = None,
        max_depth: float | None = None,
        min_depth: float = 0.0,
    ) -> None:
        super().__init__(root, sequences=sequences, max_depth=max_depth, min_depth=min_depth)
        self.depth_dir = depth_dir
        self._seqs: dict[str, _Seq] = {}

    @staticmethod
    def _is_scene(folder: Path) -> bool:
        return (folder / "poses.txt").is_file() and (folder / "images").is_dir()

    def _discover(self) -> list[str]:
        if self._is_scene(self.root):
            return [self.root.name]
        return [p.name for p in sorted(self.root.iterdir()) if p.is_dir() and self._is_scene(p)]

    def _folder(self, sequence: str) -> Path:
        return self.root if self._is_scene(self.root) and sequence == self.root.name else self.root / sequence

    def _get(self, sequence: str) -> _Seq:
        if sequence in self._seqs:
            return self._seqs[sequence]
        self._check_sequence(sequence)
        folder = self._folder(sequence)
        numbers = sorted(_number(p.name) for p in (folder / "images").glob("img*.png"))
        poses_gl = read_nrgbd_poses(folder / "poses.txt")
        if len(poses_gl) < (max(numbers) + 1 if numbers else 0):
            raise ValueError(f"nrgbd/{sequence}: {len(poses_gl)} poses for images up to img{max(numbers)}.png")
        keep = [n for n in numbers if np.isfinite(poses_gl[n]).all()]
        focal = NRGBD_FOCAL
        if (folder / "focal.txt").is_file():
            focal = float(read_numbers(folder / "focal.txt")[0])
        seq = _Seq(
            numbers=keep,
            cam2world=poses_gl[keep] @ OPENGL_TO_OPENCV,
            focal=focal,
        )
        self._seqs[sequence] = seq
        return seq

    def num_frames(self, sequence: str) -> int:
        return len(self._get(sequence).numbers)

    def load_frame(self, sequence: str, index: int) -> Frame:
        seq = self._get(sequence)
        n = seq.numbers[index]
        folder = self._folder(sequence)
        depth, valid = read_depth_png(folder / self.depth_dir / f"depth{n}.png", 1000.0)
        H, W = depth.shape
        return Frame(
            image=read_rgb(folder / "images" / f"img{n}.png"),
            depth=depth,
            valid=valid,
            intrinsics=intrinsics_matrix(seq.focal, seq.focal, W / 2, H / 2),
            cam2world=seq.cam2world[index],
            frame_id=str(n),
        )
