"""Shared, expensive scene-memory runs (built once per test session)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from mem4d.scene import (
    Conditioning,
    FrameRef,
    Observation,
    Query,
    SceneMemory,
    SceneMemoryConfig,
)

from .fixtures import RenderedFrame, Room, intrinsics, pan_return_path

LOOP_SIZE = (96, 128)
LOOP_FRAMES = 40  # forward pan 0 -> 120 deg, then the same poses in reverse


@dataclass
class LoopRun:
    """The spec's loop (SCENE_MEMORY.md 3.7) written with GT depth and poses, voxel 2 cm.

    Before each return-path frame r (r >= 40) is written, the memory is queried at its pose
    (``queries[r]``, default visibility retrieval, k=4) and retrieval is repeated in frustum
    mode (``frustum[r]``). The mirror of r (the forward frame with the same pose) is 79 - r.
    """

    room: Room
    K: np.ndarray
    size: tuple[int, int]
    poses: np.ndarray
    frames: list[RenderedFrame]
    mem: SceneMemory
    queries: dict[int, Conditioning]
    frustum: dict[int, list[FrameRef]]


def run_loop(depth_noise: float = 0.0, want: tuple[str, ...] | None = None) -> LoopRun:
    room, K, size = Room(), intrinsics(), LOOP_SIZE
    poses = pan_return_path(LOOP_FRAMES)
    rng = np.random.default_rng(7)
    frames = [room.render(p, K, size) for p in poses]
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.02))
    queries, frustum = {}, {}
    for i, pose in enumerate(poses):
        if i >= LOOP_FRAMES:
            q = Query(c2w=pose, K=K, size=size, t_query=i, k_frames=4)
            if want is not None:
                q.want = want
            queries[i] = mem.query(q)
            if want is None:
                q.retrieval_mode = "frustum"
                frustum[i] = mem.retrieve(q)
        depth = frames[i].depth
        if depth_noise:
            depth = depth * (1 + depth_noise * rng.standard_normal(depth.shape)).astype(np.float32)
        mem.write(Observation(t=i, rgb=frames[i].rgb, K=K, c2w=pose, depth=depth))
    return LoopRun(room, K, size, poses, frames, mem, queries, frustum)


@pytest.fixture(scope="session")
def loop_run() -> LoopRun:
    return run_loop()
