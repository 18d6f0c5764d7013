"""`SceneMemory.close_loop`: a loop closure's correction spread over the frames written since the
keyframe moves the frame bank, the keyframes, the fused voxels and the subjects; bad calls change nothing."""

from __future__ import annotations

import numpy as np
import pytest

from mem4d.scene import Observation, Query, SceneMemory, SceneMemoryConfig
from mem4d.scene.camera_utils import backproject_depth
from mem4d.scene.loop_correction import correct_trajectory, correction_shares, spread_correction

from .fixtures import Room, Sphere, intrinsics, masked_psnr, pan_path, yaw_pose

N, CLOSE = 24, 24  # frames written, and the frame that closes the loop onto frame 0
SIZE = (48, 64)


def _drift(share: float) -> np.ndarray:
    """The drift a chained pose has picked up by ``share`` of the way: up to 6 degrees of yaw and
    6 cm along the yaw axis (along the axis, so that a share of it is exactly a share of the motion)."""
    D = yaw_pose(6.0 * share)
    D[1, 3] = 0.06 * share
    return D


def _write(mem: SceneMemory, room: Room, poses: np.ndarray, K: np.ndarray, drifted: bool) -> list:
    frames = []
    for t, pose in enumerate(poses):
        f = room.render(pose, K, SIZE, t=t)
        c2w = _drift(t / CLOSE) @ pose if drifted else pose
        mem.write(Observation(t=t, rgb=f.rgb, K=K, c2w=c2w, depth=f.depth, dynamic_mask=f.dynamic_mask))
        frames.append(f)
    return frames


def _psnr_at(mem: SceneMemory, pose: np.ndarray, K: np.ndarray, frame) -> float:
    st = mem.query(Query(c2w=pose, K=K, size=SIZE, t_query=CLOSE, want=("static",))).static
    return masked_psnr(st.rgb[0], frame.rgb, st.mask[0] & ~frame.dynamic_mask)


@pytest.fixture(scope="module")
def runs():
    room = Room(spheres=[Sphere((0.3, 0.2, 2.0), 0.25, (0.9, 0.1, 0.1), (0.9, 0.9, 0.2), velocity=(0.01, 0, 0))])
    K, poses = intrinsics(64, 48), pan_path(N, 90.0)
    out = {}
    for name, drifted in (("truth", False), ("drifted", True), ("closed", True)):
        mem = SceneMemory(SceneMemoryConfig(voxel_size=0.03))
        frames = _write(mem, room, poses, K, drifted)
        if name == "closed":
            moved = mem.close_loop(0, CLOSE, np.linalg.inv(_drift(1.0)))
            assert moved == N - 1  # every frame after the keyframe
        out[name] = mem
    return out, K, poses, frames


def test_shares_are_zero_at_the_keyframe_one_at_the_closing_frame_and_linear_between():
    np.testing.assert_allclose(correction_shares(np.array([-3, 4, 7, 10, 16, 20]), 4, 16),
                               [0, 0, 0.25, 0.5, 1, 1])
    with pytest.raises(ValueError, match="earlier frame"):
        correction_shares(np.array([1]), 5, 5)


def test_a_spread_correction_is_the_identity_at_0_the_correction_at_1_and_halves_compose():
    C = yaw_pose(30.0, centre=(0.2, -0.4, 1.0)) @ yaw_pose(0.0, pitch_deg=10.0)
    R, p = spread_correction(np.array([0.0, 0.5, 1.0]), C)
    np.testing.assert_allclose(R[0], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(p[0], 0, atol=1e-12)
    np.testing.assert_allclose(R[2], C[:3, :3], atol=1e-12)
    np.testing.assert_allclose(p[2], C[:3, 3], atol=1e-12)
    np.testing.assert_allclose(R[1] @ R[1], C[:3, :3], atol=1e-12)  # half the angle about the same axis
    np.testing.assert_allclose(p[1], C[:3, 3] / 2, atol=1e-12)


def test_a_streamed_trajectory_is_corrected_as_the_memory_moves_its_frames():
    """`correct_trajectory` (trajectory_loop_corrected.txt): the pan streamed with a drift that grows
    linearly until the closing frame, which the model already corrected, comes back exact; the
    keyframe and the frames after the closure stay as streamed; a second closure applies on top."""
    poses = pan_path(N + 6, 90.0)
    streamed = np.stack([_drift(t / CLOSE) @ P for t, P in enumerate(poses)])
    streamed[CLOSE:] = poses[CLOSE:]  # the closing frame jumped back, the next ones chained from it
    fixed = correct_trajectory(streamed, [(CLOSE, 0, np.linalg.inv(_drift(1.0)))])
    np.testing.assert_allclose(fixed, poses, atol=1e-9)
    np.testing.assert_array_equal(correct_trajectory(streamed, []), streamed)
    # a later closure onto frame 10 moves only the frames between 10 and it, on top of the first one
    C = yaw_pose(2.0)
    twice = correct_trajectory(streamed, [(CLOSE + 4, 10, C), (CLOSE, 0, np.linalg.inv(_drift(1.0)))])
    np.testing.assert_allclose(twice[:11], poses[:11], atol=1e-9)
    np.testing.assert_allclose(twice[CLOSE + 4:], poses[CLOSE + 4:], atol=1e-9)
    R, p = spread_correction(np.array([0.5]), C)  # frame 19 is half way from 10 to 28
    np.testing.assert_allclose(twice[19, :3, :3], R[0] @ poses[19, :3, :3], atol=1e-9)
    np.testing.assert_allclose(twice[19, :3, 3], R[0] @ poses[19, :3, 3] + p[0], atol=1e-9)
    for bad in ([(N + 6, 0, C)], [(5, 5, C)], [(5, -1, C)]):
        with pytest.raises(ValueError, match="does not fit"):
            correct_trajectory(streamed, bad)
    with pytest.raises(ValueError, match=r"\(T, 4, 4\)"):
        correct_trajectory(streamed[0], [])


def _sample_error(mem: SceneMemory, fid: int, pose: np.ndarray, K: np.ndarray, frame) -> float:
    """Largest depth error of keyframe ``fid``'s surface samples seen from its true pose."""
    p = (mem.keyframes.samples[fid] - pose[:3, 3]) @ pose[:3, :3]
    u = np.rint(K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]).astype(int)
    v = np.rint(K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]).astype(int)
    ok = (u >= 0) & (u < SIZE[1]) & (v >= 0) & (v < SIZE[0])
    return float(np.abs(p[ok, 2] - frame.depth[v[ok], u[ok]]).max()) if ok.mean() > 0.9 else np.inf


