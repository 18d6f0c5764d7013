"""KITTI reader: depth-benchmark ground truth with raw-data images, calibration and OXTS poses.

Three layouts are recognised under ``root``:

1. **raw** (KITTI raw "synced+rectified" drives + the depth benchmark's annotations)::

       <date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt
       <date>/<drive>/image_02/data/XXXXXXXXXX.png      rectified colour (camera 2 = left colour)
       <date>/<drive>/oxts/data/XXXXXXXXXX.txt          GPS/IMU packets (poses; optional)
       <depth_root>/{train,val}/<drive>/proj_depth/groundtruth/image_02/XXXXXXXXXX.png
                    (or <depth_root>/<drive>/..., or inside the drive folder; depth_root
                    defaults to root)

   Sequence = drive name; frames = the images that have ground-truth depth (the annotations
   skip the first and last 5 frames of a drive).
2. **gathered** (MonST3R's video-depth preparation, ``depth_selection/val_selection_cropped``)::

       image_gathered/<seq>/*.png, groundtruth_depth_gathered/<seq>/*.png  (paired by name)

   No poses. Intrinsics from ``intrinsics=(fx, fy, cx, cy)``, or from
   ``<raw_root>/<date>/calib_cam_to_cam.txt`` with the date taken from the sequence name.
3. **flat** (e.g. the Metric3D demo): ``rgb/*.png`` + ``depth/*.png`` paired by name, with
   ``test_annotations.json`` (``cam_in`` = [fx, fy, cx, cy] per file) or ``intrinsics=``.
   One sequence named after the folder; no poses.

Conventions converted here:
- depth: uint16 PNG / 256 (metres), 0 = no measurement (LiDAR-derived, sparse, z-depth in
  the rectified camera-2 frame);
- intrinsics: ``P_rect_02[:, :3]`` (the rectified camera-2 projection);
- poses (raw layout, when OXTS packets exist): the IMU pose of each packet by KITTI's
  Mercator convention (``scale = cos(lat_0)``, ``tx = scale r lon``, ``ty = scale r
  ln tan((90 + lat) / 2)``, ``tz = alt``, ``R = Rz(yaw) Ry(pitch) Rx(roll)``, r = 6378137 m),
  translated so the first packet is at the origin; camera 2 is placed with
  ``cam2_from_imu = [I | K^-1 P_rect_02[:, 3]] @ R_rect_00 @ velo_to_cam @ imu_to_velo``, so
  ``cam2world = imu2world @ inverse(cam2_from_imu)`` (rectified camera axes are OpenCV's).
  Without OXTS the poses are the identity and ``meta["has_poses"]`` is False.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mem4d.data.sources.base import Frame, SequenceSource, intrinsics_matrix, read_depth_png, read_rgb
from mem4d.geometry.rotation import axis_angle_to_matrix
from mem4d.geometry.se3 import se3_inverse

__all__ = ["KittiSource", "read_kitti_calib", "oxts_to_imu2world", "cam2_from_imu"]

EARTH_RADIUS = 6378137.0
DEPTH_SCALE = 256.0


def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """``key: numbers`` lines of a KITTI calibration file (non-numeric entries skipped)."""
    out: dict[str, np.ndarray] = {}
    for line in Path(path).read_text().splitlines():
        if ":" not in line:
            continue
        key, values = line.split(":", 1)
        try:
            out[key.strip()] = np.array([float(x) for x in values.split()], dtype=np.float64)
        except ValueError:
            continue
    return out


def _rt(calib: dict[str, np.ndarray]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = calib["R"].reshape(3, 3)
    T[:3, 3] = calib["T"].reshape(3)
    return T


def cam2_from_imu(cam_to_cam: dict, velo_to_cam: dict, imu_to_velo: dict, camera: str = "02") -> np.ndarray:
    """(4, 4) transform mapping IMU coordinates into rectified camera ``camera`` coordinates."""
    P = cam_to_cam[f"P_rect_{camera}"].reshape(3, 4)
    rect = np.eye(4)
    rect[:3, :3] = cam_to_cam["R_rect_00"].reshape(3, 3)
    from_rect0 = np.eye(4)
    from_rect0[:3, 3] = np.linalg.solve(P[:, :3], P[:, 3])
    return from_rect0 @ rect @ _rt(velo_to_cam) @ _rt(imu_to_velo)


def oxts_to_imu2world(oxts: np.ndarray) -> np.ndarray:
    """(N, 4, 4) IMU-to-world poses from (N, >= 6) OXTS rows (lat, lon, alt, roll, pitch, yaw).

    KITTI's convention (Mercator with the scale of the first packet's latitude); the world
    origin is moved to the first packet's position.
    """
    oxts = np.asarray(oxts, dtype=np.float64)
    lat, lon, alt = oxts[:, 0], oxts[:, 1], oxts[:, 2]
    scale = math.cos(math.radians(lat[0]))
    t = np.stack(
        [
            scale * EARTH_RADIUS * np.radians(lon),
            scale * EARTH_RADIUS * np.log(np.tan(np.radians(90.0 + lat) / 2.0)),
            alt,
        ],
        axis=-1,
    )
    t = t - t[:1]
    rpy = torch.from_numpy(oxts[:, 3:6])
    zeros = torch.zeros_like(rpy[:, 0])
    Rx = axis_angle_to_matrix(torch.stack([rpy[:, 0], zeros, zeros], -1))
    Ry = axis_angle_to_matrix(torch.stack([zeros, rpy[:, 1], zeros], -1))
    Rz = axis_angle_to_matrix(torch.stack([zeros, zeros, rpy[:, 2]], -1))
    poses = np.tile(np.eye(4), (len(oxts), 1, 1))
    poses[:, :3, :3] = (Rz @ Ry @ Rx).numpy()
    poses[:, :3, 3] = t
    return poses


@dataclass
class _Seq:
    images: list[Path]
    depths: list[Path]
    intrinsics: list[np.ndarray]
    cam2world: np.ndarray | None


class KittiSource(SequenceSource):
    """KITTI depth sequences (see the module docstring for the layouts).

    Args:
        root: KITTI raw root (date folders), a ``val_selection_cropped``-style folder with
            ``image_gathered/``, or a flat ``rgb/`` + ``depth/`` folder.
        depth_root: where the depth benchmark's ``{train,val}/<drive>/proj_depth`` live
            (raw layout; defaults to ``root``).
        raw_root: KITTI raw root to take calibration from (gathered layout).
        intrinsics: (fx, fy, cx, cy) for layouts without calibration files.
        camera: ``"02"`` (left colour, default) or ``"03"``.
        **kwargs: ``sequences``, ``max_depth``, ``min_depth`` of :class:`SequenceSource`.
    """

    name = "kitti"

    def __init__(
        self,
        root: str | Path,
        *,
        depth_root: str | Path | None = None,
        raw_root: str | Path | None = None,
        intrinsics: tuple[float, float, float, float] | None = None,
        camera: str = "02",
        sequences: Iterable[str] | None = None,
        max_depth: float | None = None,
        min_depth: float = 0.0,
    ) -> None:
        super().__init__(root, sequences=sequences, max_depth=max_depth, min_depth=min_depth)
        self.depth_root = Path(depth_root) if depth_root is not None else self.root
        if not self.depth_root.is_dir():
            raise FileNotFoundError(f"KittiSource: depth_root {self.depth_root} does not exist")
        self.raw_root = Path(raw_root) if raw_root is not None else None
        self.intrinsics = intrinsics
        self.camera = camera
        self._seqs: dict[str, _Seq] = {}
        self._raw_drives: dict[str, Path] = {}

    # -- layout detection ----------------------------------------------------------------------

    @property
    def layout(self) -> str:
        if (self.root / "image_gathered").is_dir():
            return "gathered"
        if (self.root / "rgb").is_dir() and (self.root / "depth").is_dir():
            return "flat"
        return "raw"

    def _discover(self) -> list[str]:
        layout = self.layout
        if layout == "gathered":
            return [p.name for p in sorted((self.root / "image_gathered").iterdir()) if p.is_dir()]
        if layout == "flat":
            return [self.root.name]
        self._raw_drives = {}
        for drive in sorted(self.root.glob(f"*/*/image_{self.camera}/data")):
            drive_dir = drive.parent.parent
            if self._depth_dir(drive_dir) is not None:
                self._raw_drives[drive_dir.name] = drive_dir
        return list(self._raw_drives)

    def _depth_dir(self, drive_dir: Path) -> Path | None:
        rel = Path("proj_depth") / "groundtruth" / f"image_{self.camera}"
        candidates = [drive_dir / rel, self.depth_root / drive_dir.name / rel]
        candidates += [p / drive_dir.name / rel for p in sorted(self.depth_root.iterdir()) if p.is_dir()]
        return next((c for c in candidates if c.is_dir()), None)

    def _intrinsics_fallback(self, sequence: str) -> np.ndarray:
        if self.intrinsics is not None:
            return intrinsics_matrix(*self.intrinsics)
        if self.raw_root is not None:
            calib = self.raw_root / sequence[:10] / "calib_cam_to_cam.txt"
            if calib.is_file():
                return read_kitti_calib(calib)[f"P_rect_{self.camera}"].reshape(3, 4)[:, :3]
        raise ValueError(
            f"kitti/{sequence}: no intrinsics in this layout; pass intrinsics=(fx, fy, cx, cy) or raw_root= "
            "(a KITTI raw folder with <date>/calib_cam_to_cam.txt)"
        )

    @staticmethod
    def _pair(image_dir: Path, depth_dir: Path) -> tuple[list[Path], list[Path]]:
        depths = {p.name: p for p in depth_dir.glob("*.png")}
        images = [p for p in sorted(image_dir.glob("*.png")) if p.name in depths]
        return images, [depths[p.name] for p in images]

    def _build(self, sequence: str) -> _Seq:
        self._check_sequence(sequence)
        layout = self.layout
        if layout == "gathered":
            images, depths = self._pair(self.root / "image_gathered" / sequence,
                                        self.root / "groundtruth_depth_gathered" / sequence)
            K = self._intrinsics_fallback(sequence)
            return _Seq(images, depths, [K] * len(images), None)
        if layout == "flat":
            images, depths = self._pair(self.root / "rgb", self.root / "depth")
            per_file: dict[str, np.ndarray] = {}
            ann = self.root / "test_annotations.json"
            if self.intrinsics is None and ann.is_file():
                for item in json.loads(ann.read_text()).get("files", []):
                    per_file[Path(item["rgb"]).name] = intrinsics_matrix(*item["cam_in"])
            Ks = [per_file[p.name] if p.name in per_file else self._intrinsics_fallback(sequence) for p in images]
            return _Seq(images, depths, Ks, None)
        drive_dir = self._raw_drives[sequence]
        depth_dir = self._depth_dir(drive_dir)
        assert depth_dir is not None
        images, depths = self._pair(drive_dir / f"image_{self.camera}" / "data", depth_dir)
        date_dir = drive_dir.parent
        cam_to_cam = read_kitti_calib(date_dir / "calib_cam_to_cam.txt")
        K = cam_to_cam[f"P_rect_{self.camera}"].reshape(3, 4)[:, :3]
        cam2world = None
        oxts_dir = drive_dir / "oxts" / "data"
        if oxts_dir.is_dir() and (date_dir / "calib_velo_to_cam.txt").is_file():
            packets = [oxts_dir / f"{p.stem}.txt" for p in images]
            if all(p.is_file() for p in packets):
                oxts = np.stack([np.array(p.read_text().split()[:6], dtype=np.float64) for p in packets])
                imu2world = oxts_to_imu2world(oxts)
                T = cam2_from_imu(
                    cam_to_cam,
                    read_kitti_calib(date_dir / "calib_velo_to_cam.txt"),
                    read_kitti_calib(date_dir / "calib_imu_to_velo.txt"),
                    self.camera,
                )
                cam2world = imu2world @ se3_inverse(torch.from_numpy(T)).numpy()
        return _Seq(images, depths, [K] * len(images), cam2world)

    def _get(self, sequence: str) -> _Seq:
        if sequence not in self._seqs:
            self._seqs[sequence] = self._build(sequence)
        return self._seqs[sequence]

    def num_frames(self, sequence: str) -> int:
        return len(self._get(sequence).images)

    def load_frame(self, sequence: str, index: int) -> Frame:
        seq = self._get(sequence)
        depth, valid = read_depth_png(seq.depths[index], DEPTH_SCALE)
        return Frame(
            image=read_rgb(seq.images[index]),
            depth=depth,
            valid=valid,
            intrinsics=seq.intrinsics[index],
            cam2world=np.eye(4) if seq.cam2world is None else seq.cam2world[index],
            frame_id=seq.images[index].stem,
        )

    def has_poses_for(self, sequence: str) -> bool:
        """Whether ``sequence`` has real camera poses (raw layout with OXTS packets)."""
        return self._get(sequence).cam2world is not None

    def load(self, sequence, indices):
        sample = super().load(sequence, indices)
        sample.meta["has_poses"] = self.has_poses_for(sequence)
        return sample
