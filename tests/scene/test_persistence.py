"""T8: save -> load -> identical query outputs (JSON + NPZ, no pickle)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from mem4d.scene import Query, SceneMemory, SceneMemoryConfig

from .fixtures import Room, Sphere, intrinsics, yaw_pose


def _assert_same_conditioning(a, b):
    for name in ("rgb", "depth", "mask", "source_t"):
        np.testing.assert_allclose(getattr(a.static, name), getattr(b.static, name), atol=1e-6, rtol=0)
    assert a.static.coverage == b.static.coverage
    for fa, fb in ((a.frames, b.frames), (a.episodic, b.episodic), (a.working, b.working)):
        assert [f.frame_id for f in fa] == [f.frame_id for f in fb]
        for x, y in zip(fa, fb):
            assert x.t == y.t and x.is_keyframe == y.is_keyframe and x.source == y.source
            assert x.score == pytest.approx(y.score, abs=1e-6) and x.overlap == pytest.approx(y.overlap, abs=1e-6)
            np.testing.assert_allclose(x.rgb_or_thumb, y.rgb_or_thumb, atol=1e-6)
            np.testing.assert_allclose(x.depth, y.depth, atol=1e-6)
            np.testing.assert_allclose(x.c2w, y.c2w, atol=1e-12)
            if x.latent is None:
                assert y.latent is None
            else:
                np.testing.assert_array_equal(np.asarray(x.latent), np.asarray(y.latent))
    assert [s.id for s in a.subjects] == [s.id for s in b.subjects]
    for x, y in zip(a.subjects, b.subjects):
        assert x.status == y.status and x.last_seen_t == y.last_seen_t
        np.testing.assert_allclose(x.pred_center_world, y.pred_center_world, atol=1e-6)
        np.testing.assert_allclose(x.pred_cov, y.pred_cov, atol=1e-6)
        np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-6)
        np.testing.assert_allclose(x.track["centroid"], y.track["centroid"], atol=1e-6)
        assert len(x.exemplars) == len(y.exemplars)
        for ea, eb in zip(x.exemplars, y.exemplars):
            np.testing.assert_array_equal(ea.crop, eb.crop)
            np.testing.assert_array_equal(ea.mask, eb.mask)


def test_t8_save_load_identical_queries_loop(loop_run, tmp_path):
    loop_run.mem.save(tmp_path / "mem")
    loaded = SceneMemory.load(tmp_path / "mem")
    assert loaded.stats().n_voxels == loop_run.mem.stats().n_voxels
    for i in (5, 33, 61):
        q = Query(c2w=loop_run.poses[i], K=loop_run.K, size=loop_run.size, t_query=80, k_frames=4)
        _assert_same_conditioning(loop_run.mem.query(q), loaded.query(q))


def test_t8_subjects_latents_and_continued_writes(tmp_path):
    K, size = intrinsics(64, 48), (48, 64)
    room = Room(spheres=[Sphere((0.0, 0.2, 2.0), 0.25, (0.9, 0.1, 0.1), (0.9, 0.9, 0.2), velocity=(0.01, 0, 0))])
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.03, working_window=3))
    latents = {0: np.arange(6, dtype=np.float32).reshape(2, 3), 1: torch.ones(2, 2), 2: {"prompt": "a room", "seed": 3}}
    for t in range(12):
        obs = room.observation(t, yaw_pose(4 * t), K, size, latent=latents.get(t % 4), source="generated" if t % 2 else "observed")
        mem.write(obs)
    mem.save(tmp_path / "m")
    loaded = SceneMemory.load(tmp_path / "m")
    q = Query(c2w=yaw_pose(20), K=K, size=size, t_query=12, k_frames=3, render_per_source=True)
    a, b = mem.query(q), loaded.query(q)
    _assert_same_conditioning(a, b)
    for pa, pb in zip(a.static.per_source, b.static.per_source):
        np.testing.assert_array_equal(pa["rgb"], pb["rgb"])
    assert b.working[-1].source == "generated"
    assert loaded.bank.latents[2] == {"prompt": "a room", "seed": 3}
    np.testing.assert_array_equal(loaded.bank.latents[1], np.ones((2, 2), np.float32))
    # both keep working identically after the round trip
    for m in (mem, loaded):
        for t in range(12, 16):
            m.write(room.observation(t, yaw_pose(4 * t), K, size))
    _assert_same_conditioning(mem.query(q), loaded.query(q))
    assert mem.stats().n_voxels == loaded.stats().n_voxels


def test_t8_files_are_json_and_npz_without_pickle(loop_run, tmp_path):
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05))
    K, size = intrinsics(32, 24), (24, 32)
    mem.write(Room().observation(0, yaw_pose(0), K, size, latent=object()))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mem.save(tmp_path)
    assert any("not saved" in str(x.message) for x in w)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert all(n.endswith((".json", ".npz")) for n in names)
    json.loads((tmp_path / "config.json").read_text())
    for p in tmp_path.glob("*.npz"):
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                assert z[k].dtype != object
    assert SceneMemory.load(tmp_path).bank.latents == {}


def test_load_rejects_other_directories(tmp_path):
    with pytest.raises(ValueError):
        SceneMemory.load(tmp_path)


def test_t8_tsdf_mode_round_trip(tmp_path):
    K, size = intrinsics(48, 36), (36, 48)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05, static_mode="tsdf"))
    for t in range(6):
        mem.write(Room().observation(t, yaw_pose(6 * t), K, size))
    mem.save(tmp_path)
    loaded = SceneMemory.load(tmp_path)
    q = Query(c2w=yaw_pose(15), K=K, size=size, t_query=6, k_frames=2)
    _assert_same_conditioning(mem.query(q), loaded.query(q))
    assert loaded.stats().n_renderable_voxels == mem.stats().n_renderable_voxels
