"""T3 (loop retrieval) and T3o (occlusion-aware retrieval), plus retrieval policies."""

from __future__ import annotations

import numpy as np
import pytest

from mem4d.scene import (
    Observation,
    Query,
    SceneMemory,
    SceneMemoryConfig,
    frustum_overlap,
)

from .conftest import LOOP_FRAMES
from .fixtures import Box, Room, intrinsics, yaw_pose

W_WORK = SceneMemoryConfig().working_window


def _return_queries():
    """Return-path frames whose mirror lies outside the working window (it cannot be retrieved otherwise)."""
    return [r for r in range(LOOP_FRAMES, 2 * LOOP_FRAMES) if r - (2 * LOOP_FRAMES - 1 - r) > W_WORK]


def _check_t3(run, frames_at, K, label):
    queries = _return_queries()
    hits = 0
    for r in queries:
        refs = frames_at(r)
        mirror = 2 * LOOP_FRAMES - 1 - r
        assert refs, f"no frame retrieved at {r}"
        hits += abs(refs[0].t - mirror) <= 1
        # union coverage of the selection, on the query's own frustum samples
        union = max(ref.overlap for ref in refs)
        assert union >= 0.9
        for a in refs:
            for b in refs:
                if a.frame_id < b.frame_id:
                    mutual = max(frustum_overlap(a.c2w, K, b.c2w, K, 3.0), frustum_overlap(b.c2w, K, a.c2w, K, 3.0))
                    assert mutual <= 0.9
    rate = hits / len(queries)
    print(f"T3 {label}: top-1 within +-1 of the mirror for {hits}/{len(queries)} = {100 * rate:.1f}% of queries")
    assert rate >= 0.95


def test_t3_loop_retrieval_visibility(loop_run):
    _check_t3(loop_run, lambda r: loop_run.queries[r].frames, loop_run.K, "visibility")
    assert all(loop_run.queries[r].meta["retrieval_mode"] == "visibility" for r in _return_queries())


def test_t3_loop_retrieval_frustum(loop_run):
    _check_t3(loop_run, lambda r: loop_run.frustum[r], loop_run.K, "frustum")


def test_t3_union_coverage_of_k4(loop_run):
    """With the coverage union measured on the rendered query (static.mask), k=4 covers >= 0.9."""
    for r in _return_queries():
        cond = loop_run.queries[r]
        assert len(cond.frames) <= 4
        assert max(f.overlap for f in cond.frames) * cond.static.coverage >= 0.9


def test_retrieval_excludes_working_window_and_orders_by_selection(loop_run):
    cond = loop_run.queries[70]
    recent = set(range(70 - W_WORK, 70))
    assert not recent & {f.t for f in cond.frames}
    assert [w.t for w in cond.working] == list(range(70 - W_WORK, 70))
    gains = [f.gain for f in cond.frames]
    assert gains == sorted(gains, reverse=True)


# ------------------------------------------------------------------------------------- T3o
@pytest.fixture(scope="module")
def partition_scene():
    """A wall across a long room. Frame A stands 1.5 units behind the query camera, behind the
    wall, looking the same way: its frustum contains the query's (FOV overlap 1) but it sees only
    the back of the wall. Frames B stand on the query's side turned +-20 degrees: a smaller FOV
    overlap, really visible."""
    room = Room(half=(4.0, 1.5, 6.0), boxes=[Box((-4.0, -1.5, -4.1), (4.0, 1.5, -4.0))])
    K, size = intrinsics(), (96, 128)
    query = yaw_pose(0, (0.0, 0.0, -3.5))
    frames = {"A": yaw_pose(0, (0.0, 0.0, -5.0)), "B1": yaw_pose(20, (-0.5, 0.0, -3.7)),
              "B2": yaw_pose(-20, (0.5, 0.0, -3.7))}
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.02, working_window=0))
    ids = {}
    for t, (name, pose) in enumerate(frames.items()):
        ids[name] = t
        mem.write(room.observation(t, pose, K, size))
    return mem, K, size, query, frames, ids


def test_t3o_occlusion_aware_retrieval(partition_scene):
    mem, K, size, query, frames, ids = partition_scene
    s = mem.scene_scale
    fov_a = frustum_overlap(query, K, frames["A"], K, s)
    fov_b = max(frustum_overlap(query, K, frames[b], K, s) for b in ("B1", "B2"))
    assert fov_a > fov_b  # FOV overlap alone prefers the occluded frame
    q = Query(c2w=query, K=K, size=size, t_query=3, k_frames=3, min_overlap=0.0, recency_penalty=0.0)
    cond = mem.query(q)
    assert cond.meta["retrieval_mode"] == "visibility"
    vis = {f.t: f for f in cond.frames}
    assert ids["A"] not in vis
    assert ids["B1"] in vis or ids["B2"] in vis
    # control: frustum mode ranks the occluded frame first
    q.retrieval_mode = "frustum"
    fr = mem.retrieve(q)
    assert fr[0].t == ids["A"]


def test_frustum_fallback_on_empty_map():
    """Everything dynamic: the static layer stays empty and retrieval falls back to frustum sampling."""
    room, K, size = Room(), intrinsics(64, 48), (48, 64)
    mem = SceneMemory(SceneMemoryConfig(working_window=0))
    for t, yaw in enumerate((0, 90, 180)):
        fr = room.render(yaw_pose(yaw), K, size)
        mem.write(Observation(t=t, rgb=fr.rgb, K=K, c2w=yaw_pose(yaw), depth=fr.depth,
                              dynamic_mask=np.ones(size, bool)))
    assert mem.stats().n_voxels == 0
    cond = mem.query(Query(c2w=yaw_pose(85), K=K, size=size, t_query=3, k_frames=1))
    assert cond.meta["retrieval_mode"] == "frustum"
    assert cond.static.coverage == 0.0
    assert [f.t for f in cond.frames] == [1]


def test_recency_penalty_prefers_newer_of_equal_views():
    room, K, size = Room(), intrinsics(64, 48), (48, 64)
    mem = SceneMemory(SceneMemoryConfig(working_window=0, voxel_size=0.04))
    for t, yaw in enumerate((0, 180, 0)):
        mem.write(room.observation(t, yaw_pose(yaw), K, size))
    refs = mem.retrieve(Query(c2w=yaw_pose(0), K=K, size=size, t_query=3, k_frames=2))
    assert refs[0].t == 2  # same view as frame 0, newer
    assert all(r.t != 0 for r in refs)  # frame 0 is redundant with frame 2 (mutual overlap 1)
    refs = mem.retrieve(Query(c2w=yaw_pose(0), K=K, size=size, t_query=3, k_frames=2, recency_penalty=0.0,
                              exclude_recent=1))
    assert refs[0].t == 0


def test_min_overlap_drops_weak_frames():
    room, K, size = Room(), intrinsics(64, 48), (48, 64)
    mem = SceneMemory(SceneMemoryConfig(working_window=0, voxel_size=0.04))
    mem.write(room.observation(0, yaw_pose(0), K, size))
    mem.write(room.observation(1, yaw_pose(50), K, size))
    q = Query(c2w=yaw_pose(40), K=K, size=size, t_query=2, k_frames=4, min_overlap=0.5)
    assert [f.t for f in mem.retrieve(q)] == [1]
    q.min_overlap = 0.2  # frame 0 sees the left part only, but that is new coverage
    refs = mem.retrieve(q)
    assert [f.t for f in refs] == [1, 0]
    assert 0.2 <= refs[1].overlap < 0.5 and refs[1].gain >= 0.02
