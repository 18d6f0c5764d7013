"""T6: bounded growth and constant write cost."""

from __future__ import annotations

import numpy as np
import pytest

from mem4d.scene import Observation, SceneMemory, SceneMemoryConfig

from .fixtures import Room, intrinsics, yaw_pose

LOOP = 100  # frames per 360-degree loop


def _loop_pose(i: int) -> np.ndarray:
    a = 360.0 * (i % LOOP) / LOOP
    return yaw_pose(a, (0.3 * np.sin(np.deg2rad(a)), 0.0, 0.3 * np.cos(np.deg2rad(a)) - 0.3))


@pytest.mark.slow
def test_t6_bounded_growth():
    """Ten passes over one loop: the static layer and the keyframes stop growing after the first
    pass, and what a frame adds beyond that is the frame bank's small per-frame record (no
    images), so a write touches as much at frame 1,000 as at frame 100. Write time itself is a
    benchmark figure (bench/bench_scene_memory.py, T7), not asserted here: a timing assertion
    fails on a loaded machine."""
    room, K, size = Room(), intrinsics(32, 24), (24, 32)
    frames = [room.render(_loop_pose(i), K, size) for i in range(LOOP)]
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05))

    counts = {}
    for t in range(1000):
        fr = frames[t % LOOP]
        mem.write(Observation(t=t, rgb=fr.rgb, K=K, c2w=_loop_pose(t), depth=fr.depth))
        if t + 1 in (LOOP, 2 * LOOP):
            st = mem.stats()
            counts[t + 1] = (st.n_voxels, len(mem.keyframes), st.bytes)
    v1, k1, b1 = counts[LOOP]
    v2, k2, b2 = counts[2 * LOOP]
    assert v2 <= 1.02 * v1
    assert k2 - k1 <= 1
    per_frame = (mem.stats().bytes - b2) / (1000 - 2 * LOOP)
    assert per_frame < 1024, f"{per_frame:.0f} bytes a frame after the loop is known"
    st = mem.stats()
    assert st.n_frames == 1000 and st.n_voxels == v2  # ten passes over the loop added nothing
