"""Reading a reconstruction folder for the viewer (numpy + Pillow only; no viser here).

The folder written by ``mem4d reconstruct``::

    DIR/meta.json              {"num_frames": T, "height": H, "width": W, "complete": true, ...}
    DIR/trajectory.txt         TUM lines ``timestamp tx ty tz qx qy qz qw`` (camera-to-world)
    DIR/intrinsics.txt         one ``fx fy cx cy`` line per frame
    DIR/rgb/000000.png         processed input frames
    DIR/pts_world/000000.npy   (H, W, 3) world points (OpenCV camera of frame 0, metres); without
                               it, DIR/depth/000000.npy (z-depth) is unprojected with the pose
    DIR/conf/000000.npy        (H, W) confidence, >= 1
    DIR/dynamic/000000.npy     (H, W) probability that the pixel moves (optional; or the 8-bit .png)
    DIR/static.ply             fused static cloud (optional)
    DIR/scene_memory/          a saved ``mem4d.scene.SceneMemory`` (optional)

Frames are loaded lazily through a bounded LRU cache (:class:`FrameCache`), so long sequences
never sit in memory as a whole.

Example::

    rec = ReconstructionFolder("out/seq", cache_frames=16)
    f = rec.frame(3)                                  # Frame(rgb, pts, conf, dynamic)
    xyz, rgb = select_points(f, min_conf=1.5, max_points=100_000)
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mem4d.viz.ply import read_ply

__all__ = [
    "Frame",
    "FrameCache",
    "ReconstructionFolder",
    "read_ply_points",
    "select_points",
    "decimate",
    "scene_scale",
    "up_direction",
]


def _colour_u8(values: np.ndarray) -> np.ndarray:
    """Colours as uint8: integers are taken as 0-255, floats as 0-1 (or 0-255 when larger)."""
    values = np.asarray(values)
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind in "iu":
        return np.clip(values, 0, 255).astype(np.uint8)
    v = np.nan_to_num(values.astype(np.float32))
    if v.size and float(v.max()) > 1.0 + 1e-3:
        return np.clip(v + 0.5, 0, 255).astype(np.uint8)
    return np.clip(v * 255.0 + 0.5, 0, 255).astype(np.uint8)


def read_ply_points(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Reads the vertices of a point-cloud PLY file.

    Supports ``binary_little_endian``, ``binary_big_endian`` and ``ascii`` files whose first
    element is ``vertex`` with scalar properties; ``x y z`` are required, ``red green blue``
    optional (uchar, or floats in [0, 1]); other properties are skipped.

    Returns:
        ``(xyz, rgb)``: ``(N, 3)`` float32 and ``(N, 3)`` uint8 (``None`` without colours).

    Raises:
        ValueError: not a PLY file, truncated, or no ``x y z`` vertex properties.
    """
    cloud = read_ply(path)
    rgb = None
    if all(c in cloud for c in ("red", "green", "blue")):
        rgb = _colour_u8(np.stack([cloud["red"], cloud["green"], cloud["blue"]], axis=-1))
    return cloud["xyz"].astype(np.float32), rgb


@dataclass
class Frame:
    """One reconstructed frame: ``rgb`` (H, W, 3) uint8, ``pts`` (H, W, 3) float32 world points,
    ``conf`` (H, W) float32, ``dynamic`` (H, W) float32 motion probability or None."""

    index: int
    rgb: np.ndarray
    pts: np.ndarray
    conf: np.ndarray
    dynamic: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.rgb, self.pts, self.conf, self.dynamic) if a is not None)


class FrameCache:
    """A thread-safe LRU cache holding at most ``capacity`` frames; ``loader(i)`` fills misses."""

    def __init__(self, loader: Callable[[int], Frame], capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"frame cache capacity must be >= 1, got {capacity}")
        self.loader = loader
        self.capacity = int(capacity)
        self.loads = 0  # number of loader calls (misses)
        self._items: OrderedDict[int, Frame] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index: int) -> Frame:
        with self._lock:
            if index in self._items:
                self._items.move_to_end(index)
                return self._items[index]
            frame = self.loader(index)
            self.loads += 1
            self._items[index] = frame
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            return frame

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, index: object) -> bool:
        return index in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return meta


