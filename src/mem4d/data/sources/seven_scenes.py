"""Microsoft 7-Scenes reader (also its 3DMatch repackaging).

Layouts accepted under ``root``:

- original: ``<scene>/seq-XX/frame-XXXXXX.color.png``, ``frame-XXXXXX.depth.png``,
  ``frame-XXXXXX.pose.txt``, with ``<scene>/TrainSplit.txt`` / ``TestSplit.txt`` listing
  ``sequenceN`` lines (used by ``split=``); sequence names are ``"<scene>/seq-XX"``;
- flat (3DMatch / tsdf-fusion copies): one folder of ``frame-XXXXXX.color.{png,jpg}``,
  ``.depth.png``, ``.pose.txt`` and optionally ``camera-intrinsics.txt``; ``root`` may be that
  folder (sequence name = its folder name) or contain such folders.

Conventions converted here:
- depth: uint16 millimetres, ``/ 1000``; 0 and 65535 (the raw dataset's "no depth") invalid;
- pose: ``frame-*.pose.txt`` is a 4x4 camera-to-world (metres) of the *depth* camera, whose
  axes are already OpenCV's (x right, y down, z forward);
- intrinsics: those of the depth camera, fx = fy = 585, cx = 320, cy = 240 (the 7-Scenes
  nominal values), or ``camera-intrinsics.txt`` (3x3) when the sequence folder or ``root``
  has one. Colour and depth cameras are *not* registered in 7-Scenes: the colour image is
  only approximately aligned with the depth (a few pixels); geometry follows the depth.
- ``registered_depth=True`` reads ``frame-*.depth.proj.png`` instead (depth rendered into the
  colour camera by the MonST3R/Spann3R preprocessing, used by the CUT3R protocol) with the
  colour intrinsics fx = fy = 525, cx = 320, cy = 240.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mem4d.data.sources.base import (
    Frame,
    SequenceSource,
    intrinsics_matrix,
    read_depth_png,
    read_numbers,
    read_rgb,
)

__all__ = ["SevenScenesSource"]

DEPTH_INTRINSICS = (585.0, 585.0, 320.0, 240.0)
COLOR_INTRINSICS = (525.0, 525.0, 320.0, 240.0)


@dataclass
class _Seq:
    folder: Path
    ids: list[str]
    color_ext: str
    intrinsics: np.ndarray


def _has_frames(folder: Path) -> bool:
    return folder.is_dir() and next(folder.glob("frame-*.pose.txt"), None) is not None


class SevenScenesSource(SequenceSource):
    """7-Scenes sequences (see the module docstring).

    Args:
        root: dataset root, one scene, or one flat frame folder.
        split: ``"train"`` / ``"test"`` keeps the sequences of each scene's split file;
            ``None`` keeps all.
        registered_depth: read ``.depth.proj.png`` with the colour intrinsics (see above).
        **kwargs: ``sequences``, ``max_depth``, ``min_depth`` of :class:`SequenceSource`.
    """

    name = "7scenes"

    def __init__(
        self,
        root: str | Path,
        *,
        split: str | None = None,
        registered_depth: bool = False,
        sequences: Iterable[str] | None = None,
        max_depth: float | None = None,
        min_depth: float = 0.0,
    ) -> None:
        super().__init__(root, sequences=sequences, max_depth=max_depth, min_depth=min_depth)
        if split not in (None, "train", "test"):
            raise ValueError(f"7scenes: split must be None, 'train' or 'test', got {split!r}")
        self.split = split
        self.registered_depth = registered_depth
        self._seqs: dict[str, _Seq] = {}

    def _split_sequences(self, scene_dir: Path) -> set[str] | None:
        if self.split is None:
            return None
        path = scene_dir / ("TrainSplit.txt" if self.split == "train" else "TestSplit.txt")
        if not path.is_file():
            return None
        keep = set()
        for line in path.read_text().split():
            digits = "".join(ch for ch in line if ch.isdigit())
            if digits:
                keep.add(f"seq-{int(digits):02d}")
        return keep

    def _discover(self) -> list[str]:
        if _has_frames(self.root):
            return [self.root.name]
        found = []
        for child in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if _has_frames(child):
                found.append(child.name)
                continue
            keep = self._split_sequences(child)
            for sub in sorted(p for p in child.iterdir() if p.is_dir()):
                if _has_frames(sub) and (keep is None or sub.name in keep):
                    found.append(f"{child.name}/{sub.name}")
        return found

    def _folder(self, sequence: str) -> Path:
        if _has_frames(self.root) and sequence == self.root.name:
            return self.root
        return self.root / sequence

    def _get(self, sequence: str) -> _Seq:
        if sequence in self._seqs:
            return self._seqs[sequence]
        self._check_sequence(sequence)
        folder = self._folder(sequence)
        ids = sorted(p.name[: -len(".pose.txt")] for p in folder.glob("frame-*.pose.txt"))
        color_ext = ".color.png" if (folder / f"{ids[0]}.color.png").is_file() else ".color.jpg"
        if self.registered_depth:
            K = intrinsics_matrix(*COLOR_INTRINSICS)
        else:
            K = intrinsics_matrix(*DEPTH_INTRINSICS)
            for cand in (folder / "camera-intrinsics.txt", self.root / "camera-intrinsics.txt"):
                if cand.is_file():
                    K = read_numbers(cand).reshape(3, 3)
                    break
        seq = _Seq(folder=folder, ids=ids, color_ext=color_ext, intrinsics=K)
        self._seqs[sequence] = seq
        return seq

    def num_frames(self, sequence: str) -> int:
        return len(self._get(sequence).ids)

    def load_frame(self, sequence: str, index: int) -> Frame:
        seq = self._get(sequence)
        fid = seq.ids[index]
        depth_name = f"{fid}.depth.proj.png" if self.registered_depth else f"{fid}.depth.png"
        depth, valid = read_depth_png(seq.folder / depth_name, 1000.0, invalid_values=(0, 65535))
        cam2world = read_numbers(seq.folder / f"{fid}.pose.txt").reshape(4, 4)
        if not np.isfinite(cam2world).all():
            raise ValueError(f"7scenes/{sequence}: non-finite pose in {fid}.pose.txt")
        return Frame(
            image=read_rgb(seq.folder / f"{fid}{seq.color_ext}"),
            depth=depth,
            valid=valid,
            intrinsics=seq.intrinsics,
            cam2world=cam2world,
            frame_id=fid,
        )
