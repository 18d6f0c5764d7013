"""T1 / T1n (static re-render on revisit) and T2 (dynamic exclusion), SCENE_MEMORY.md 3.7."""

from __future__ import annotations

import numpy as np
import pytest

from mem4d.scene import Observation, SceneMemory, SceneMemoryConfig

from .conftest import LOOP_FRAMES, LOOP_SIZE
from .fixtures import Room, Sphere, intrinsics, masked_psnr, pan_return_path, yaw_pose

RETURN = range(LOOP_FRAMES, 2 * LOOP_FRAMES)


def _revisit_metrics(run, r):
    """Masked PSNR, coverage and depth AbsRel of the render made just before writing frame r."""
    st = run.queries[r].static
    gt = run.frames[2 * LOOP_FRAMES - 1 - r]  # the mirror frame has the same pose
    m = st.mask[0]
    absrel = float(np.mean(np.abs(st.depth[0][m] - gt.depth[m]) / gt.depth[m]))
    return masked_psnr(st.rgb[0], gt.rgb, m), float(m.mean()), absrel


def test_t1_revisit_render(loop_run):
    psnrs, covs, absrels = zip(*(_revisit_metrics(loop_run, r) for r in RETURN))
    print(f"T1 revisit: PSNR min {min(psnrs):.2f} mean {np.mean(psnrs):.2f} dB, coverage min {min(covs):.4f}, "
          f"AbsRel max {max(absrels):.4f}")
    assert min(psnrs) >= 26.0
    assert min(covs) >= 0.98
    assert max(absrels) <= 0.01


def test_t1_stored_frame_rerender(loop_run):
    worst = np.inf
    for i in range(0, LOOP_FRAMES, 3):
        r = loop_run.mem.render(loop_run.poses[i], loop_run.K, loop_run.size)
        worst = min(worst, masked_psnr(r.rgb[0], loop_run.frames[i].rgb, r.mask[0]))
        assert r.coverage >= 0.98
    print(f"T1 own-pose re-render: min PSNR {worst:.2f} dB")
    assert worst >= 28.0


def test_t1_control_wrong_pose_fails(loop_run):
    """The PSNR bar is discriminative: a 1.5 degree pose error falls below it."""
    i = 20
    off = loop_run.poses[i] @ yaw_pose(1.5)
    r = loop_run.mem.render(off, loop_run.K, loop_run.size)
    assert masked_psnr(r.rgb[0], loop_run.frames[i].rgb, r.mask[0]) < 26.0


@pytest.mark.slow
def test_t1n_depth_noise():
    """T1 with 1% multiplicative depth noise: the forward pan is written, the return poses rendered."""
    room, K, size = Room(), intrinsics(), LOOP_SIZE
    poses = pan_return_path(LOOP_FRAMES)
    rng = np.random.default_rng(3)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.02))
    frames = []
    for t in range(LOOP_FRAMES):
        fr = room.render(poses[t], K, size, depth_noise=0.01, rng=rng)
        frames.append(fr)
        mem.write(Observation(t=t, rgb=fr.rgb, K=K, c2w=poses[t], depth=fr.depth))
    psnrs, covs = [], []
    for r in RETURN[::2]:
        st = mem.render(poses[r], K, size)
        gt = frames[2 * LOOP_FRAMES - 1 - r]
        psnrs.append(masked_psnr(st.rgb[0], gt.rgb, st.mask[0]))
        covs.append(st.coverage)
    print(f"T1n (1% depth noise): PSNR min {min(psnrs):.2f} dB, coverage min {min(covs):.4f}")
    assert min(psnrs) >= 25.0
    assert min(covs) >= 0.95


# ---------------------------------------------------------------------------------------- T2
T2_FRAMES = 40
T2_SIZE = (96, 128)
SPHERE_RGB = np.array([0.9, 0.1, 0.8])
SPHERE_SPEED = 0.05  # units per frame; diameter 0.6, so 2 diameters = 24 frames
T2_LAG = int(np.ceil(2 * 0.6 / SPHERE_SPEED))


def _t2_room() -> Room:
    return Room(spheres=[Sphere((-1.0, 0.3, 2.5), 0.3, tuple(SPHERE_RGB), velocity=(SPHERE_SPEED, 0.0, 0.0))])


def _t2_poses() -> np.ndarray:
    """A gentle sway (+-5 deg, 10 cm) that keeps the whole sphere path in view."""
    t = np.arange(T2_FRAMES)
    return np.stack([yaw_pose(5 * np.sin(2 * np.pi * k / T2_FRAMES),
                              (0.1 * np.sin(2 * np.pi * k / T2_FRAMES), 0.0, 0.05 * k / T2_FRAMES)) for k in t])


@pytest.fixture(scope="module")
def t2_eval():
    """Eval views (poses where the sphere used to be) with the region of its old positions.

    ``old``: pixels the sphere covered at times <= T-1-lag (it has since moved >= 2 diameters),
    minus pixels it covered later (those may legitimately still be un-carved).
    """
    room, K, poses = _t2_room(), intrinsics(), _t2_poses()
    views = []
    for e in range(0, T2_FRAMES - T2_LAG, 4):
        old = np.zeros(T2_SIZE, bool)
        recent = np.zeros(T2_SIZE, bool)
        for tt in range(T2_FRAMES):
            m = room.render(poses[e], K, T2_SIZE, t=tt).dynamic_mask
            if tt <= T2_FRAMES - 1 - T2_LAG:
                old |= m
            else:
                recent |= m
        views.append((poses[e], old & ~recent))
    return room, K, poses, views