def test_closing_the_loop_puts_the_frames_back_where_they_were_taken(runs):
    mems, K, poses, frames = runs
    closed, drifted = mems["closed"], mems["drifted"]
    np.testing.assert_allclose(closed.bank.c2w[:N], poses, atol=1e-9)  # the drift was exactly a share of it
    assert np.abs(drifted.bank.c2w[N - 1] - poses[N - 1]).max() > 0.05
    late = [fid for fid in closed.keyframes.ids if fid > N // 2]
    assert late and closed.keyframes.ids == drifted.keyframes.ids
    for fid in late:  # the keyframes' surface samples moved with their frames
        assert _sample_error(closed, fid, poses[fid], K, frames[fid]) < 1e-4
        assert _sample_error(drifted, fid, poses[fid], K, frames[fid]) > 0.05


def test_the_static_layer_moved_with_the_frames_renders_like_one_written_at_the_true_poses(runs):
    mems, K, poses, frames = runs
    psnr = {name: np.mean([_psnr_at(mem, poses[t], K, frames[t]) for t in (4, 12, 20)]) for name, mem in mems.items()}
    print("PSNR at the true poses:", {k: round(v, 2) for k, v in psnr.items()})
    assert psnr["drifted"] < psnr["truth"] - 4.0  # the control: the drift does show
    assert psnr["closed"] > psnr["truth"] - 4.0 and psnr["closed"] > psnr["drifted"] + 10.0  # 33.4 vs 36.6 and 18.8
    n = {name: mem.stats().n_voxels for name, mem in mems.items()}
    assert n["closed"] < 1.1 * n["truth"]  # the moved copies merged, nothing duplicated
    assert mems["closed"].static.n_render == mems["closed"].static.count_renderable()


def test_subject_records_move_with_their_time(runs):
    mems, *_ = runs
    truth, closed, drifted = (list(mems[k].tracker.records.values()) for k in ("truth", "closed", "drifted"))
    assert truth and len(truth) == len(closed) == len(drifted)
    err = {name: np.linalg.norm(recs[0].x[:3] - truth[0].x[:3]) for name, recs in (("closed", closed), ("drifted", drifted))}
    assert err["drifted"] > 0.05 and err["closed"] < 0.2 * err["drifted"], err
    np.testing.assert_allclose(np.asarray(closed[0].track_c), np.asarray(truth[0].track_c), atol=0.02)


def test_bad_closures_raise_and_change_nothing():
    K = intrinsics(64, 48)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05))
    for t in range(3):
        mem.write(Room().observation(t, yaw_pose(5 * t), K, SIZE))
    before = (mem.bank.c2w[:3].copy(), mem.static.pos[: mem.static.n].copy())
    bad = [((2, 2, np.eye(4)), "earlier frame"), ((0, 2, np.eye(4)), "before frame 2 is written"),
           ((0, 5, np.full((4, 4), np.nan)), "NaN"), ((0, 5, np.diag([2.0, 1, 1, 1])), "orthonormal"),
           ((0.5, 5, np.eye(4)), "integer")]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            mem.close_loop(*args)
    np.testing.assert_array_equal(mem.bank.c2w[:3], before[0])
    np.testing.assert_array_equal(mem.static.pos[: mem.static.n], before[1])


