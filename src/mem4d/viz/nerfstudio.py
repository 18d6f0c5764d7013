"""nerfstudio ``transforms.json``, written as a stream (one frame entry at a time).

nerfstudio (like instant-ngp and the original NeRF data) wants camera-to-world matrices in the
**OpenGL** camera convention: x right, y up, z backwards (the camera looks down -z). mem4d's
cameras are OpenCV (y down, z forward), so each ``transform_matrix`` is
``cam2world @ diag(1, -1, -1, 1)`` (the camera's y and z axes flipped; the world frame is left
as it is, so ``static.ply`` lines up with the cameras through ``ply_file_path``).

nerfstudio puts the corner of the top-left pixel at (0, 0) (pixel centres at +0.5), mem4d the
centre, so ``cx`` / ``cy`` are written as ``cx + 0.5`` / ``cy + 0.5``. Intrinsics are written per
frame (``fl_x fl_y cx cy w h``; the model predicts them per frame) and once at the top level
(the first frame's, or the fixed ones) for tools that read only those.

The file is ``{"frames": [...], <top-level fields>}``: frames are appended as they come and the
top-level fields written by ``close``.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

import numpy as np

__all__ = ["OPENCV_TO_OPENGL", "cam2world_opencv_to_opengl", "cam2world_opengl_to_opencv", "TransformsJsonWriter",
           "intrinsics_fields"]

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])


def cam2world_opencv_to_opengl(cam2world: np.ndarray) -> np.ndarray:
    """(..., 4, 4) OpenCV-camera cam2world -> OpenGL-camera cam2world (flip the camera's y and z)."""
    return np.asarray(cam2world, dtype=np.float64) @ OPENCV_TO_OPENGL


def cam2world_opengl_to_opencv(cam2world_gl: np.ndarray) -> np.ndarray:
    """The inverse of `cam2world_opencv_to_opengl` (the flip is its own inverse)."""
    return np.asarray(cam2world_gl, dtype=np.float64) @ OPENCV_TO_OPENGL


def intrinsics_fields(K: np.ndarray, size: tuple[int, int]) -> dict[str, float | int]:
    """``fl_x fl_y cx cy w h`` of mem4d intrinsics (pixel centre at 0) in nerfstudio's convention."""
    K = np.asarray(K, dtype=np.float64)
    H, W = size
    return {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]) + 0.5, "cy": float(K[1, 2]) + 0.5,
            "w": int(W), "h": int(H)}


class TransformsJsonWriter:
    """Appends frames to ``path``; ``close(**top_level)`` completes a valid JSON file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self._f: IO[str] | None = open(self.path, "w")
        self._f.write('{\n  "frames": [')
        self.num_frames = 0
        self.first_intrinsics: dict[str, Any] | None = None

    def add_frame(self, file_path: str, cam2world: np.ndarray, K: np.ndarray, size: tuple[int, int],
                  **extra: Any) -> None:
        """One frame: image ``file_path`` (relative to the json), OpenCV ``cam2world`` (4, 4), ``K`` (3, 3)."""
        if self._f is None:
            raise ValueError("TransformsJsonWriter is closed")
        fields = intrinsics_fields(K, size)
        if self.first_intrinsics is None:
            self.first_intrinsics = dict(fields)
        entry = {"file_path": file_path, **extra, **fields,
                 "transform_matrix": [[float(v) for v in row] for row in cam2world_opencv_to_opengl(cam2world)]}
        self._f.write(("," if self.num_frames else "") + "\n    " + json.dumps(entry))
        self.num_frames += 1

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self, **top_level: Any) -> None:
        """Writes the top-level fields (default: ``camera_model`` OPENCV and the first frame's intrinsics)."""
        if self._f is None:
            return
        fields: dict[str, Any] = {"camera_model": "OPENCV"}
        if self.first_intrinsics is not None:
            fields.update(self.first_intrinsics)
        fields.update(top_level)
        body = json.dumps(fields, indent=2)[1:-1].strip("\n")  # the object's members, without braces
        self._f.write("\n  ]" + ("," + "\n" + body if body else "") + "\n}\n")
        self._f.close()
        self._f = None

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
