"""T4: the episodic keyframe policy."""

from __future__ import annotations

import numpy as np

from mem4d.scene import SceneMemory, SceneMemoryConfig

from .fixtures import Room, intrinsics, yaw_pose

SIZE = (36, 48)  # overlap is resolution-independent; small images keep the 460 writes cheap


def test_t4_pan_then_static_camera():
    room, K = Room(), intrinsics(48, 36)  # f = 37.5 px at 48 wide: HFOV ~65 deg
    mem = SceneMemory(SceneMemoryConfig(keyframe_overlap=0.5))
    promoted = []
    for t in range(360):  # 360 deg at 1 deg/frame, with a small wobble in position
        rep = mem.write(room.observation(t, yaw_pose(t, (0.2 * np.sin(np.deg2rad(t)), 0.0, 0.0)), K, SIZE))
        if rep.is_keyframe:
            promoted.append((t, rep.keyframe_reason))
    n_pan = len(mem.keyframes)
    print(f"T4: {n_pan} keyframes over a 360 deg pan: {promoted}")
    assert 6 <= n_pan <= 15
    for t in range(360, 460):  # a static camera for 100 frames
        mem.write(room.observation(t, yaw_pose(45), K, SIZE))
    assert len(mem.keyframes) - n_pan <= 1
    cond_ep = [f for f in mem.query(_query(K)).episodic]
    assert len(cond_ep) == len(mem.keyframes) and all(f.is_keyframe for f in cond_ep)
    assert all(f.rgb_or_thumb.shape == SIZE + (3,) for f in cond_ep)  # full resolution


def _query(K):
    from mem4d.scene import Query

    return Query(c2w=yaw_pose(0), K=K, size=SIZE, t_query=460, want=("episodic",))


def test_t4_kmax_never_exceeded_and_redundant_evicted():
    room, K = Room(), intrinsics(48, 36)
    mem = SceneMemory(SceneMemoryConfig(max_keyframes=3))
    evicted = []
    for t in range(200):
        rep = mem.write(room.observation(t, yaw_pose(3 * t), K, SIZE))
        evicted += rep.keyframes_evicted
        assert len(mem.keyframes) <= 3
    assert evicted  # the cap was reached
    # evicted keyframes lose their full-resolution copy (they left the working window long ago)
    assert all(fid not in mem.bank.full for fid in evicted if fid < 190)


def test_photometric_change_promotes_keyframe():
    room, K = Room(), intrinsics(48, 36)
    mem = SceneMemory(SceneMemoryConfig(keyframe_photometric=0.15))
    fr = room.render(yaw_pose(0), K, SIZE)
    from mem4d.scene import Observation

    mem.write(Observation(t=0, rgb=fr.rgb, K=K, c2w=yaw_pose(0), depth=fr.depth))
    rep = mem.write(Observation(t=1, rgb=fr.rgb, K=K, c2w=yaw_pose(0), depth=fr.depth))
    assert not rep.is_keyframe
    rep = mem.write(Observation(t=2, rgb=np.clip(fr.rgb * 0.5, 0, 1), K=K, c2w=yaw_pose(0), depth=fr.depth))
    assert rep.is_keyframe and rep.keyframe_reason == "photometric"


def test_subject_event_promotes_keyframe():
    from .fixtures import Sphere

    K = intrinsics(48, 36)
    room = Room(spheres=[Sphere((0.0, 0.2, 2.0), 0.3, (0.9, 0.1, 0.1))])
    mem = SceneMemory()
    mem.write(Room().observation(0, yaw_pose(0), K, SIZE))  # no subject yet
    rep = mem.write(room.observation(1, yaw_pose(0), K, SIZE))
    assert [e.kind for e in rep.events] == ["new"]
    assert rep.is_keyframe and rep.keyframe_reason == "subject_event"
