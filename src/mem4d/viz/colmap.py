"""COLMAP text models (``cameras.txt``, ``images.txt``, ``points3D.txt``), written as a stream.

What COLMAP expects, and how mem4d's conventions map to it:

* ``cameras.txt``: ``CAMERA_ID PINHOLE WIDTH HEIGHT fx fy cx cy``. COLMAP puts the *corner*
  of the top-left pixel at (0, 0) (its centre is at (0.5, 0.5)); mem4d (like OpenCV) puts the
  centre at (0, 0). So the principal point is written as ``cx + 0.5, cy + 0.5``; focal lengths
  are unchanged. One camera per image (the model predicts intrinsics per frame) or one shared
  camera when the intrinsics are fixed.
* ``images.txt``: two lines per image, ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` and the
  2D points (left empty here). The pose is **world-to-camera** (``world2cam = cam2world^-1``)
  with the rotation as a unit quaternion, scalar first; camera axes are OpenCV's, as in mem4d.
* ``points3D.txt``: ``POINT3D_ID X Y Z R G B ERROR TRACK[]`` with empty tracks (no 2D-3D
  correspondences are produced); COLMAP and most readers accept this.

`read_colmap_text` parses the three files back (and undoes the half-pixel shift).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from mem4d.geometry.rotation import matrix_to_quat, quat_to_matrix

__all__ = ["ColmapTextWriter", "world2cam_quat_trans", "read_colmap_text"]


def world2cam_quat_trans(cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) cam2world -> (WXYZ quaternion (4,), translation (3,)) of world2cam, as COLMAP stores it."""
    c2w = np.asarray(cam2world, dtype=np.float64)
    R_w2c = c2w[:3, :3].T
    t_w2c = -R_w2c @ c2w[:3, 3]
    q = matrix_to_quat(torch.from_numpy(np.ascontiguousarray(R_w2c))).numpy()
    return q, t_w2c


