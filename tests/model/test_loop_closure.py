"""``heads.loop_closure``: refined poses closed against old keyframes in view; bounded keyframes."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import build_procrustes, make_clip

from mem4d.geometry.rotation import axis_angle_to_matrix
from mem4d.model import loop_closure
from mem4d.model.loop_closure import CAPACITY, close_loop, key_factor, view_overlap
from mem4d.model.outputs import FrameOutput
from mem4d.model.state import StreamState

pytestmark = pytest.mark.usefixtures("single_thread")


def _loop(T: int = 40):
    from mem4d.data.synthetic import make_scene

    return make_scene(3, T, image_size=(64, 96), dynamic=False, camera_path="loop")


def _output(s, t: int, cam2world: torch.Tensor) -> FrameOutput:
    """Frame t of scene ``s`` as the network would give it, with exact depth and the pose ``cam2world`` (4, 4)."""
    from mem4d.geometry.camera import depth_to_pts_cam

    depth = torch.where(s.valid[t], s.depth[t], torch.zeros_like(s.depth[t]))[None]
    pts_cam = depth_to_pts_cam(depth, s.intrinsics[t:t + 1])
    return FrameOutput(pts_world=pts_cam, conf_world=torch.ones_like(depth), pts_cam=pts_cam,
                       conf_cam=torch.ones_like(depth), depth=depth, dynamic_prob=torch.zeros_like(depth),
                       cam2world=cam2world[None].clone(), quat_wxyz=torch.tensor([[1.0, 0, 0, 0]]),
                       translation=cam2world[None, :3, 3].clone(), intrinsics=s.intrinsics[t:t + 1],
                       fov_x=torch.ones(1))


def _states(s, state: StreamState, t: int) -> tuple[StreamState, StreamState]:
    """The states before and after frame t of scene ``s`` as the refinement leaves them: frame t-1's
    image, exact depth and weight before; the true motion t-1 -> t after."""
    from dataclasses import replace

    from mem4d.geometry.se3 import cam_a2cam_b

    before = replace(state, prev_image=s.images[t - 1:t], prev_depth=s.depth[t - 1:t] * s.valid[t - 1:t],
                     prev_weight=torch.ones_like(s.depth[t - 1:t]))
    return before, replace(before, pose_velocity=cam_a2cam_b(s.cam2world[t - 1:t], s.cam2world[t:t + 1]))


def _close(s, t: int, cam2world: torch.Tensor, state: StreamState, image: torch.Tensor | None = None):
    """`close_loop` of frame t of scene ``s`` (or ``image``) with the refined pose ``cam2world``."""
    before, after = _states(s, state, t) if t > 0 else (state, state)
    return close_loop(s.images[t:t + 1] if image is None else image, _output(s, t, cam2world), before, after, t)


def _turn(deg: float) -> torch.Tensor:
    T = torch.eye(4)
    T[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, math.radians(deg), 0.0]))
    return T


def _angle(a: torch.Tensor, b: torch.Tensor) -> float:
    c = ((a[:3, :3].T @ b[:3, :3]).trace() - 1) / 2
    return math.degrees(math.acos(float(c.clamp(-1, 1))))


def test_key_factor_keeps_the_stored_long_side_at_most_key_side():
    assert [key_factor(s) for s in [(96, 128), (192, 256), (384, 512), (720, 1280), (64, 64)]] == [1, 2, 4, 16, 1]


def test_disagreement_px_is_where_two_motions_put_the_pixels_apart():
    s = _loop(2)
    depth, K = s.depth[:1] * s.valid[:1], s.intrinsics[:1]
    weight = torch.ones_like(depth)
    motion = _turn(5.0)[None]
    assert loop_closure._disagreement_px(depth, weight, K, motion, motion.clone()) == pytest.approx(0.0, abs=1e-4)
    # one degree more of turn moves the pixels by about focal x 1 degree
    apart = loop_closure._disagreement_px(depth, weight, K, motion, (_turn(6.0))[None])
    assert 0.9 < apart / (float(K[0, 0, 0]) * math.radians(1.0)) < 1.3
    # moving pixels (weight 0) are not counted: no pixel, no agreement
    assert loop_closure._disagreement_px(depth, torch.zeros_like(depth), K, motion, motion) == math.inf


def test_view_overlap_is_one_in_place_and_zero_when_turned_away():
    s = _loop(2)
    depth, K = s.depth[:1], s.intrinsics[:1]
    weight = torch.ones_like(depth)
    assert float(view_overlap(depth, weight, K, torch.eye(4)[None], (64, 96))) == pytest.approx(1.0)
    assert float(view_overlap(depth, weight, K, _turn(180)[None], (64, 96))) == 0.0
    half = float(view_overlap(depth, weight, K, _turn(20)[None], (64, 96)))
    assert 0.2 < half < 0.9
    # moving pixels (weight 0) do not count
    assert float(view_overlap(depth, torch.zeros_like(depth), K, torch.eye(4)[None], (64, 96))) == 0.0


def test_a_drifted_revisit_is_closed_onto_the_keyframe_it_sees():
    s = _loop()
    state = StreamState(batch_size=1, image_size=(64, 96))
    _, state = _close(s, 0, s.cam2world[0], state)
    assert state.key_frames[0].tolist().count(0) == 1 and int((state.key_frames[0] >= 0).sum()) == 1
    # the loop's last frames look where frame 0 looked; their chained pose has drifted by 8 degrees
    t = 36 if 36 % loop_closure.EVERY == 0 else 40 - 40 % loop_closure.EVERY
    drifted = s.cam2world[t] @ _turn(8.0)
    assert _angle(drifted, s.cam2world[t]) > 7.9
    out, new = _close(s, t, drifted, state)
    assert _angle(out.cam2world[0], s.cam2world[t]) < 1.0  # under a pixel of 64x96 (8 pixels before)
    torch.testing.assert_close(new.cam2world, out.cam2world)
    torch.testing.assert_close(out.pts_world[0], (out.cam2world[0, :3, :3] @ out.pts_cam[0][..., None])[..., 0]
                               + out.cam2world[0, :3, 3], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(state.cam2world[0], s.cam2world[0])  # the state handed in is not changed
    assert state.key_frames[0].tolist() == [0] + [-1] * (CAPACITY - 1)
    # the closure is reported for consumers that keep past frames (SceneMemory.close_loop)
    assert out.loop_keyframe.tolist() == [0]
    torch.testing.assert_close(out.loop_correction[0] @ drifted, out.cam2world[0], atol=1e-5, rtol=0)


def test_no_closure_before_the_gap_nor_where_no_keyframe_is_in_view():
    s = _loop()
    state = StreamState(batch_size=1, image_size=(64, 96))
    _, state = _close(s, 0, s.cam2world[0], state)
    drifted = s.cam2world[0] @ _turn(8.0)
    t = loop_closure.EVERY * max(1, (loop_closure.MIN_GAP - 1) // loop_closure.EVERY)  # too young to close against
    out, _ = _close(s, t, drifted, state, image=s.images[:1])
    torch.testing.assert_close(out.cam2world[0], drifted)
    assert out.loop_keyframe.tolist() == [-1] and torch.equal(out.loop_correction[0], torch.eye(4))
    # the middle of the loop looks the other way: no closure, and the frame becomes a keyframe
    m = 20 - 20 % loop_closure.EVERY
    out, new = _close(s, m, s.cam2world[m] @ _turn(8.0), state)
    torch.testing.assert_close(out.cam2world[0], s.cam2world[m] @ _turn(8.0))
    assert sorted(int(f) for f in new.key_frames[0] if f >= 0) == [0, m]


def test_a_wrong_closure_is_refused():
    """A frame of another scene that happens to be in the keyframe's predicted view does not
    pull the pose: the alignment finds nothing better than the chained pose."""
    from mem4d.data.synthetic import make_scene

    s, other = _loop(), make_scene(9, 1, image_size=(64, 96), dynamic=False, environment="courtyard")
    state = StreamState(batch_size=1, image_size=(64, 96))
    _, state = _close(s, 0, s.cam2world[0], state)
    t = 36 - 36 % loop_closure.EVERY
    pose = s.cam2world[t] @ _turn(3.0)
    out, _ = _close(s, t, pose, state, image=other.images[:1])
    torch.testing.assert_close(out.cam2world[0], pose)


def test_the_keyframes_stay_bounded_on_a_long_stream_and_the_state_round_trips(tmp_path):
    model = build_procrustes(0, pose_refinement="photometric", loop_closure=True)
    clip = make_clip(3 * CAPACITY, H=64, W=64)
    state = model.init_state(1, (64, 64))
    sizes = []
    with torch.inference_mode():
        for t in range(clip.shape[1]):
            _, state = model.step(clip[:, t], state)
            sizes.append(state.key_images.nbytes)
            if t == 5:
                state.save(tmp_path / "s.safetensors")
                resumed = StreamState.load(tmp_path / "s.safetensors")
    assert len(set(sizes)) == 1 and state.key_images.shape[1] == CAPACITY
    frames = state.key_frames[0]
    assert int((frames >= 0).sum()) <= CAPACITY and int(frames.max()) < clip.shape[1]
    for name in ("key_images", "key_depths", "key_weights", "key_cam2world", "key_frames"):
        assert getattr(resumed, name) is not None
    # resuming from the saved state gives the same next frames as the stream itself
    with torch.inference_mode():
        a, sa = model.step(clip[:, 6], resumed)
        ref_state = model.init_state(1, (64, 64))
        for t in range(7):
            b, ref_state = model.step(clip[:, t], ref_state)
    torch.testing.assert_close(a.cam2world, b.cam2world)
    torch.testing.assert_close(sa.key_frames, ref_state.key_frames)


def test_loop_closure_changes_nothing_without_the_refinement_and_is_off_in_the_presets():
    from mem4d.config import HeadsConfig, Mem4DConfig

    assert Mem4DConfig.tiny().heads.loop_closure is False
    with pytest.raises(ValueError, match="loop_closure"):
        HeadsConfig(loop_closure="yes")
    plain = build_procrustes(0)
    closing = build_procrustes(0, loop_closure=True)
    clip = make_clip(4, H=64, W=64)
    with torch.inference_mode():
        torch.testing.assert_close(plain(clip).cam2world, closing(clip).cam2world)



def test_a_full_store_keeps_frame_0_and_drops_the_oldest_other_keyframe():
    s = _loop(2)
    state = StreamState(batch_size=1, image_size=(64, 96))
    n = CAPACITY + 3
    for t in range(n):  # every frame looks a new way (turned 100 degrees about the vertical, then lifted)
        pose = torch.eye(4)
        pose[:3, 3] = torch.tensor([0.0, 10.0 * t, 0.0])
        _, state = close_loop(s.images[:1], _output(s, 0, pose @ _turn(100.0 * t)), state, state, t)
    assert sorted(state.key_frames[0].tolist()) == [0] + list(range(n - CAPACITY + 1, n))


def _perfect_floor(s, state: StreamState, t: int) -> tuple[StreamState, StreamState]:
    """States in which frame t-1 -> t fits perfectly: the consecutive-frame cost, the yardstick, is about 0."""
    from dataclasses import replace

    g = torch.Generator().manual_seed(0)
    almost = (s.images[t:t + 1] + 0.002 * torch.rand(s.images[t:t + 1].shape, generator=g)).clamp(0, 1)
    perfect = replace(state, prev_image=almost, prev_depth=s.depth[t:t + 1] * s.valid[t:t + 1],
                      prev_weight=torch.ones_like(s.depth[t:t + 1]))
    return perfect, replace(perfect, pose_velocity=torch.eye(4)[None])


def _keyed_revisit():
    """The loop with frame 0 kept as a keyframe, a revisit frame t and its chained pose, 8 degrees off:
    (scene, state, t, drifted pose (4, 4))."""
    s = _loop()
    state = StreamState(batch_size=1, image_size=(64, 96))
    _, state = _close(s, 0, s.cam2world[0], state)
    t = 36 - 36 % loop_closure.EVERY
    return s, state, t, s.cam2world[t] @ _turn(8.0)


def test_a_closure_must_fit_about_as_well_as_consecutive_frames_do(monkeypatch):
    """With the reverse check off, the same revisit that closes above is refused when frame t-1 -> t
    fit perfectly (the consecutive-frame cost is the yardstick), and still closes when frame t is
    darker (its channels are matched to the keyframe's before the alignment)."""
    from dataclasses import replace

    monkeypatch.setattr(loop_closure, "AGREE_PX", -1.0)
    s, state, t, drifted = _keyed_revisit()
    out, _ = close_loop(s.images[t:t + 1], _output(s, t, drifted), *_perfect_floor(s, state, t), t)
    torch.testing.assert_close(out.cam2world[0], drifted)
    darker = 0.6 * s.images[t:t + 1] + 0.05
    before, after = _states(s, state, t)
    before = replace(before, prev_image=0.6 * before.prev_image + 0.05)  # the exposure changed a while ago
    out, _ = close_loop(darker, _output(s, t, drifted), before, after, t)
    assert _angle(out.cam2world[0], s.cam2world[t]) < 1.0


def test_a_closure_the_cost_tests_refuse_is_kept_when_the_reverse_fit_agrees(monkeypatch):
    """The revisit refused above (a perfect consecutive-frame fit) is kept when frame t, aligned
    back onto the keyframe with its own depth, lands on the same rotation; it is refused when that
    reverse fit turns 1 degree away, or when its cost is over ``AGREE_COST_RATIO`` of the chained pose's."""
    s, state, t, drifted = _keyed_revisit()
    out, _ = close_loop(s.images[t:t + 1], _output(s, t, drifted), *_perfect_floor(s, state, t), t)
    assert _angle(out.cam2world[0], s.cam2world[t]) < 1.0 and out.loop_keyframe.tolist() == [0]

    align, calls = loop_closure._align, []

    def reverse_elsewhere(*args):
        a2b, cost = align(*args)
        calls.append(len(calls))
        return (a2b @ _turn(1.0)[None], cost) if len(calls) == 2 else (a2b, cost)  # the 2nd fit is the reverse one

    monkeypatch.setattr(loop_closure, "_align", reverse_elsewhere)
    out, _ = close_loop(s.images[t:t + 1], _output(s, t, drifted), *_perfect_floor(s, state, t), t)
    assert len(calls) == 2
    torch.testing.assert_close(out.cam2world[0], drifted)
    assert out.loop_keyframe.tolist() == [-1]
    monkeypatch.setattr(loop_closure, "_align", align)
    monkeypatch.setattr(loop_closure, "AGREE_COST_RATIO", 0.0)
    out, _ = close_loop(s.images[t:t + 1], _output(s, t, drifted), *_perfect_floor(s, state, t), t)
    torch.testing.assert_close(out.cam2world[0], drifted)