class ReconstructionFolder:
    """A reconstruction folder written by ``mem4d reconstruct`` (see the module docstring).

    Attributes:
        root: the folder.
        meta: the parsed ``meta.json``.
        num_frames: frames available (``meta["num_frames"]`` bounded by the trajectory length).
        height, width: image size.
        timestamps: (T,) float64 seconds.
        cam2world: (T, 4, 4) float64 camera-to-world (OpenCV camera axes).
        K: (T, 3, 3) float64 intrinsics (from ``intrinsics.txt``; a 60-degree guess if missing).
        complete: ``meta["complete"]`` (False while ``mem4d reconstruct`` is still writing).
        cache: the :class:`FrameCache` behind :meth:`frame`.

    Raises:
        FileNotFoundError: ``root`` is missing or is not a reconstruction (no ``meta.json`` or
            ``trajectory.txt``).
        ValueError: a malformed ``meta.json``, trajectory or intrinsics file.
    """

    def __init__(self, root: str | os.PathLike, cache_frames: int = 16) -> None:
        from mem4d.eval.trajectory_io import read_tum_trajectory

        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root} is not a folder")
        missing = [n for n in ("meta.json", "trajectory.txt") if not (self.root / n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.root} is not a reconstruction folder ({' and '.join(missing)} missing); "
                "write one with `mem4d reconstruct VIDEO --out DIR`"
            )
        self.meta = _read_json(self.root / "meta.json")
        traj = read_tum_trajectory(self.root / "trajectory.txt")
        n_meta = self.meta.get("num_frames")
        self.num_frames = len(traj) if n_meta is None else min(int(n_meta), len(traj))
        if self.num_frames < 1:
            raise ValueError(f"{self.root}: the reconstruction has no frames")
        self.timestamps = traj.timestamps[: self.num_frames].copy()
        self.cam2world = traj.cam2world[: self.num_frames].numpy().astype(np.float64)
        self.complete = bool(self.meta.get("complete", True))
        self.height = int(self.meta.get("height", 0))
        self.width = int(self.meta.get("width", 0))
        if self.height <= 0 or self.width <= 0:
            pts0 = np.load(self._path("pts_world", 0, "npy"), mmap_mode="r")
            self.height, self.width = int(pts0.shape[0]), int(pts0.shape[1])
        self.K = self._read_intrinsics()
        self.has_dynamic = (self.root / "dynamic").is_dir()
        self.cache = FrameCache(self.load_frame, cache_frames)

    # ------------------------------------------------------------------ files
    def _path(self, sub: str, index: int, ext: str) -> Path:
        return self.root / sub / f"{index:06d}.{ext}"

    def _read_intrinsics(self) -> np.ndarray:
        T, H, W = self.num_frames, self.height, self.width
        K = np.tile(np.eye(3), (T, 1, 1))
        path = self.root / "intrinsics.txt"
        if path.is_file():
            try:
                rows = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=2)
            except ValueError as err:
                raise ValueError(f"{path}: expected 'fx fy cx cy' per line ({err})") from None
            if rows.size == 0 or rows.shape[1] != 4:
                raise ValueError(f"{path}: expected 'fx fy cx cy' per line, got {rows.shape[1] if rows.size else 0} "
                                 "columns")
            rows = rows[np.minimum(np.arange(T), len(rows) - 1)]  # a short file repeats its last line
        else:
            f = 0.5 * W / np.tan(np.deg2rad(30.0))
            rows = np.tile([f, f, (W - 1) / 2, (H - 1) / 2], (T, 1))
        K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2] = rows.T
        return K

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def static_ply(self) -> Path | None:
        p = self.root / "static.ply"
        return p if p.is_file() else None

    @property
    def scene_memory_dir(self) -> Path | None:
        p = self.root / "scene_memory"
        return p if p.is_dir() else None

    def load_frame(self, index: int) -> Frame:
        """Reads frame ``index`` from disk (uncached; use :meth:`frame`)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} out of range [0, {self.num_frames})")
        from PIL import Image

        pts_path, depth_path = self._path("pts_world", index, "npy"), self._path("depth", index, "npy")
        if not pts_path.is_file() and depth_path.is_file():  # written with --no-pointmaps
            pts = self.unproject(np.load(depth_path).astype(np.float32), index)
        else:
            pts = np.load(pts_path).astype(np.float32, copy=False)
        if pts.ndim != 3 or pts.shape[-1] != 3:
            raise ValueError(f"{pts_path}: expected (H, W, 3), got {pts.shape}")
        H, W = pts.shape[:2]
        conf_path = self._path("conf", index, "npy")
        conf = np.load(conf_path).astype(np.float32, copy=False) if conf_path.is_file() else np.ones((H, W), np.float32)
        rgb_path = self._path("rgb", index, "png")
        if rgb_path.is_file():
            with Image.open(rgb_path) as im:
                im = im.convert("RGB")
                if im.size != (W, H):
                    im = im.resize((W, H), Image.BILINEAR)
                rgb = np.asarray(im, dtype=np.uint8)
        else:
            rgb = np.full((H, W, 3), 160, np.uint8)
        dyn = None
        dyn_path, dyn_png = self._path("dynamic", index, "npy"), self._path("dynamic", index, "png")
        if dyn_path.is_file():
            dyn = np.load(dyn_path).astype(np.float32, copy=False)
        elif dyn_png.is_file():
            with Image.open(dyn_png) as im:
                dyn = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        for name, a in (("conf", conf), ("dynamic", dyn)):
            if a is not None and a.shape != (H, W):
                raise ValueError(f"frame {index}: {name} has shape {a.shape}, pts_world has {(H, W)}")
        return Frame(index=index, rgb=rgb, pts=pts, conf=conf, dynamic=dyn)

    def unproject(self, depth: np.ndarray, index: int) -> np.ndarray:
        """World points (H, W, 3) of a z-depth map of frame ``index`` (0 / non-finite -> NaN)."""
        H, W = depth.shape
        K, c2w = self.K[index], self.cam2world[index]
        v, u = np.mgrid[0:H, 0:W].astype(np.float32)
        z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)
        x = (u - K[0, 2]) / K[0, 0] * z
        y = (v - K[1, 2]) / K[1, 1] * z
        cam = np.stack([x, y, z], axis=-1)
        return (cam @ c2w[:3, :3].T.astype(np.float32) + c2w[:3, 3].astype(np.float32)).astype(np.float32)

    def frame(self, index: int) -> Frame:
        """Frame ``index`` through the bounded cache."""
        return self.cache.get(int(index))

    def static_cloud(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``static.ply`` as ``(xyz float32, rgb uint8)``, or None when the folder has none."""
        if self.static_ply is None:
            return None
        xyz, rgb = read_ply_points(self.static_ply)
        if rgb is None:
            rgb = np.full(xyz.shape, 200, np.uint8)
        keep = np.isfinite(xyz).all(axis=1)
        return xyz[keep], rgb[keep]

    def camera_centres(self) -> np.ndarray:
        return self.cam2world[:, :3, 3].copy()


