"""T9: closed loop with a dummy generator that trusts the memory."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt, zoom

from mem4d.scene import Observation, Query, SceneMemory, SceneMemoryConfig

from .fixtures import Room, intrinsics, psnr, yaw_pose

SIZE = (48, 64)
K = intrinsics(64, 48)


def _path() -> list[float]:
    """200 yaws: 0 -> 80, back to 0 (revisit 1), 0 -> -80, back (revisit 2), 0 -> 80 (revisit 3)."""
    up = list(np.linspace(0, 80, 40))
    down = list(np.linspace(-80, 0, 40))
    return up + up[::-1] + down[::-1] + down + up


def _new_texture(t: int) -> np.ndarray:
    """Content the generator invents: a smooth random colour field, different every frame."""
    coarse = np.random.default_rng(1000 + t).random((6, 8, 3))
    return np.clip(zoom(coarse, (SIZE[0] / 6, SIZE[1] / 8, 1), order=1), 0, 1)[: SIZE[0], : SIZE[1]]


def _generate(static_rgb: np.ndarray, mask: np.ndarray, t: int) -> np.ndarray:
    """Copies the memory's render where it has one; small holes from the nearest rendered pixel,
    large unknown regions get new texture."""
    out = _new_texture(t).astype(np.float32)
    if mask.any():
        dist, (iy, ix) = distance_transform_edt(~mask, return_indices=True)
        near = dist <= 2.0
        out[near] = static_rgb[iy[near], ix[near]]
    return out


def _run(use_memory: bool) -> tuple[list[float], int]:
    room = Room()  # the generator's geometry (its depth estimate) is exact; only colours are generated
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.04))
    yaws = _path()
    first_visit: dict[float, np.ndarray] = {}
    scores = []
    for t, yaw in enumerate(yaws):
        pose = yaw_pose(yaw)
        if use_memory:
            st = mem.query(Query(c2w=pose, K=K, size=SIZE, t_query=t, want=("static",))).static
            rgb = _generate(st.rgb[0], st.mask[0], t)
        else:
            rgb = _generate(np.zeros(SIZE + (3,), np.float32), np.zeros(SIZE, bool), t)
        key = round(yaw, 6)
        if key in first_visit:
            scores.append(psnr(rgb, first_visit[key]))
        else:
            first_visit[key] = rgb
        if use_memory:
            depth = room.render(pose, K, SIZE).depth
            mem.write(Observation(t=t, rgb=rgb, K=K, c2w=pose, depth=depth, source="generated"))
    return scores, len(first_visit)


@pytest.mark.slow
def test_t9_closed_loop_revisits_are_consistent():
    scores, _ = _run(use_memory=True)
    assert len(scores) >= 3 * 39  # three revisits of ~40 frames each
    print(f"T9: revisit PSNR vs first visit: min {min(scores):.2f} dB, mean {np.mean(scores):.2f} dB "
          f"over {len(scores)} revisit frames")
    assert min(scores) >= 25.0


def test_t9_control_without_memory_is_inconsistent():
    scores, _ = _run(use_memory=False)
    assert max(scores) < 20.0
