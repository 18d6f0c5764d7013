"""TUM trajectory I/O and evo-compatible timestamp association."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mem4d.eval.trajectory_io import (
    Trajectory,
    associate_timestamps,
    associate_trajectories,
    read_tum_trajectory,
    write_tum_trajectory,
)

# Hard import: evo is a dev dependency and the parity checks below must fail, not skip,
# when it is missing.
try:
    from evo.core import sync as evo_sync
    from evo.core.trajectory import PoseTrajectory3D
except ImportError as exc:  # pragma: no cover - exercised only on a broken dev install
    raise ImportError(
        "tests/eval/test_trajectory_io.py needs `evo` (dev dependency): pip install -e '.[dev]'"
    ) from exc


def _poses(T: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(T, 4, generator=gen, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    from mem4d.geometry.rotation import quat_to_matrix

    M = torch.eye(4, dtype=torch.float64).repeat(T, 1, 1)
    M[:, :3, :3] = quat_to_matrix(q)
    M[:, :3, 3] = torch.randn(T, 3, generator=gen, dtype=torch.float64)
    return M


@pytest.mark.parametrize("quat_order", ["xyzw", "wxyz"])
def test_tum_round_trip(tmp_path, quat_order):
    M = _poses(7)
    ts = 1305031102.0 + 0.033 * np.arange(7)
    path = tmp_path / "traj.txt"
    write_tum_trajectory(path, ts, M, quat_order=quat_order, header="test trajectory")
    traj = read_tum_trajectory(path, quat_order=quat_order)
    np.testing.assert_allclose(traj.timestamps, ts, atol=1e-6)
    torch.testing.assert_close(traj.cam2world, M, atol=1e-8, rtol=0)


def test_convention_tum_file_is_xyzw_and_converted_to_wxyz(tmp_path):
    # 90 degrees about z: (qx, qy, qz, qw) = (0, 0, sin 45, cos 45) on disk.
    s = math.sqrt(0.5)
    path = tmp_path / "one.txt"
    path.write_text(f"# comment\n\n1.5 1 2 3 0 0 {s} {s}\n")
    traj = read_tum_trajectory(path)
    R = traj.cam2world[0, :3, :3]
    torch.testing.assert_close(R, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64), atol=1e-12, rtol=0)
    assert traj.cam2world[0, :3, 3].tolist() == [1.0, 2.0, 3.0]
    assert traj.timestamps.tolist() == [1.5]
    out = tmp_path / "out.txt"
    write_tum_trajectory(out, traj.timestamps, traj.cam2world)
    fields = [float(v) for v in out.read_text().split()]
    assert fields[4:] == pytest.approx([0.0, 0.0, s, s])  # written back XYZW, w >= 0


def test_read_rejects_malformed_lines(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1 2 3 4 5 6 7\n")
    with pytest.raises(ValueError, match="8 fields"):
        read_tum_trajectory(path)


def test_unnormalised_quaternions_are_normalised(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("0 0 0 0 0 0 0 2\n")  # identity, |q| = 2
    R = read_tum_trajectory(path).cam2world[0, :3, :3]
    torch.testing.assert_close(R, torch.eye(3, dtype=torch.float64))


def _evo_pairs(s1, s2, max_diff, offset=0.0):
    i, j = evo_sync.matching_time_indices(s1, s2, max_diff, offset)
    return np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)


@pytest.mark.parametrize("seed", range(4))
def test_association_matches_evo(seed):
    rng = np.random.default_rng(seed)
    s1 = np.sort(rng.uniform(0, 3, size=80))
    s2 = np.sort(rng.uniform(-0.1, 3.1, size=200))
    s2[10] = s2[11]  # a duplicated stamp
    s1[5] = 0.5 * (s2[40] + s2[41])  # an exact tie: evo takes the earlier one
    for max_diff in (0.0, 0.005, 0.01, 0.02):
        for offset in (0.0, 0.013):
            i, j = associate_timestamps(s1, s2, max_diff, offset)
            ei, ej = _evo_pairs(s1, s2.copy(), max_diff, offset)
            np.testing.assert_array_equal(i, ei)
            np.testing.assert_array_equal(j, ej)
    # Unsorted second list: brute-force branch, like evo's linear fallback.
    s2u = rng.permutation(s2)
    i, j = associate_timestamps(s1, s2u, 0.01)
    ei, ej = _evo_pairs(s1, s2u.copy(), 0.01)
    np.testing.assert_array_equal(i, ei)
    np.testing.assert_array_equal(j, ej)


def test_associate_trajectories_matches_evo_and_keeps_order():
    rng = np.random.default_rng(7)
    t_long = np.sort(rng.uniform(0, 5, 300))
    t_short = np.sort(rng.uniform(0, 5, 90))
    A = Trajectory(t_long, _poses(300, 1))
    B = Trajectory(t_short, _poses(90, 2))
    a, b = associate_trajectories(A, B, max_diff=0.02)
    ea, eb = evo_sync.associate_trajectories(
        PoseTrajectory3D(poses_se3=list(A.cam2world.numpy()), timestamps=A.timestamps),
        PoseTrajectory3D(poses_se3=list(B.cam2world.numpy()), timestamps=B.timestamps),
        max_diff=0.02,
    )
    np.testing.assert_array_equal(a.timestamps, ea.timestamps)
    np.testing.assert_array_equal(b.timestamps, eb.timestamps)
    np.testing.assert_allclose(a.cam2world.numpy(), np.stack(ea.poses_se3), atol=1e-12)
    # Swapped arguments give the swapped result.
    b2, a2 = associate_trajectories(B, A, max_diff=0.02)
    np.testing.assert_array_equal(a2.timestamps, a.timestamps)
    np.testing.assert_array_equal(b2.timestamps, b.timestamps)
    with pytest.raises(ValueError, match="no matching"):
        associate_trajectories(A, Trajectory(t_short + 100, B.cam2world), max_diff=0.01)
