"""TUM RGB-D and Bonn RGB-D Dynamic readers (same on-disk format).

Layout of one sequence folder (e.g. ``rgbd_dataset_freiburg3_walking_xyz/`` or
``rgbd_bonn_balloon2/``)::

    rgb.txt          "timestamp rgb/<timestamp>.png" per line, '#' comments
    depth.txt        "timestamp depth/<timestamp>.png"
    groundtruth.txt  "timestamp tx ty tz qx qy qz qw"  (camera-to-world, metres, XYZW quaternion)
    rgb/*.png        640x480 colour
    depth/*.png      640x480 uint16, depth = value / 5000 m, 0 = invalid

``root`` is either one such folder or a folder holding several (searched two levels deep).

Conversions made here (and nowhere else):
- Frames are the colour images that have a depth image within ``max_dt`` (0.02 s, as TUM's
  ``associate.py`` and MonST3R); pairs are chosen greedily by smallest time difference, one to one.
- The pose of a frame is the ground truth interpolated at the *colour* timestamp (linear
  translation, slerp rotation) when two ground-truth samples at most ``max_pose_gap`` apart
  bracket it, else the nearest sample within ``max_dt``; frames with neither are dropped.
- Quaternions XYZW -> WXYZ with :func:`mem4d.geometry.rotation.quat_xyzw_to_wxyz`. TUM's
  poses are those of the colour camera's optical frame (x right, y down, z forward): already
  OpenCV, no axis change.
- Intrinsics: the published colour-camera calibration of each Freiburg sensor
  (fr1 517.3/516.5/318.6/255.3, fr2 520.9/521.0/325.1/249.7, fr3 535.4/539.2/320.1/247.6),
  chosen by "freiburgN" in the sequence name, else the ROS default 525/525/319.5/239.5;
  Bonn: 542.822841/542.576870/315.593520/237.756098. Override with ``intrinsics=``.
  fr1/fr2 images are not undistorted (TUM publishes the distortion separately); the depth is
  pre-registered to the colour image by the sensor.

Bonn caveat: the Bonn page describes its ground truth as poses of the motion-capture marker
frame, related to the sensor by a calibration it publishes for aligning its reference point
cloud. Like MonST3R/CUT3R this reader uses ``groundtruth.txt`` as is, so Bonn poses are good
for trajectory evaluation up to that fixed offset, not for exact multi-view depth fusion;
each clip's ``meta["pose_frame"]`` says ``"mocap_marker"``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mem4d.data.sources.base import Frame, SequenceSource, intrinsics_matrix, read_depth_png, read_rgb
from mem4d.geometry.rotation import (
    axis_angle_to_quat,
    matrix_to_quat,
    quat_canonical,
    quat_conjugate,
    quat_multiply,
    quat_to_axis_angle,
    quat_to_matrix,
    quat_xyzw_to_wxyz,
)
from mem4d.geometry.se3 import se3_from_rt

__all__ = ["TumSource", "BonnSource", "read_tum_list", "read_tum_trajectory", "associate_timestamps", "interpolate_tum_poses"]

TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}
ROS_DEFAULT_INTRINSICS = (525.0, 525.0, 319.5, 239.5)
BONN_INTRINSICS = (542.822841, 542.576870, 315.593520, 237.756098)
TUM_DEPTH_SCALE = 5000.0


def _data_lines(path: Path) -> list[list[str]]:
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append(line.split())
    return rows


def read_tum_list(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """A TUM ``rgb.txt``/``depth.txt``: (N,) float64 timestamps and the N relative file names."""
    rows = _data_lines(Path(path))
    return np.array([float(r[0]) for r in rows], dtype=np.float64), [r[1] for r in rows]


def read_tum_trajectory(path: str | Path) -> tuple[np.ndarray, torch.Tensor]:
    """A trajectory in TUM format (``timestamp tx ty tz qx qy qz qw`` per line, ``#`` comments).

    Returns:
        timestamps (N,) float64 and cam2world (N, 4, 4) float64 (quaternions XYZW -> WXYZ here).
    """
    rows = _data_lines(Path(path))
    data = np.array([[float(x) for x in r[:8]] for r in rows if len(r) >= 8], dtype=np.float64).reshape(-1, 8)
    q = quat_xyzw_to_wxyz(torch.from_numpy(data[:, 4:8]))
    cam2world = se3_from_rt(quat_to_matrix(q), torch.from_numpy(data[:, 1:4]))
    return data[:, 0], cam2world


def associate_timestamps(a: np.ndarray, b: np.ndarray, max_dt: float) -> list[tuple[int, int]]:
    """One-to-one pairs (i, j) with |a[i] - b[j]| <= max_dt, greedily by smallest difference.

    Returned sorted by i. Each element of ``a`` is paired with at most one of ``b`` and vice versa.
    """
    if len(a) == 0 or len(b) == 0:
        return []
    order = np.argsort(b, kind="stable")
    bs = b[order]
    candidates = []
    pos = np.searchsorted(bs, a)
    for i, p in enumerate(pos):
        for k in range(max(p - 2, 0), min(p + 2, len(bs))):
            dt = abs(a[i] - bs[k])
            if dt <= max_dt:
                candidates.append((dt, i, int(order[k])))
    candidates.sort()
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return sorted(pairs)


def interpolate_tum_poses(
    gt_times: np.ndarray, gt_cam2world: torch.Tensor, query: np.ndarray, max_gap: float, max_dt: float
) -> tuple[torch.Tensor, np.ndarray]:
    """Poses at ``query`` times from a ground-truth trajectory.

    Interpolated (linear translation, slerp rotation) between the two samples that bracket a
    query when they are at most ``max_gap`` apart; otherwise the nearest sample if within
    ``max_dt``; otherwise no pose.

    Returns:
        cam2world (Q, 4, 4) float64 (identity where missing) and ok (Q,) bool.
    """
    order = np.argsort(gt_times, kind="stable")
    t = gt_times[order]
    c2w = gt_cam2world[torch.from_numpy(order)].double()
    Q = len(query)
    out = torch.eye(4, dtype=torch.float64).repeat(Q, 1, 1)
    ok = np.zeros(Q, dtype=bool)
    if len(t) == 0:
        return out, ok
    hi = np.clip(np.searchsorted(t, query, side="left"), 0, len(t) - 1)
    lo = np.clip(hi - 1, 0, len(t) - 1)
    exact = t[hi] == query
    lo = np.where(exact, hi, lo)
    bracket = (t[lo] <= query) & (query <= t[hi]) & ((t[hi] - t[lo]) <= max_gap)
    # Nearest sample for the rest.
    nearest = np.where(np.abs(t[lo] - query) <= np.abs(t[hi] - query), lo, hi)
    near_ok = np.abs(t[nearest] - query) <= max_dt
    a = np.where(t[hi] > t[lo], (query - t[lo]) / np.maximum(t[hi] - t[lo], 1e-300), 0.0)
    a = np.where(bracket, a, 0.0)
    i0 = np.where(bracket, lo, nearest)
    i1 = np.where(bracket, hi, nearest)
    ok = bracket | near_ok
    q0 = matrix_to_quat(c2w[torch.from_numpy(i0), :3, :3])
    q1 = matrix_to_quat(c2w[torch.from_numpy(i1), :3, :3])
    rel = quat_canonical(quat_multiply(quat_conjugate(q0), q1))  # shortest arc
    alpha = torch.from_numpy(a).unsqueeze(-1)
    q = quat_multiply(q0, axis_angle_to_quat(alpha * quat_to_axis_angle(rel)))
    tr = (1 - alpha) * c2w[torch.from_numpy(i0), :3, 3] + alpha * c2w[torch.from_numpy(i1), :3, 3]
    poses = se3_from_rt(quat_to_matrix(q), tr)
    mask = torch.from_numpy(ok)
    out[mask] = poses[mask]
    return out, ok


@dataclass
class _TumIndex:
    folder: Path
    rgb_files: list[str]
    depth_files: list[str]
    times: np.ndarray
    cam2world: torch.Tensor
    intrinsics: np.ndarray


class TumSource(SequenceSource):
    """TUM RGB-D sequences (see the module docstring for layout and conventions).

    Args:
        root: one sequence folder or a folder of them.
        intrinsics: (fx, fy, cx, cy) overriding the per-sensor defaults.
        max_dt: colour/depth (and nearest-pose) association tolerance in seconds.
        max_pose_gap: largest ground-truth gap to interpolate across, in seconds.
        frame_range: (start, stop) slice of the associated frames (e.g. (30, 140) for the
            110-frame Bonn evaluation subset of MonST3R).
        **kwargs: ``sequences``, ``max_depth``, ``min_depth`` of :class:`SequenceSource`.
    """

    name = "tum"
    default_intrinsics = ROS_DEFAULT_INTRINSICS

    def __init__(
        self,
        root: str | Path,
        *,
        intrinsics: tuple[float, float, float, float] | None = None,
        max_dt: float = 0.02,
        max_pose_gap: float = 0.1,
        frame_range: tuple[int, int] | None = None,
        sequences: Iterable[str] | None = None,
        max_depth: float | None = None,
        min_depth: float = 0.0,
    ) -> None:
        super().__init__(root, sequences=sequences, max_depth=max_depth, min_depth=min_depth)
        self.intrinsics = intrinsics
        self.max_dt = max_dt
        self.max_pose_gap = max_pose_gap
        self.frame_range = frame_range
        self._index: dict[str, _TumIndex] = {}

    def _discover(self) -> list[str]:
        if (self.root / "rgb.txt").is_file():
            return [self.root.name]
        found = []
        for txt in sorted(self.root.glob("*/rgb.txt")) + sorted(self.root.glob("*/*/rgb.txt")):
            found.append(txt.parent.relative_to(self.root).as_posix())
        return found

    def _folder(self, sequence: str) -> Path:
        if (self.root / "rgb.txt").is_file() and sequence == self.root.name:
            return self.root
        return self.root / sequence

    def _camera(self, sequence: str) -> tuple[float, float, float, float]:
        if self.intrinsics is not None:
            return tuple(self.intrinsics)  # type: ignore[return-value]
        for key, value in TUM_INTRINSICS.items():
            if key in sequence:
                return value
        return self.default_intrinsics

    def _build(self, sequence: str) -> _TumIndex:
        self._check_sequence(sequence)
        folder = self._folder(sequence)
        rgb_t, rgb_f = read_tum_list(folder / "rgb.txt")
        dep_t, dep_f = read_tum_list(folder / "depth.txt")
        gt_t, gt_c2w = read_tum_trajectory(folder / "groundtruth.txt")
        pairs = associate_timestamps(rgb_t, dep_t, self.max_dt)
        times = np.array([rgb_t[i] for i, _ in pairs], dtype=np.float64)
        c2w, ok = interpolate_tum_poses(gt_t, gt_c2w, times, self.max_pose_gap, self.max_dt)
        keep = np.nonzero(ok)[0]
        if self.frame_range is not None:
            keep = keep[slice(*self.frame_range)]
        return _TumIndex(
            folder=folder,
            rgb_files=[rgb_f[pairs[k][0]] for k in keep],
            depth_files=[dep_f[pairs[k][1]] for k in keep],
            times=times[keep],
            cam2world=c2w[torch.from_numpy(keep)],
            intrinsics=intrinsics_matrix(*self._camera(sequence)),
        )

    def _get(self, sequence: str) -> _TumIndex:
        if sequence not in self._index:
            self._index[sequence] = self._build(sequence)
        return self._index[sequence]

    def num_frames(self, sequence: str) -> int:
        return len(self._get(sequence).rgb_files)

    def timestamps(self, sequence: str) -> np.ndarray:
        """Colour timestamps of the frames (seconds)."""
        return self._get(sequence).times.copy()

    def load_frame(self, sequence: str, index: int) -> Frame:
        idx = self._get(sequence)
        image = read_rgb(idx.folder / idx.rgb_files[index])
        depth, valid = read_depth_png(idx.folder / idx.depth_files[index], TUM_DEPTH_SCALE)
        return Frame(
            image=image,
            depth=depth,
            valid=valid,
            intrinsics=idx.intrinsics,
            cam2world=idx.cam2world[index].numpy(),
            frame_id=f"{idx.times[index]:.6f}",
        )

    def load(self, sequence, indices):
        sample = super().load(sequence, indices)
        sample.meta["timestamps"] = [float(self._get(sequence).times[i]) for i in sample.meta["indices"]]
        sample.meta["pose_frame"] = self.pose_frame
        return sample

    pose_frame = "color_optical"


class BonnSource(TumSource):
    """Bonn RGB-D Dynamic sequences (``rgbd_bonn_*``): the TUM format with Bonn's camera.

    See the module docstring for the caveat on its ground-truth frame.
    """

    name = "bonn"
    default_intrinsics = BONN_INTRINSICS
    pose_frame = "mocap_marker"

    def _camera(self, sequence: str) -> tuple[float, float, float, float]:
        return tuple(self.intrinsics) if self.intrinsics is not None else self.default_intrinsics  # type: ignore[return-value]
