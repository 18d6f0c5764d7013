"""T6: bounded growth and constant write cost."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mem4d.scene import Observation, SceneMemory, SceneMemoryConfig

from .fixtures import Room, intrinsics, yaw_pose

LOOP = 100  # frames per 360-degree loop


def _loop_pose(i: int) -> np.ndarray:
    a = 360.0 * (i % LOOP) / LOOP
    return yaw_pose(a, (0.3 * np.sin(np.deg2rad(a)), 0.0, 0.3 * np.cos(np.deg2rad(a)) - 0.3))


@pytest.mark.slow
def test_t6_bounded_growth_and_flat_write_time():
    room, K, size = Room(), intrinsics(32, 24), (24, 32)
    frames = [room.render(_loop_pose(i), K, size) for i in range(LOOP)]
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.05))

    cpu = []
    counts = {}
    for t in range(1000):
        fr = frames[t % LOOP]
        obs = Observation(t=t, rgb=fr.rgb, K=K, c2w=_loop_pose(t), depth=fr.depth)
        c0 = time.process_time()
        mem.write(obs)
        cpu.append(time.process_time() - c0)
        if t + 1 in (LOOP, 2 * LOOP):
            counts[t + 1] = (mem.stats().n_voxels, len(mem.keyframes))
    v1, k1 = counts[LOOP]
    v2, k2 = counts[2 * LOOP]
    first, last = float(np.mean(cpu[:100])), float(np.mean(cpu[-100:]))
    print(f"T6: voxels {v1} -> {v2} (+{100 * (v2 - v1) / v1:.2f}%), keyframes {k1} -> {k2}; "
          f"write CPU ms first 100 {1e3 * first:.2f}, last 100 {1e3 * last:.2f} (ratio {last / first:.2f})")
    assert v2 <= 1.02 * v1
    assert k2 - k1 <= 1
    assert last <= 1.2 * first
    st = mem.stats()
    assert st.n_frames == 1000 and st.n_voxels == v2  # ten passes over the loop added nothing