@pytest.mark.parametrize("mode", ["points", "tsdf"])
def test_a_closed_memory_saves_loads_and_keeps_writing(tmp_path, mode):
    K, poses = intrinsics(64, 48), pan_path(10, 40.0)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05, static_mode=mode))
    room = Room()
    for t in range(8):
        mem.write(room.observation(t, _drift(t / 8) @ poses[t], K, SIZE))
    mem.close_loop(0, 8, np.linalg.inv(_drift(1.0)))
    mem.save(tmp_path / "m")
    loaded = SceneMemory.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.static.t_obs[: loaded.static.n], mem.static.t_obs[: mem.static.n])
    for m in (mem, loaded):
        m.write(room.observation(8, poses[8], K, SIZE))
    q = Query(c2w=poses[3], K=K, size=SIZE, t_query=9, want=("static",))
    np.testing.assert_allclose(mem.query(q).static.rgb, loaded.query(q).static.rgb, atol=1e-6)
    assert mem.query(q).static.coverage > 0.9


def test_a_memory_saved_before_voxels_kept_their_observation_time_still_loads(tmp_path):
    K = intrinsics(64, 48)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05))
    for t in range(3):
        mem.write(Room().observation(t, yaw_pose(5 * t), K, SIZE))
    mem.save(tmp_path / "m")
    arrays = dict(np.load(tmp_path / "m" / "static.npz"))
    del arrays["t_obs"]
    np.savez(tmp_path / "m" / "static.npz", **arrays)
    loaded = SceneMemory.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.static.t_obs[: loaded.static.n], mem.static.last_t[: mem.static.n])


def test_write_frame_output_hands_the_memory_the_loop_the_model_closed():
    from types import SimpleNamespace

    from mem4d.scene import write_frame_output

    K, poses, room = intrinsics(64, 48), pan_path(6, 30.0), Room()

    def out(t: int, onto: int, correction: np.ndarray) -> SimpleNamespace:
        f = room.render(poses[t], K, SIZE)
        world = backproject_depth(f.depth.astype(np.float64), K, poses[t])
        return SimpleNamespace(pts_world=world[None], conf_world=np.ones((1, 48, 64)), depth=f.depth[None],
                               intrinsics=K[None], cam2world=poses[t][None], dynamic_prob=None,
                               loop_keyframe=np.array([onto]), loop_correction=correction[None]), f.rgb

    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05))
    C = yaw_pose(4.0)
    for t in range(6):
        o, rgb = out(t, 1 if t == 5 else -1, C if t == 5 else np.eye(4))
        write_frame_output(mem, o, t, rgb)
    np.testing.assert_allclose(mem.bank.c2w[:2], poses[:2], atol=1e-12)  # at and before the keyframe
    for t in (2, 3, 4):  # a growing share of the 4 degrees
        turned = np.degrees(np.arccos(np.clip((np.trace(mem.bank.c2w[t, :3, :3] @ poses[t, :3, :3].T) - 1) / 2, -1, 1)))
        assert abs(turned - 4.0 * (t - 1) / 4) < 1e-6, (t, turned)
    np.testing.assert_allclose(mem.bank.c2w[5], poses[5], atol=1e-12)  # the closing frame came corrected


@pytest.mark.parametrize("mode", ["points", "tsdf"])
def test_moving_every_voxel_by_nothing_changes_no_render(mode):
    K, poses, room = intrinsics(64, 48), pan_path(6, 30.0), Room()
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05, static_mode=mode))
    for t in range(6):
        mem.write(room.observation(t, poses[t], K, SIZE))
    q = Query(c2w=poses[2], K=K, size=SIZE, t_query=6, k_frames=2)
    before, n = mem.query(q), mem.static.n
    mem.static.move_voxels(np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 3)))
    after = mem.query(q)
    assert mem.static.n == n and mem.static.n_render == mem.static.count_renderable()
    np.testing.assert_allclose(after.static.rgb, before.static.rgb, atol=1e-6)
    np.testing.assert_array_equal(after.static.mask, before.static.mask)
    assert [f.frame_id for f in after.frames] == [f.frame_id for f in before.frames]
    with pytest.raises(ValueError, match="move_voxels needs"):
        mem.static.move_voxels(np.eye(3)[None], np.zeros((1, 3)))


def test_frames_buffered_while_the_voxel_size_settles_are_re_posed_with_the_bank():
    K, poses, room = intrinsics(64, 48), pan_path(6, 30.0), Room()
    mem = SceneMemory()  # the voxel size follows the scene scale for the first frames
    for t in range(5):
        mem.write(room.observation(t, _drift(t / 5) @ poses[t], K, SIZE))
    assert mem._warmup
    mem.close_loop(0, 5, np.linalg.inv(_drift(1.0)))
    for f, fid in mem._warmup:
        np.testing.assert_allclose(f.c2w, poses[fid], atol=1e-9)
        np.testing.assert_allclose(f.pts, backproject_depth(f.depth.astype(np.float64), K, poses[fid]), atol=1e-4)