def _sphere_coloured(rgb: np.ndarray) -> np.ndarray:
    unit = SPHERE_RGB / np.linalg.norm(SPHERE_RGB)
    return (rgb @ unit) / (np.linalg.norm(rgb, axis=-1) + 1e-9) > 0.97


def _ghost_fraction(t2_eval, config: SceneMemoryConfig, with_mask: bool) -> float:
    room, K, poses, views = t2_eval
    mem = SceneMemory(config)
    for t in range(T2_FRAMES):
        mem.write(room.observation(t, poses[t], K, T2_SIZE, mask=with_mask))
    worst = 0.0
    for pose, region in views:
        r = mem.render(pose, K, T2_SIZE)
        ghost = _sphere_coloured(r.rgb[0]) & r.mask[0] & region
        worst = max(worst, ghost.sum() / max(r.mask[0].sum(), 1))
    return worst


def test_t2_dynamic_mask_excludes_subject(t2_eval):
    frac = _ghost_fraction(t2_eval, SceneMemoryConfig(voxel_size=0.02), with_mask=True)
    print(f"T2 with dynamic_mask: {100 * frac:.3f}% sphere-coloured pixels")
    assert frac <= 0.001


def test_t2_carving_without_mask(t2_eval):
    frac = _ghost_fraction(t2_eval, SceneMemoryConfig(voxel_size=0.02), with_mask=False)
    print(f"T2 mask-free carving: {100 * frac:.3f}% sphere-coloured pixels")
    assert frac <= 0.005


def test_t2_control_naive_fusion_smears(t2_eval):
    frac = _ghost_fraction(t2_eval, SceneMemoryConfig(voxel_size=0.02, carving="never"), with_mask=False)
    print(f"T2 control, naive fusion: {100 * frac:.2f}% sphere-coloured pixels")
    assert frac >= 0.05


@pytest.mark.slow
def test_tsdf_mode_clears_subject_and_renders(t2_eval):
    frac = _ghost_fraction(t2_eval, SceneMemoryConfig(voxel_size=0.02, static_mode="tsdf"), with_mask=False)
    print(f"T2 TSDF mode, mask-free: {100 * frac:.3f}% sphere-coloured pixels")
    assert frac <= 0.005
    room, K, size = Room(), intrinsics(64, 48), (48, 64)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.04, static_mode="tsdf"))
    for t in range(0, 30, 3):
        mem.write(room.observation(t, yaw_pose(t), K, size))
    gt = room.render(yaw_pose(13), K, size)
    r = mem.render(yaw_pose(13), K, size)
    assert r.coverage >= 0.95
    assert masked_psnr(r.rgb[0], gt.rgb, r.mask[0]) >= 24.0


def test_incremental_write_touches_only_new_voxels():
    """A write adds voxels only for new surface; a repeated frame adds none (no rebuild)."""
    room, K = Room(), intrinsics(64, 48)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.03))
    r0 = mem.write(room.observation(0, yaw_pose(0), K, (48, 64)))
    r1 = mem.write(room.observation(1, yaw_pose(0), K, (48, 64)))
    r2 = mem.write(room.observation(2, yaw_pose(30), K, (48, 64)))
    assert r0.voxels_added > 0 and r1.voxels_added == 0 and r1.voxels_updated == r0.voxels_added
    assert 0 < r2.voxels_added < r0.voxels_added + r1.voxels_updated


def test_eviction_bounds_voxels_least_recent_first():
    room, K, size = Room(), intrinsics(64, 48), (48, 64)
    mem = SceneMemory(SceneMemoryConfig(voxel_size=0.03, max_voxels=6000))
    evicted = 0
    for t in range(36):
        rep = mem.write(room.observation(t, yaw_pose(10 * t), K, size))
        evicted += rep.voxels_evicted
        assert mem.stats().n_voxels <= 6000
    assert evicted > 0
    # the most recent view is intact, the first (oldest, opposite direction) is gone
    assert mem.render(yaw_pose(350), K, size).coverage > 0.8
    assert mem.render(yaw_pose(0 + 180), K, size).coverage < 0.5


def test_voxel_size_follows_scene_scale():
    """Default voxel size is 0.005 s: the same scene at 10x scale gets 10x voxels, same count."""
    counts, sizes = [], []
    for scale in (1.0, 10.0):
        room = Room(half=(3.0 * scale, 1.5 * scale, 3.0 * scale))
        mem = SceneMemory()
        K = intrinsics(64, 48)
        for t in range(4):
            fr = room.render(yaw_pose(5 * t), K, (48, 64))
            mem.write(Observation(t=t, rgb=fr.rgb, K=K, c2w=yaw_pose(5 * t, (0, 0, 0)), depth=fr.depth))
        counts.append(mem.stats().n_voxels)
        sizes.append(mem.voxel_size)
        assert mem.voxel_size == pytest.approx(0.005 * mem.scene_scale, rel=0.11)
    assert sizes[1] / sizes[0] == pytest.approx(10.0, rel=0.05)
    assert counts[1] == pytest.approx(counts[0], rel=0.05)
