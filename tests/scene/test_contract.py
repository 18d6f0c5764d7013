"""T10: the API contract: shapes, dtypes, the OpenCV convention, validation without side effects."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mem4d.scene import (
    Conditioning,
    FrameRef,
    Observation,
    Query,
    SceneMemory,
    SceneMemoryConfig,
    StaticRender,
    SubjectView,
    WriteReport,
)

from .fixtures import Room, Sphere, intrinsics, masked_psnr, yaw_pose

SIZE = (48, 64)
K = intrinsics(64, 48)
ROOM = Room(spheres=[Sphere((0.3, 0.2, 2.0), 0.25, (0.9, 0.1, 0.1), (0.9, 0.9, 0.2), velocity=(0.01, 0, 0))])


@pytest.fixture(scope="module")
def small_mem():
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.03, working_window=3))
    for t in range(8):
        mem.write(ROOM.observation(t, yaw_pose(5 * t), K, SIZE, latent=np.full(4, t, np.float32)))
    return mem


def test_t10_shapes_and_dtypes(small_mem):
    traj = np.stack([yaw_pose(5 * i) for i in range(3)])
    cond = small_mem.query(Query(trajectory=traj, K=K, size=SIZE, t_query=8, k_frames=2))
    assert isinstance(cond, Conditioning)
    st = cond.static
    assert isinstance(st, StaticRender)
    assert st.rgb.shape == (3, *SIZE, 3) and st.rgb.dtype == np.float32
    assert st.depth.shape == (3, *SIZE) and st.depth.dtype == np.float32
    assert st.mask.shape == (3, *SIZE) and st.mask.dtype == bool
    assert st.source_t.shape == (3, *SIZE) and st.source_t.dtype == np.int32
    assert (st.source_t[~st.mask] == -1).all() and (st.source_t[st.mask] >= 0).all()
    assert (st.depth[~st.mask] == 0).all() and (st.depth[st.mask] > 0).all()
    assert 0.0 <= st.coverage <= 1.0 and isinstance(st.coverage, float)
    for ref in cond.frames + cond.episodic + cond.working:
        assert isinstance(ref, FrameRef)
        assert ref.c2w.shape == (4, 4) and ref.K.shape == (3, 3)
        h, w = ref.rgb_or_thumb.shape[:2]
        assert ref.rgb_or_thumb.shape == (h, w, 3) and ref.depth.shape == (h, w)
        assert ref.rgb_or_thumb.dtype == np.float32
        assert ref.latent_handle == ref.frame_id and ref.latent[0] == ref.t
    assert [w.t for w in cond.working] == [5, 6, 7]
    assert all(w.rgb_or_thumb.shape == (*SIZE, 3) for w in cond.working)  # full resolution
    thumbs = [f for f in cond.frames if not f.is_keyframe]
    assert all(f.rgb_or_thumb.shape == (SIZE[0] // 4, SIZE[1] // 4, 3) for f in thumbs)
    (sv,) = cond.subjects
    assert isinstance(sv, SubjectView) and sv.status == "visible"
    assert sv.embedding.shape == (64,) and sv.pred_center_world.shape == (3,) and sv.pred_cov.shape == (3, 3)
    assert sv.track["centroid"].shape == (8, 3) and sv.pred_uvz.shape == (3,)
    assert {"render", "retrieve", "total"} <= set(cond.meta["timings_ms"])
    stats = small_mem.stats()
    assert stats.n_frames == 8 and stats.n_voxels > 0 and stats.bytes > 0 and stats.last_t == 7


def test_t10_opencv_convention_render_matches_frame(small_mem):
    """render(c2w_i) reproduces rgb_i; the OpenGL reading of the same matrix (y and z flipped) does not."""
    i = 4
    fr = Room().render(yaw_pose(5 * i), K, SIZE)
    r = small_mem.render(yaw_pose(5 * i), K, SIZE)
    static = r.mask[0] & ~ROOM.render(yaw_pose(5 * i), K, SIZE, t=i).dynamic_mask
    assert masked_psnr(r.rgb[0], fr.rgb, static) >= 28.0
    assert r.coverage >= 0.95
    gl = yaw_pose(5 * i) @ np.diag([1.0, -1.0, -1.0, 1.0])
    r_gl = small_mem.render(gl, K, SIZE)
    assert r_gl.coverage < 0.05 or masked_psnr(r_gl.rgb[0], fr.rgb, r_gl.mask[0]) < 15.0


def _snapshot(mem: SceneMemory):
    st = mem.stats()
    return (st.n_frames, st.n_voxels, st.n_blocks, st.n_keyframes, st.n_subjects, st.last_t,
            mem.static.pos[: mem.static.n].copy(), mem.static.hits[: mem.static.n].copy(),
            mem.static.misses[: mem.static.n].copy(), list(mem._working), list(mem.keyframes.ids),
            copy.deepcopy({k: (r.status, r.x.copy(), r.last_seen_t) for k, r in mem.tracker.records.items()}),
            list(mem._scale_hist))


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        elif isinstance(x, dict):
            assert x.keys() == y.keys()
            for k in x:
                assert x[k][0] == y[k][0] and x[k][2] == y[k][2]
                np.testing.assert_array_equal(x[k][1], y[k][1])
        else:
            assert x == y


def _good(t=8, **kw):
    fr = ROOM.render(yaw_pose(40), K, SIZE, t=t)
    base = {"t": t, "rgb": fr.rgb, "K": K.copy(), "c2w": yaw_pose(40), "depth": fr.depth, "dynamic_mask": fr.dynamic_mask}
    base.update(kw)
    return Observation(**base)


def _bad_rotation():
    c = yaw_pose(40)
    c[:3, :3] *= 1.01
    return c


def _reflection():
    c = yaw_pose(40)
    c[:3, 0] *= -1
    return c


BAD = {
    "non-orthonormal R": {"c2w": _bad_rotation()},
    "reflection": {"c2w": _reflection()},
    "NaN in c2w": {"c2w": np.where(np.eye(4) == 1, np.nan, yaw_pose(40))},
    "c2w last row": {"c2w": yaw_pose(40) + np.array([[0, 0, 0, 0]] * 3 + [[0, 0, 0.5, 0]])},
    "c2w shape": {"c2w": yaw_pose(40)[:3]},
    "K fx <= 0": {"K": np.diag([-50.0, 50.0, 1.0])},
    "K fy = 0": {"K": np.diag([50.0, 0.0, 1.0])},
    "NaN in K": {"K": np.full((3, 3), np.nan)},
    "K shape": {"K": np.eye(4)},
    "rgb shape": {"rgb": np.zeros((48, 64))},
    "rgb range": {"rgb": np.full((48, 64, 3), 2.0)},
    "depth shape": {"depth": np.ones((40, 64))},
    "negative depth": {"depth": -np.ones(SIZE)},
    "no geometry": {"depth": None},
    "points shape": {"depth": None, "points_world": np.ones((48, 64, 2))},
    "mask shape": {"dynamic_mask": np.zeros((48, 63), bool)},
    "float instance ids": {"instance_ids": np.zeros(SIZE, np.float32)},
    "features ndim": {"features": np.zeros((12, 16))},
    "conf shape": {"conf": np.ones((48,))},
    "t goes back": {"t": 3},
    "t not int": {"t": 8.5},
    "bad source": {"source": "imagined"},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_t10_invalid_input_raises_and_leaves_memory_unchanged(case, small_mem):
    mem = copy.deepcopy(small_mem)
    before = _snapshot(mem)
    with pytest.raises(ValueError):
        mem.write(_good(**BAD[case]))
    _same(before, _snapshot(mem))
    mem.write(_good())  # and it still works
    assert mem.stats().n_frames == 9


@pytest.mark.parametrize("kw", [{"size": (0, 64)}, {"k_frames": -1}, {"want": ("static", "nope")},
                                {"min_overlap": 1.5}, {"t_query": 1.5}, {"retrieval_mode": "random"},
                                {"K": np.diag([0.0, 1.0, 1.0])}, {"c2w": np.zeros((4, 4))},
                                {"trajectory": np.stack([yaw_pose(0)] * 2)}, {"k_frames": None},
                                {"recency_penalty": float("nan")}, {"exclude_recent": -2}])
def test_query_validation(small_mem, kw):
    base = {"c2w": yaw_pose(0), "K": K, "size": SIZE, "t_query": 8}
    base.update(kw)
    with pytest.raises(ValueError):
        small_mem.query(Query(**base))


def test_torch_and_uint8_inputs_are_accepted():
    fr = Room().render(yaw_pose(0), K, SIZE)
    a, b = SceneMemory(SceneMemoryConfig(voxel_size=0.03)), SceneMemory(SceneMemoryConfig(voxel_size=0.03))
    a.write(Observation(t=0, rgb=fr.rgb, K=K, c2w=yaw_pose(0), depth=fr.depth))
    b.write(Observation(t=0, rgb=torch.from_numpy(fr.rgb), K=torch.from_numpy(K).float(),
                        c2w=torch.from_numpy(yaw_pose(0)).float(), depth=torch.from_numpy(fr.depth)))
    assert a.stats().n_voxels == b.stats().n_voxels
    c = SceneMemory(SceneMemoryConfig(voxel_size=0.03))
    rep = c.write(Observation(t=0, rgb=(fr.rgb * 255).astype(np.uint8), K=K, c2w=yaw_pose(0), depth=fr.depth))
    assert isinstance(rep, WriteReport) and rep.voxels_added == a.stats().n_voxels
    q = a.query(Query(c2w=torch.from_numpy(yaw_pose(0)), K=torch.from_numpy(K), size=SIZE, t_query=1))
    assert q.static.coverage > 0.95


def test_points_world_equals_depth_path():
    from mem4d.scene.camera_utils import backproject_depth

    fr = Room().render(yaw_pose(10), K, SIZE)
    pts = backproject_depth(fr.depth.astype(np.float64), K, yaw_pose(10))
    pts[0, 0] = np.nan  # invalid pixel
    a, b = SceneMemory(SceneMemoryConfig(voxel_size=0.03)), SceneMemory(SceneMemoryConfig(voxel_size=0.03))
    a.write(Observation(t=0, rgb=fr.rgb, K=K, c2w=yaw_pose(10), depth=np.where(np.isnan(pts[..., 0]), 0, fr.depth)))
    b.write(Observation(t=0, rgb=fr.rgb, K=K, c2w=yaw_pose(10), points_world=pts))
    assert a.stats().n_voxels == b.stats().n_voxels
    np.testing.assert_allclose(b.static.pos[: b.static.n], a.static.pos[: a.static.n], atol=1e-5)


def test_reset_and_confidence_threshold():
    fr = Room().render(yaw_pose(0), K, SIZE)
    conf = np.where(np.arange(SIZE[1])[None, :] < 32, 0.5, 5.0) * np.ones(SIZE)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.03, conf_threshold=1.0))
    mem.write(Observation(t=0, rgb=fr.rgb, K=K, c2w=yaw_pose(0), depth=fr.depth, conf=conf))
    r = mem.render(yaw_pose(0), K, SIZE)
    assert r.mask[0][:, :30].mean() < 0.05 and r.mask[0][:, 34:].mean() > 0.95
    mem.reset()
    assert mem.stats().n_frames == 0 and mem.stats().n_voxels == 0 and mem.scene_scale is None
    assert mem.query(Query(c2w=yaw_pose(0), K=K, size=SIZE, t_query=0)).static.coverage == 0.0


def test_render_per_source(small_mem):
    cond = small_mem.query(Query(c2w=yaw_pose(10), K=K, size=SIZE, t_query=8, k_frames=2, render_per_source=True))
    assert len(cond.static.per_source) == len(cond.frames) >= 1
    for src, ref in zip(cond.static.per_source, cond.frames):
        assert src["t"] == ref.t and src["rgb"].shape == (1, *SIZE, 3) and src["mask"].any()
