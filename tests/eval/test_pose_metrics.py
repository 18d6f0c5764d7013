"""Camera-pose metrics: evo's reference numbers on TUM fr1/xyz and parity with evo itself."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mem4d.eval.metrics import PoseAlignmentError, align_trajectory, pose_metrics, relative_pose_errors
from mem4d.eval.trajectory_io import associate_trajectories, read_tum_trajectory

# evo is a dev dependency (pyproject [dev]); the parity test must fail loudly if it is missing
# instead of silently skipping, so it is imported unconditionally.
try:
    from evo import main_ape, main_rpe
    from evo.core import metrics as evo_metrics
    from evo.core.trajectory import PoseTrajectory3D
except ImportError as exc:  # pragma: no cover - exercised only on a broken dev install
    raise ImportError(
        "tests/eval/test_pose_metrics.py needs `evo` (dev dependency): pip install -e '.[dev]'"
    ) from exc

TUM_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "tum_fr1_xyz_trajectories"
if not TUM_DIR.exists():  # layout used on the developer machines
    TUM_DIR = Path("/work/shared/data/tum_fr1_xyz_trajectories")


def _random_trajectory(gen: np.random.Generator, T: int) -> np.ndarray:
    """Smooth-ish random cam2world poses (T, 4, 4)."""
    poses = np.tile(np.eye(4), (T, 1, 1))
    R = np.eye(3)
    p = np.zeros(3)
    for i in range(T):
        w = gen.normal(scale=0.05, size=3)
        th = np.linalg.norm(w)
        K = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) / max(th, 1e-12)
        dR = np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K
        R = R @ dR
        p = p + R @ gen.normal(scale=0.1, size=3) + np.array([0.05, 0, 0])
        poses[i, :3, :3], poses[i, :3, 3] = R, p
    return poses


def _perturb(gen: np.random.Generator, poses: np.ndarray, scale: float) -> np.ndarray:
    """Noisy estimate in another Sim(3) frame: rotations and positions perturbed."""
    T = len(poses)
    out = poses.copy()
    for i in range(T):
        w = gen.normal(scale=0.02, size=3)
        th = np.linalg.norm(w)
        K = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) / th
        out[i, :3, :3] = out[i, :3, :3] @ (np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K)
        out[i, :3, 3] += gen.normal(scale=0.03, size=3)
    # Express in a different frame with a different scale.
    a = gen.normal(size=3)
    th = np.linalg.norm(a)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]]) / th
    Ra = np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K
    ta = gen.normal(size=3) * 3
    out[:, :3, :3] = Ra @ out[:, :3, :3]
    out[:, :3, 3] = scale * out[:, :3, 3] @ Ra.T + ta
    return out


def _evo(gt: np.ndarray, est: np.ndarray, correct_scale: bool) -> dict[str, float]:
    stamps = np.arange(len(gt), dtype=np.float64)
    ref = PoseTrajectory3D(poses_se3=list(gt), timestamps=stamps)
    res = {}
    ape = main_ape.ape(
        copy.deepcopy(ref),
        PoseTrajectory3D(poses_se3=list(est), timestamps=stamps),
        evo_metrics.PoseRelation.translation_part,
        align=True,
        correct_scale=correct_scale,
    )
    res["ate"] = ape.stats["rmse"]
    for key, rel in (("rpe_trans", evo_metrics.PoseRelation.translation_part), ("rpe_rot", evo_metrics.PoseRelation.rotation_angle_deg)):
        rpe = main_rpe.rpe(
            copy.deepcopy(ref),
            PoseTrajectory3D(poses_se3=list(est), timestamps=stamps),
            rel,
            delta=1,
            delta_unit=evo_metrics.Unit.frames,
            all_pairs=True,
            rel_delta_tol=0.01,
            align=True,
            correct_scale=correct_scale,
        )
        res[key] = rpe.stats["rmse"]
    return res


# ------------------------------------------------------------------ reference numbers (README)


@pytest.fixture(scope="module")
def fr1_xyz():
    gt = read_tum_trajectory(TUM_DIR / "freiburg1_xyz-groundtruth.txt")
    est = read_tum_trajectory(TUM_DIR / "freiburg1_xyz-rgbdslam.txt")
    # As `evo_ape tum GT EST`: reference first, default max_diff 0.01 s.
    return associate_trajectories(gt, est, max_diff=0.01)


def test_fr1_xyz_association(fr1_xyz):
    gt, est = fr1_xyz
    assert len(gt) == len(est) == 785  # of 788 estimated poses
    assert np.all(np.abs(gt.timestamps - est.timestamps) <= 0.01)


@pytest.mark.parametrize(("align", "expected"), [("sim3", 0.013389), ("se3", 0.013470)])
def test_fr1_xyz_reproduces_evo_reference_ate(fr1_xyz, align, expected):
    gt, est = fr1_xyz
    m = pose_metrics(est.cam2world, gt.cam2world, align=align)
    assert m["ate"] == pytest.approx(expected, abs=1e-5)
    assert m["n_poses"] == 785


# ------------------------------------------------------------------------ parity with evo


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("correct_scale", [True, False])
def test_pose_metrics_match_evo(seed, correct_scale):
    gen = np.random.default_rng(seed)
    gt = _random_trajectory(gen, 60)
    est = _perturb(gen, gt, scale=0.37 if correct_scale else 1.0)
    ours = pose_metrics(torch.from_numpy(est), torch.from_numpy(gt), align="sim3" if correct_scale else "se3")
    ref = _evo(gt, est, correct_scale)
    for k in ("ate", "rpe_trans", "rpe_rot"):
        assert ours[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k


def test_fr1_xyz_matches_evo_exactly_including_rpe(fr1_xyz):
    gt, est = fr1_xyz
    ours = pose_metrics(est.cam2world, gt.cam2world, align="sim3")
    ref = _evo(gt.cam2world.numpy(), est.cam2world.numpy(), correct_scale=True)
    for k in ("ate", "rpe_trans", "rpe_rot"):
        assert ours[k] == pytest.approx(ref[k], rel=1e-9), k


# ---------------------------------------------------------------------- own properties


def test_perfect_and_similar_trajectories_give_zero_error():
    gen = np.random.default_rng(3)
    gt = torch.from_numpy(_random_trajectory(gen, 30))
    m = pose_metrics(gt, gt)
    assert m["ate"] < 1e-12 and m["rpe_trans"] < 1e-12 and m["rpe_rot"] < 1e-6
    # A pure Sim(3) change of frame is removed by the alignment.
    s, R = 2.5, torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]
    if torch.linalg.det(R) < 0:
        R = -R
    est = gt.clone()
    est[:, :3, :3] = R @ gt[:, :3, :3]
    est[:, :3, 3] = s * gt[:, :3, 3] @ R.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    m = pose_metrics(est, gt, align="sim3")
    assert m["ate"] < 1e-9 and m["rpe_trans"] < 1e-9 and m["rpe_rot"] < 1e-6
    assert m["scale"] == pytest.approx(1 / s, rel=1e-9)
    assert pose_metrics(est, gt, align="se3")["ate"] > 0.1


def test_rpe_known_values():
    # Reference moves 1 m along x per frame; estimate moves 1.1 m and yaws 2 deg per frame.
    T = 5
    gt = torch.eye(4, dtype=torch.float64).repeat(T, 1, 1)
    gt[:, 0, 3] = torch.arange(T, dtype=torch.float64)
    est = gt.clone()
    est[:, 0, 3] *= 1.1
    for i in range(T):
        a = math.radians(2.0 * i)
        est[i, :2, :2] = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    E = relative_pose_errors(est, gt)
    assert E.shape == (T - 1, 4, 4)
    m = pose_metrics(est, gt, align="none")
    assert m["rpe_rot"] == pytest.approx(2.0, rel=1e-9)
    # E_i = (Q_rel)^-1 P_rel, P_rel = [Rz(2deg) | Rz(-2i deg)(1.1, 0, 0)]: translation error norm
    # |R_i^T (1.1, 0, 0) - (1, 0, 0)| (independent of the yaw of the relative rotation).
    expected = []
    for i in range(T - 1):
        a = math.radians(2.0 * i)
        d = np.array([1.1 * math.cos(a), -1.1 * math.sin(a), 0.0]) - np.array([1.0, 0, 0])
        expected.append(np.linalg.norm(d))
    assert m["rpe_trans"] == pytest.approx(float(np.sqrt(np.mean(np.square(expected)))), rel=1e-9)
    assert m["ate"] == pytest.approx(float(np.sqrt(np.mean((0.1 * np.arange(T)) ** 2))), rel=1e-9)


def test_scale_only_alignment_and_degenerate_input():
    gen = np.random.default_rng(5)
    gt = torch.from_numpy(_random_trajectory(gen, 20))
    est = gt.clone()
    est[:, :3, 3] *= 0.5
    aligned, s, R, _ = align_trajectory(est, gt, align="scale")
    assert float(s) == pytest.approx(2.0, rel=1e-9)
    torch.testing.assert_close(aligned, gt)
    torch.testing.assert_close(R, torch.eye(3, dtype=torch.float64))
    static = torch.eye(4, dtype=torch.float64).repeat(10, 1, 1)  # all centres identical
    with pytest.raises(PoseAlignmentError):
        pose_metrics(static, static)
    with pytest.raises(ValueError):
        pose_metrics(gt, gt, align="bogus")
