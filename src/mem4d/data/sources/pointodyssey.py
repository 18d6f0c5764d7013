"""PointOdyssey (Zheng et al. 2023) reader.

Assumed layout, as documented by the dataset and used by its official loader and by CUT3R's
preprocessing (``root`` holds split folders, sequence folders, or is one sequence)::

    <split>/<seq>/rgbs/rgb_XXXXX.jpg       colour, 960x540
    <split>/<seq>/depths/depth_XXXXX.png   uint16, depth = value / 65535 * 1000 (metres)
    <split>/<seq>/anno.npz                 intrinsics (T, 3, 3), extrinsics (T, 4, 4)
                                           world-to-camera, trajs_3d (T, N, 3) world, trajs_2d,
                                           visibs (T, N), valids (T, N)

The frame number XXXXX indexes the arrays of ``anno.npz``. Only ``intrinsics`` and
``extrinsics`` are read (``np.load`` of an npz reads members lazily, so the large track arrays
are never loaded); :meth:`PointOdysseySource.tracks` reads the tracks on request.

Conventions converted here: ``cam2world = inverse(extrinsics)``. Assumed (not stated in
words by the dataset): the camera axes are OpenCV's and the depth is z-depth, as the
official loader and CUT3R's preprocessing use them (inverting ``extrinsics``, no axis flip).
Depth 0 and the saturated value 65535 (>= 1000 m: sky / no surface) are invalid.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mem4d.data.sources.base import Frame, SequenceSource, orthonormalize_pose, read_depth_png, read_rgb
from mem4d.geometry.se3 import se3_inverse

__all__ = ["PointOdysseySource"]

DEPTH_SCALE = 65535.0 / 1000.0  # raw units per metre


@dataclass
class _Seq:
    folder: Path
    numbers: list[int]
    intrinsics: np.ndarray  # (T_all, 3, 3)
    cam2world: np.ndarray  # (T_all, 4, 4)


def _frame_number(name: str) -> int:
    m = re.search(r"(\d+)", name)
    if m is None:
        raise ValueError(f"pointodyssey: no frame number in {name!r}")
    return int(m.group(1))


class PointOdysseySource(SequenceSource):
    """PointOdyssey sequences (see the module docstring).

    Args:
        root: dataset root (split folders), a split folder, or one sequence folder.
        split: keep only sequences under this split folder (``"train"``, ``"val"``, ``"test"``).
        **kwargs: ``sequences``, ``max_depth``, ``min_depth`` of :class:`SequenceSource`.
    """

    name = "pointodyssey"

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = None,
        sequences: Iterable[str] | None = None,
        max_depth: float | None = None,
        min_depth: float = 0.0,
    ) -> None:
        super().__init__(root, sequences=sequences, max_depth=max_depth, min_depth=min_depth)
        self.split = split
        self._seqs: dict[str, _Seq] = {}

    @staticmethod
    def _is_seq(folder: Path) -> bool:
        return (folder / "anno.npz").is_file() and (folder / "rgbs").is_dir()

    def _discover(self) -> list[str]:
        if self._is_seq(self.root):
            return [self.root.name]
        found = []
        for child in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if self._is_seq(child):
                found.append(child.name)
            else:
                found.extend(f"{child.name}/{g.name}" for g in sorted(child.iterdir()) if g.is_dir() and self._is_seq(g))
        if self.split is not None:
            found = [s for s in found if s.split("/")[0] == self.split]
        return found

    def _folder(self, sequence: str) -> Path:
        return self.root if self._is_seq(self.root) and sequence == self.root.name else self.root / sequence

    def _get(self, sequence: str) -> _Seq:
        if sequence in self._seqs:
            return self._seqs[sequence]
        self._check_sequence(sequence)
        folder = self._folder(sequence)
        with np.load(folder / "anno.npz", allow_pickle=False) as anno:
            K = np.asarray(anno["intrinsics"], dtype=np.float64).reshape(-1, 3, 3)
            world2cam = np.asarray(anno["extrinsics"], dtype=np.float64).reshape(-1, 4, 4)
        ok = np.isfinite(world2cam).all(axis=(1, 2)) & np.isfinite(K).all(axis=(1, 2))
        for t in np.nonzero(ok)[0]:
            world2cam[t] = orthonormalize_pose(world2cam[t], what=f"pointodyssey/{sequence} extrinsics[{t}]")
        cam2world = se3_inverse(torch.from_numpy(world2cam)).numpy()
        numbers = sorted(_frame_number(p.name) for p in (folder / "rgbs").glob("rgb_*.jpg"))
        numbers = [
            n for n in numbers
            if n < len(cam2world) and n < len(K) and ok[n] and (folder / "depths" / f"depth_{n:05d}.png").is_file()
        ]
        seq = _Seq(folder=folder, numbers=numbers, intrinsics=K, cam2world=cam2world)
        self._seqs[sequence] = seq
        return seq

    def num_frames(self, sequence: str) -> int:
        return len(self._get(sequence).numbers)

    def load_frame(self, sequence: str, index: int) -> Frame:
        seq = self._get(sequence)
        n = seq.numbers[index]
        depth, valid = read_depth_png(seq.folder / "depths" / f"depth_{n:05d}.png", DEPTH_SCALE, invalid_values=(0, 65535))
        return Frame(
            image=read_rgb(seq.folder / "rgbs" / f"rgb_{n:05d}.jpg"),
            depth=depth,
            valid=valid,
            intrinsics=seq.intrinsics[n],
            cam2world=seq.cam2world[n],
            frame_id=f"{n:05d}",
        )

    def tracks(self, sequence: str, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The annotated 3D tracks at frames ``indices``, in the dataset's world frame.

        Returns ``{"trajs_3d": (T, N, 3), "visibs": (T, N) bool}`` (plus ``"valids"`` when the
        file has it). Apply the inverse of the clip's original ``cam2world[0]`` to express
        them in a re-anchored clip's world.
        """
        seq = self._get(sequence)
        rows = [seq.numbers[int(i)] for i in indices]
        with np.load(seq.folder / "anno.npz", allow_pickle=False) as anno:
            out = {"trajs_3d": torch.from_numpy(np.asarray(anno["trajs_3d"][rows], dtype=np.float32))}
            if "visibs" in anno:
                out["visibs"] = torch.from_numpy(np.asarray(anno["visibs"][rows]).astype(bool))
            if "valids" in anno:
                out["valids"] = torch.from_numpy(np.asarray(anno["valids"][rows]).astype(bool))
        return out
