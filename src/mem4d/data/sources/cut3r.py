"""Reader of the CUT3R-processed ("custom") layout, so data a user preprocessed for CUT3R (or
wrote with `mem4d synth`) trains here as is.

Layout (PROTOCOLS.md §3)::

    ROOT/[<split>/]<scene>/rgb/<frame>.{png,jpg}
                           depth/<frame>.npy           float32 z-depth in metres (<= 0, NaN, inf: invalid)
                           cam/<frame>.npz             pose (4x4 cam2world, OpenCV), intrinsics (3x3)
                           dynamic_mask/<frame>.png    optional (written by `mem4d synth`)

The layout already uses this library's conventions (OpenCV cam2world, metres, z-depth), so the
only conversions are invalid-depth handling and the optional mask.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mem4d.data.sources.base import Frame, SequenceSource

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class Cut3rSource(SequenceSource):
    """Scenes in the CUT3R-processed layout; a sequence is a scene folder's path relative to root."""

    name = "cut3r"

    def __init__(self, root, *, sequences=None, max_depth=None, min_depth=0.0) -> None:
        super().__init__(root, sequences=sequences, max_depth=max_depth, min_depth=min_depth)
        self._frames: dict[str, list[Path]] = {}

    @staticmethod
    def _is_scene(folder: Path) -> bool:
        return (folder / "rgb").is_dir() and (folder / "depth").is_dir() and (folder / "cam").is_dir()

    def _discover(self) -> list[str]:
        if self._is_scene(self.root):
            return ["."]
        found = [p for p in self.root.glob("*") if p.is_dir() and self._is_scene(p)]
        found += [p for p in self.root.glob("*/*") if p.is_dir() and self._is_scene(p)]  # with a split level
        return sorted(str(p.relative_to(self.root)) for p in found)

    def _rgb_files(self, sequence: str) -> list[Path]:
        if sequence not in self._frames:
            self._check_sequence(sequence)
            rgb = self.root / sequence / "rgb"
            self._frames[sequence] = sorted(p for p in rgb.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        return self._frames[sequence]

    def num_frames(self, sequence: str) -> int:
        return len(self._rgb_files(sequence))

    def load_frame(self, sequence: str, index: int) -> Frame:
        rgb_path = self._rgb_files(sequence)[index]
        scene, stem = self.root / sequence, rgb_path.stem
        depth = np.load(scene / "depth" / f"{stem}.npy").astype(np.float32)
        with np.load(scene / "cam" / f"{stem}.npz") as cam:
            cam2world, intrinsics = cam["pose"].astype(np.float64), cam["intrinsics"].astype(np.float64)
        mask_path = scene / "dynamic_mask" / f"{stem}.png"
        dynamic = np.asarray(Image.open(mask_path)) > 127 if mask_path.is_file() else None
        return Frame(
            image=np.asarray(Image.open(rgb_path).convert("RGB")),
            depth=np.nan_to_num(depth, nan=0.0, posinf=0.0, neginf=0.0),
            valid=np.isfinite(depth) & (depth > 0),
            intrinsics=intrinsics,
            cam2world=cam2world,
            dynamic_mask=dynamic,
            frame_id=stem,
        )
