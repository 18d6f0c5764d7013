"""Unit tests of the pieces: camera helpers, voxel hash, config, the FrameOutput adapter."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mem4d.scene import (
    Observation,
    SceneMemory,
    SceneMemoryConfig,
    frustum_overlap,
    observation_from_frame_output,
    plucker,
    relative_pose,
)
from mem4d.scene.camera_utils import (
    backproject_depth,
    in_frustum,
    invert_c2w,
    project_points,
    transform_points,
    validate_c2w,
)
from mem4d.scene.voxel_hash import HashTable, pack_coords, unpack_keys

from .fixtures import Room, intrinsics, yaw_pose

K = intrinsics()


# ------------------------------------------------------------------------ camera helpers
def test_convention_backproject_project_round_trip():
    depth = np.random.default_rng(0).uniform(1, 5, (96, 128))
    c2w = yaw_pose(30, (0.5, -0.2, 1.0), pitch_deg=10)
    pts = backproject_depth(depth, K, c2w).reshape(-1, 3)
    u, v, z = project_points(pts, c2w, K)
    vv, uu = np.mgrid[0:96, 0:128]
    np.testing.assert_allclose(u, uu.ravel(), atol=1e-6)
    np.testing.assert_allclose(v, vv.ravel(), atol=1e-6)
    np.testing.assert_allclose(z, depth.ravel(), atol=1e-9)


def test_convention_opencv_axes():
    """+x right, +y down, +z forward: a point right of and below the optical axis lands right/below centre."""
    u, v, z = project_points(np.array([[0.5, 0.5, 2.0]]), np.eye(4), K)
    assert u[0] > K[0, 2] and v[0] > K[1, 2] and z[0] == 2.0


def test_transform_and_invert():
    c2w = yaw_pose(70, (1.0, 2.0, 3.0), pitch_deg=-20)
    p = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(transform_points(c2w, p), p @ c2w[:3, :3].T + c2w[:3, 3], atol=1e-12)
    np.testing.assert_allclose(invert_c2w(c2w), np.linalg.inv(c2w), atol=1e-12)


def test_plucker_rays():
    c2w = yaw_pose(20, (1.0, 0.0, 0.5))
    pl = plucker(c2w, K, 96, 128)
    assert pl.shape == (96, 128, 6) and pl.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pl[..., :3], axis=-1), 1.0, atol=1e-5)
    # moment is orthogonal to direction, and equals o x d
    assert np.abs(np.einsum("hwk,hwk->hw", pl[..., :3], pl[..., 3:])).max() < 1e-5
    np.testing.assert_allclose(pl[48, 64, :3], c2w[:3, 2], atol=0.01)  # centre ray ~ optical axis
    rel = plucker(c2w, K, 96, 128, ref_c2w=c2w)
    np.testing.assert_allclose(rel[..., 3:], 0.0, atol=1e-6)  # origin at the reference camera


def test_relative_pose():
    a, b = yaw_pose(10, (1, 0, 0)), yaw_pose(40, (0, 0, 2))
    np.testing.assert_allclose(a @ relative_pose(a, b), b, atol=1e-12)


def test_frustum_overlap_properties():
    assert frustum_overlap(np.eye(4), K, np.eye(4), K, 3.0) == pytest.approx(1.0)
    assert frustum_overlap(np.eye(4), K, yaw_pose(180), K, 3.0) == 0.0
    ovs = frustum_overlap(np.eye(4), K, np.stack([yaw_pose(a) for a in (0, 20, 40, 80)]), K, 3.0)
    assert ovs.shape == (4,) and (np.diff(ovs) < 0).all() and ovs[-1] == 0.0
    # directional: a camera far behind sees all of a near camera's frustum but not vice versa
    behind = yaw_pose(0, (0, 0, -3.0))
    assert frustum_overlap(np.eye(4), K, behind, K, 1.0) > frustum_overlap(behind, K, np.eye(4), K, 1.0)
    with pytest.raises(ValueError):
        frustum_overlap(np.eye(4), K, np.eye(4), K, -1.0)


def test_in_frustum_batch():
    pts = np.array([[0, 0, 2.0], [0, 0, -2.0], [10, 0, 2.0]])
    out = in_frustum(pts, np.stack([np.eye(4), yaw_pose(180)]), K, (96, 128))
    assert out.tolist() == [[True, False, False], [False, True, False]]


def test_validate_c2w_tolerance():
    c = yaw_pose(33)
    c[:3, :3] += 5e-6
    validate_c2w(c)  # within 1e-4
    c[:3, :3] += 1e-3
    with pytest.raises(ValueError):
        validate_c2w(c)


# ------------------------------------------------------------------------------ voxel hash
def test_hash_table_matches_dict_through_growth():
    rng = np.random.default_rng(0)
    table, ref = HashTable(capacity=16), {}
    for step in range(20):
        keys = np.unique(pack_coords(rng.integers(-500, 500, (300, 3))))
        have = table.lookup(keys)
        assert all((ref.get(int(k), -1) == int(h)) for k, h in zip(keys, have))
        new = keys[have < 0]
        vals = np.arange(len(ref), len(ref) + len(new), dtype=np.int32)
        table.insert(new, vals)
        ref.update(zip(new.tolist(), vals.tolist()))
    assert table.count == len(ref) and table.capacity >= 2 * len(ref)
    allk = np.array(list(ref), np.int64)
    np.testing.assert_array_equal(table.lookup(allk), np.array(list(ref.values())))
    table.rebuild(allk[:10], np.arange(10, dtype=np.int32))
    assert table.count == 10 and (table.lookup(allk[10:]) == -1).all()


def test_pack_unpack_negative_coords():
    ijk = np.array([[-1, 0, 1], [-(2 ** 19), 2 ** 19, -5], [123, -456, 789]])
    np.testing.assert_array_equal(unpack_keys(pack_coords(ijk)), ijk)


# ---------------------------------------------------------------------------------- config
def test_config_roundtrip_and_validation():
    cfg = SceneMemoryConfig(voxel_size=0.02, working_window=4, static_mode="tsdf")
    assert SceneMemoryConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"carve_ratio": 1.5}, {"static_mode": "mesh"}, {"voxel_size": -1.0}, {"block_size": 0},
                {"retrieval_mode": "x"}, {"working_window": -1}, {"subject_ttl": 0}, {"carving": "sometimes"}):
        with pytest.raises(ValueError):
            SceneMemoryConfig(**bad)
    with pytest.raises(ValueError):
        SceneMemoryConfig.from_dict({"voxel_sise": 0.1})


# ---------------------------------------------------------------------------------- adapter
def _frame_output(B=2, H=48, W=64, dynamic=True):
    """A FrameOutput-like object (duck-typed; the adapter never imports the model)."""
    Kt = torch.from_numpy(intrinsics(W, H)).float()
    fr = Room().render(yaw_pose(15), intrinsics(W, H), (H, W))
    depth = torch.from_numpy(fr.depth)
    pts = torch.from_numpy(backproject_depth(fr.depth.astype(np.float64), intrinsics(W, H), yaw_pose(15))).float()
    conf = torch.ones(H, W) * 3.0
    conf[:, :10] = 1.0
    prob = torch.zeros(H, W)
    prob[20:30, 20:30] = 0.9
    rep = lambda x: x.unsqueeze(0).repeat(B, *([1] * x.dim()))
    return SimpleNamespace(pts_world=rep(pts), conf_world=rep(conf), pts_cam=None, conf_cam=None, depth=rep(depth),
                           intrinsics=rep(Kt), cam2world=rep(torch.from_numpy(yaw_pose(15)).float()),
                           dynamic_prob=rep(prob) if dynamic else None), fr


def test_adapter_maps_frame_output():
    out, fr = _frame_output()
    rgb = torch.from_numpy(fr.rgb).permute(2, 0, 1)  # (3, H, W) tensor is accepted
    obs = observation_from_frame_output(out, t=5, rgb=rgb, batch_index=1, conf_threshold=2.0)
    assert isinstance(obs, Observation) and obs.t == 5
    assert obs.rgb.shape == (48, 64, 3) and obs.K.shape == (3, 3) and obs.c2w.shape == (4, 4)
    assert obs.dynamic_mask.sum() == 100
    assert (obs.depth[:, :10] == 0).all() and obs.points_world is None  # lifted by the memory along K's rays
    world = observation_from_frame_output(out, t=5, rgb=rgb, batch_index=1, conf_threshold=2.0, points="world")
    assert np.isnan(world.points_world[:, :10]).all() and np.isfinite(world.points_world[:, 10:]).all()
    with pytest.raises(ValueError, match="points must be"):
        observation_from_frame_output(out, t=5, rgb=rgb, points="pointmap")
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.03))
    rep = mem.write(obs)
    assert rep.voxels_added > 0
    r = mem.render(yaw_pose(15), intrinsics(64, 48), (48, 64))
    assert r.mask[0][:, :9].mean() < 0.1  # low-confidence columns were not fused
    assert not r.mask[0][22:28, 22:28].any()  # dynamic pixels were not fused
    assert len(rep.detections) == 1


def test_adapter_without_motion_head_leaves_mask_unset():
    out, fr = _frame_output(dynamic=False)
    obs = observation_from_frame_output(out, t=0, rgb=fr.rgb)
    assert obs.dynamic_mask is None and obs.conf is not None
    with pytest.raises(ValueError):
        observation_from_frame_output(out, t=0, rgb=fr.rgb, batch_index=5)
    with pytest.raises(ValueError):
        observation_from_frame_output(SimpleNamespace(depth=None), t=0, rgb=fr.rgb)


@pytest.mark.parametrize("mode", ["points", "tsdf"])
def test_renderable_count_is_maintained_incrementally(mode):
    from .fixtures import Sphere

    room = Room(spheres=[Sphere((-0.5, 0.2, 2.0), 0.3, (0.9, 0.1, 0.8), velocity=(0.1, 0, 0))])
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.04, static_mode=mode, max_voxels=20000))
    K64 = intrinsics(64, 48)
    carved = evicted = 0
    for t in range(12):
        rep = mem.write(room.observation(t, yaw_pose(8 * t), K64, (48, 64), mask=False))
        carved += rep.voxels_carved
        evicted += rep.voxels_evicted
        assert mem.stats().n_renderable_voxels == mem.static.count_renderable()
    assert carved > 0 and evicted > 0  # both paths that change renderability were exercised


def test_adapter_accepts_the_models_frame_output():
    outputs = pytest.importorskip("mem4d.model.outputs")
    duck, fr = _frame_output(B=1)
    out = outputs.FrameOutput(
        pts_world=duck.pts_world, conf_world=duck.conf_world, pts_cam=duck.pts_world, conf_cam=duck.conf_world,
        depth=duck.depth, intrinsics=duck.intrinsics, cam2world=duck.cam2world, fov_x=torch.ones(1),
        quat_wxyz=torch.tensor([[1.0, 0, 0, 0]]), translation=torch.zeros(1, 3), dynamic_prob=duck.dynamic_prob)
    obs = observation_from_frame_output(out, t=0, rgb=fr.rgb)
    assert SceneMemory(SceneMemoryConfig(voxel_size=0.03)).write(obs).voxels_added > 0


def test_docstring_examples_run():
    import doctest
    import importlib

    for name in ("mem4d.scene", "mem4d.scene.memory", "mem4d.scene.camera_utils", "mem4d.scene.config",
                 "mem4d.scene.voxel_hash"):
        res = doctest.testmod(importlib.import_module(name))
        assert res.failed == 0 and res.attempted > 0, name