class ColmapTextWriter:
    """Streams images (and their cameras) into ``directory``; ``write_points`` then ``close``.

    Args:
        directory: created if needed (``cameras.txt``, ``images.txt``, ``points3D.txt``).
        shared_intrinsics: ``(K (3, 3), (H, W))`` for one camera shared by all images, or None
            for one camera per image.
    """

    def __init__(self, directory: str | os.PathLike,
                 shared_intrinsics: tuple[np.ndarray, tuple[int, int]] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cameras: IO[str] | None = open(self.directory / "cameras.txt", "w")
        self._images: IO[str] | None = open(self.directory / "images.txt", "w")
        self._cameras.write("# Camera list with one line of data per camera:\n"
                            "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                            "# PINHOLE params: fx fy cx cy (pixel corner at 0, i.e. mem4d's cx + 0.5)\n")
        self._images.write("# Image list with two lines of data per image:\n"
                           "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                           "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                           "# (QW QX QY QZ, TX TY TZ) is the world-to-camera transform\n")
        self.num_images = 0
        self._shared = shared_intrinsics is not None
        if shared_intrinsics is not None:
            K, size = shared_intrinsics
            self._write_camera(1, np.asarray(K, np.float64), size)

    def _write_camera(self, camera_id: int, K: np.ndarray, size: tuple[int, int]) -> None:
        assert self._cameras is not None
        H, W = size
        self._cameras.write(f"{camera_id} PINHOLE {int(W)} {int(H)} {K[0, 0]:.9g} {K[1, 1]:.9g} "
                            f"{K[0, 2] + 0.5:.9g} {K[1, 2] + 0.5:.9g}\n")

    def add_image(self, name: str, cam2world: np.ndarray, K: np.ndarray | None = None,
                  size: tuple[int, int] | None = None) -> int:
        """Appends one image (``K`` and ``size`` are needed unless the camera is shared); returns its id."""
        if self._images is None:
            raise ValueError("ColmapTextWriter is closed")
        image_id = self.num_images + 1
        if self._shared:
            camera_id = 1
        else:
            if K is None or size is None:
                raise ValueError("add_image needs K and size when cameras are not shared")
            camera_id = image_id
            self._write_camera(camera_id, np.asarray(K, np.float64), size)
        q, t = world2cam_quat_trans(cam2world)
        vals = " ".join(f"{v:.12g}" for v in (*q, *t))
        self._images.write(f"{image_id} {vals} {camera_id} {name}\n\n")
        self.num_images = image_id
        return image_id

    def flush(self) -> None:
        for f in (self._cameras, self._images):
            if f is not None:
                f.flush()

    def write_points(self, xyz: np.ndarray, rgb: np.ndarray | None = None, error: float = 0.0) -> None:
        """Writes ``points3D.txt``: (N, 3) points, (N, 3) uint8 colours, empty tracks."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        rgb = np.full((len(xyz), 3), 128, np.uint8) if rgb is None else np.asarray(rgb, np.uint8).reshape(-1, 3)
        with open(self.directory / "points3D.txt", "w") as f:
            f.write("# 3D point list with one line of data per point:\n"
                    "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                    f"# Number of points: {len(xyz)}, mean track length: 0\n")
            chunk = 100_000
            for start in range(0, len(xyz), chunk):
                p, c = xyz[start:start + chunk], rgb[start:start + chunk]
                ids = np.arange(start + 1, start + 1 + len(p))
                lines = [f"{i} {x:.7g} {y:.7g} {z:.7g} {r} {g} {b} {error:g}\n"
                         for i, (x, y, z), (r, g, b) in zip(ids, p.tolist(), c.tolist())]
                f.write("".join(lines))

    def close(self) -> None:
        for name in ("_cameras", "_images"):
            f = getattr(self, name)
            if f is not None:
                f.close()
                setattr(self, name, None)

    abort = close


def read_colmap_text(directory: str | os.PathLike) -> dict[str, Any]:
    """Parses a COLMAP text model.

    Returns:
        ``{"cameras": {id: {"model", "width", "height", "params", "K"}}, "images": {name: {"id",
        "qvec", "tvec", "camera_id", "cam2world"}}, "points": (xyz (N, 3), rgb (N, 3))}``; ``K`` is
        in mem4d's pixel-centre convention (``cx - 0.5``), ``cam2world`` (4, 4) float64.
    """
    directory = Path(directory)
    cameras: dict[int, dict[str, Any]] = {}
    for line in (directory / "cameras.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        params = [float(v) for v in parts[4:]]
        cam = {"model": parts[1], "width": int(parts[2]), "height": int(parts[3]), "params": params}
        if parts[1] == "PINHOLE":
            fx, fy, cx, cy = params
            cam["K"] = np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]], np.float64)
        cameras[int(parts[0])] = cam
    images: dict[str, dict[str, Any]] = {}
    lines = [ln for ln in (directory / "images.txt").read_text().splitlines() if not ln.startswith("#")]
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        parts = lines[i].split()
        q = np.array([float(v) for v in parts[1:5]])
        t = np.array([float(v) for v in parts[5:8]])
        R_w2c = quat_to_matrix(torch.from_numpy(q)).numpy()
        c2w = np.eye(4)
        c2w[:3, :3] = R_w2c.T
        c2w[:3, 3] = -R_w2c.T @ t
        images[" ".join(parts[9:])] = {"id": int(parts[0]), "qvec": q, "tvec": t, "camera_id": int(parts[8]),
                                      "cam2world": c2w}
        i += 2  # the POINTS2D line follows (possibly empty)
    xyz, rgb = [], []
    p3d = directory / "points3D.txt"
    if p3d.is_file():
        for line in p3d.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            xyz.append([float(v) for v in parts[1:4]])
            rgb.append([int(v) for v in parts[4:7]])
    return {"cameras": cameras, "images": images,
            "points": (np.array(xyz, np.float64).reshape(-1, 3), np.array(rgb, np.uint8).reshape(-1, 3))}