def decimate(n: int, max_points: int | None) -> np.ndarray | slice:
    """Indices keeping at most ``max_points`` of ``n`` items, evenly spread (deterministic)."""
    if max_points is None or n <= max_points:
        return slice(None)
    return np.linspace(0, n - 1, max(int(max_points), 0)).round().astype(np.int64)


def select_points(frame: Frame, min_conf: float = 1.0, *, show_static: bool = True, show_moving: bool = True,
                  max_points: int | None = None, moving_threshold: float = 0.5,
                  tint_moving: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The frame's points to draw: finite, ``conf >= min_conf``, filtered by motion, decimated.

    A pixel is moving when ``frame.dynamic > moving_threshold``; without a dynamic map every
    pixel counts as static. ``tint_moving`` blends moving points towards red.

    Returns:
        ``(xyz, rgb)``: ``(N, 3)`` float32 and ``(N, 3)`` uint8.
    """
    pts = frame.pts.reshape(-1, 3)
    mask = np.isfinite(pts).all(axis=1) & (frame.conf.reshape(-1) >= min_conf)
    moving = None
    if frame.dynamic is not None:
        moving = frame.dynamic.reshape(-1) > moving_threshold
        mask &= (moving & show_moving) | (~moving & show_static)
    elif not show_static:
        mask[:] = False
    idx = np.flatnonzero(mask)
    idx = idx[decimate(len(idx), max_points)]
    rgb = frame.rgb.reshape(-1, 3)[idx]
    if tint_moving and moving is not None:
        m = moving[idx]
        if m.any():
            rgb = rgb.copy()
            rgb[m] = (0.4 * rgb[m] + 0.6 * np.array([255, 40, 40])).astype(np.uint8)
    return pts[idx].astype(np.float32, copy=False), rgb


def scene_scale(pts: np.ndarray, cam_centre: np.ndarray, conf: np.ndarray | None = None) -> float:
    """Median distance of the (confident) points to the camera: the viewer's length unit."""
    p = pts.reshape(-1, 3)
    ok = np.isfinite(p).all(axis=1)
    if conf is not None:
        c = conf.reshape(-1)
        if (ok & (c > np.median(c))).sum() > 16:
            ok &= c > np.median(c)
    if not ok.any():
        return 1.0
    d = float(np.median(np.linalg.norm(p[ok] - cam_centre, axis=1)))
    return d if np.isfinite(d) and d > 1e-6 else 1.0


def up_direction(cam2world: np.ndarray) -> np.ndarray:
    """World up guessed from the cameras: the mean of their -y axes (OpenCV: y points down)."""
    up = -cam2world[:, :3, 1].mean(axis=0)
    norm = float(np.linalg.norm(up))
    return up / norm if norm > 1e-6 else np.array([0.0, -1.0, 0.0])
