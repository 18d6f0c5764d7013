"""TUM trajectory files and timestamp association.

On disk (TUM RGB-D format): one pose per line, ``timestamp tx ty tz qx qy qz qw``, the pose
being camera-to-world, metres and seconds; lines starting with ``#`` are comments. In memory
(docs/CONVENTIONS.md): ``cam2world`` ``(T, 4, 4)`` float64 tensors and WXYZ quaternions; the
XYZW <-> WXYZ conversion happens here and nowhere else. CUT3R writes its ``pred_traj.txt``
in the same layout but with the quaternion *w first*: read/write those with
``quat_order="wxyz"``.

Association reproduces evo's ``sync.associate_trajectories`` with the default
``nearest_time`` method (the camera-pose protocol, PROTOCOLS 1.3, uses it with evo's default
``max_diff=0.01`` s; MonST3R's TUM-dynamics preparation associated rgb/GT with <= 0.02 s).

Example::

    traj_gt = read_tum_trajectory("groundtruth.txt")
    traj_est = read_tum_trajectory("estimate.txt")
    gt, est = associate_trajectories(traj_gt, traj_est, max_diff=0.01)
    metrics = pose_metrics(est.cam2world, gt.cam2world)   # mem4d.eval.metrics
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from mem4d.geometry.rotation import matrix_to_quat, quat_to_matrix, quat_wxyz_to_xyzw, quat_xyzw_to_wxyz

__all__ = [
    "Trajectory",
    "read_tum_trajectory",
    "write_tum_trajectory",
    "associate_timestamps",
    "associate_trajectories",
]

QuatOrder = Literal["xyzw", "wxyz"]


@dataclass
class Trajectory:
    """Timestamped camera poses.

    Attributes:
        timestamps: ``(T,)`` float64 numpy array, seconds.
        cam2world: ``(T, 4, 4)`` float64 tensor, camera-to-world (OpenCV camera axes when
            the data follows the project conventions; TUM files store whatever their
            producer used).
    """

    timestamps: np.ndarray
    cam2world: Tensor

    def __post_init__(self) -> None:
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
        if not isinstance(self.cam2world, Tensor):
            self.cam2world = torch.as_tensor(np.asarray(self.cam2world), dtype=torch.float64)
        if self.cam2world.shape != (len(self.timestamps), 4, 4):
            raise ValueError(
                f"cam2world must be (T, 4, 4) with T = {len(self.timestamps)} timestamps, "
                f"got {tuple(self.cam2world.shape)}"
            )

    def __len__(self) -> int:
        return len(self.timestamps)

    def select(self, idx: np.ndarray | list[int]) -> "Trajectory":
        """Sub-trajectory at integer indices ``idx`` (order and repeats kept)."""
        idx = np.asarray(idx, dtype=np.int64)
        return Trajectory(self.timestamps[idx], self.cam2world[torch.from_numpy(idx)])


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def read_tum_trajectory(path: str | os.PathLike, quat_order: QuatOrder = "xyzw") -> Trajectory:
    """Read a TUM trajectory file.

    Args:
        path: text file with ``timestamp tx ty tz q q q q`` per line (``#`` comments and
            blank lines skipped; any whitespace separates fields).
        quat_order: ``"xyzw"`` for the TUM standard, ``"wxyz"`` for CUT3R's ``pred_traj.txt``.

    Returns:
        :class:`Trajectory` with float64 timestamps and ``(T, 4, 4)`` cam2world; quaternions
        are normalised before conversion (evo does the same, and TUM GT files store them
        with 4 decimals).
    """
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.replace(",", " ").split()
            if len(fields) != 8:
                raise ValueError(
                    f"{path}:{lineno}: a TUM trajectory line has 8 fields "
                    f"(timestamp tx ty tz qx qy qz qw), got {len(fields)}"
                )
            rows.append([float(v) for v in fields])
    if not rows:
        raise ValueError(f"{path}: no poses found")
    mat = torch.tensor(rows, dtype=torch.float64)
    quat = mat[:, 4:8]
    if quat_order == "xyzw":
        quat = quat_xyzw_to_wxyz(quat)
    elif quat_order != "wxyz":
        raise ValueError(f"quat_order must be 'xyzw' or 'wxyz', got {quat_order!r}")
    T = torch.eye(4, dtype=torch.float64).repeat(len(mat), 1, 1)
    T[:, :3, :3] = quat_to_matrix(quat)  # normalises the quaternion
    T[:, :3, 3] = mat[:, 1:4]
    return Trajectory(mat[:, 0].numpy(), T)


def write_tum_trajectory(
    path: str | os.PathLike,
    timestamps: np.ndarray | Tensor | list[float],
    cam2world: Tensor | np.ndarray,
    quat_order: QuatOrder = "xyzw",
    header: str | None = None,
) -> None:
    """Write poses as a TUM trajectory file.

    Args:
        path: output file.
        timestamps: ``(T,)`` seconds.
        cam2world: ``(T, 4, 4)`` camera-to-world (rotation block must be a rotation).
        quat_order: ``"xyzw"`` (TUM standard) or ``"wxyz"`` (CUT3R's ``pred_traj.txt``).
        header: optional comment written first (each line prefixed with ``# ``).

    Quaternions are written canonical (``w >= 0``); values with 9 significant decimals
    (``%.9f`` for positions/quaternions, ``%.6f`` for timestamps).
    """
    ts = np.asarray(torch.as_tensor(timestamps).cpu(), dtype=np.float64).reshape(-1)
    M = np.asarray(torch.as_tensor(cam2world).detach().cpu(), dtype=np.float64)
    if M.shape != (len(ts), 4, 4):
        raise ValueError(f"cam2world must be (T, 4, 4) with T = {len(ts)}, got {M.shape}")
    if quat_order not in ("xyzw", "wxyz"):
        raise ValueError(f"quat_order must be 'xyzw' or 'wxyz', got {quat_order!r}")
    q = matrix_to_quat(torch.from_numpy(M[:, :3, :3]))  # canonical, w >= 0
    if quat_order == "xyzw":
        q = quat_wxyz_to_xyzw(q)
    q = q.numpy()
    with open(path, "w") as f:
        if header:
            for line in header.splitlines():
                f.write(f"# {line}\n")
        for i in range(len(ts)):
            vals = " ".join(f"{v:.9f}" for v in (*M[i, :3, 3], *q[i]))
            f.write(f"{ts[i]:.6f} {vals}\n")


# --------------------------------------------------------------------------------------
# Association
# --------------------------------------------------------------------------------------


def associate_timestamps(
    stamps_1: np.ndarray, stamps_2: np.ndarray, max_diff: float = 0.01, offset_2: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-timestamp matches of each ``stamps_1`` entry in ``stamps_2``.

    Same rule as evo's ``matching_time_indices``: for every ``stamps_1[i]`` (in order) the
    closest ``stamps_2[j] + offset_2`` is taken if ``|difference| <= max_diff``; on a tie the
    earlier ``j`` wins; entries of ``stamps_2`` may be matched more than once. When
    ``stamps_2`` is not sorted a brute-force nearest search is used (as evo does).

    Returns:
        ``(idx_1, idx_2)`` int64 arrays of equal length.
    """
    s1 = np.asarray(stamps_1, dtype=np.float64).reshape(-1)
    s2 = np.asarray(stamps_2, dtype=np.float64).reshape(-1) + offset_2
    if len(s2) == 0 or len(s1) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.all(np.diff(s2) >= 0):
        diffs = np.abs(s2[None, :] - s1[:, None])
        j = np.argmin(diffs, axis=1)
        ok = diffs[np.arange(len(s1)), j] <= max_diff
        return np.nonzero(ok)[0].astype(np.int64), j[ok].astype(np.int64)
    in_range = (s1 >= s2[0] - max_diff) & (s1 <= s2[-1] + max_diff)
    upper = np.minimum(np.searchsorted(s2, s1, side="right"), len(s2) - 1)
    lower = upper - 1
    diff_ub = s2[upper] - s1
    diff_lb = np.where(lower >= 0, s1 - s2[np.maximum(lower, 0)], np.inf)
    take_ub = (diff_ub <= max_diff) & (diff_ub < diff_lb)
    take_lb = ~take_ub & (diff_lb <= max_diff) & (diff_lb <= diff_ub)
    ok = in_range & (take_ub | take_lb)
    j = np.where(take_ub, upper, lower)
    return np.nonzero(ok)[0].astype(np.int64), j[ok].astype(np.int64)


def associate_trajectories(
    traj_1: Trajectory, traj_2: Trajectory, max_diff: float = 0.01, offset_2: float = 0.0
) -> tuple[Trajectory, Trajectory]:
    """Synchronise two trajectories to pose pairs with (nearly) equal timestamps.

    evo's ``associate_trajectories`` (``nearest_time``): the trajectory with fewer poses
    (``traj_2`` when the counts are equal) is matched into the other with
    :func:`associate_timestamps`, so none of the shorter one's poses is lost unless it has
    no partner within ``max_diff``. ``offset_2`` is added to ``traj_2``'s timestamps for
    matching only; each returned trajectory keeps its own timestamps.

    Returns:
        ``(traj_1_sync, traj_2_sync)`` with equal lengths, pairs in time order of the shorter.

    Raises:
        ValueError: when no pair matches.
    """
    second_longer = len(traj_2) > len(traj_1)
    short, long_ = (traj_1, traj_2) if second_longer else (traj_2, traj_1)
    off = offset_2 if second_longer else -offset_2
    i_short, i_long = associate_timestamps(short.timestamps, long_.timestamps, max_diff, off)
    if len(i_short) == 0:
        raise ValueError(
            f"no matching timestamps with max_diff={max_diff} s and offset={offset_2} s; "
            "check units (seconds) or raise max_diff"
        )
    s, l = short.select(i_short), long_.select(i_long)
    return (s, l) if second_longer else (l, s)
