"""``heads.pose_refinement = "photometric"``: test-time alignment of consecutive frames."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import exact_output, make_clip

from mem4d.config import Mem4DConfig
from mem4d.data.synthetic import make_scene
from mem4d.geometry.rotation import rotation_angle
from mem4d.geometry.se3 import transform_points
from mem4d.model.mem4d import Mem4D
from mem4d.model.pose_refinement import refine_pose
from mem4d.model.state import StreamState

T = 5


def _model(refine: str) -> Mem4D:
    torch.manual_seed(0)
    cfg = Mem4DConfig.tiny()
    return Mem4D(dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, pose_refinement=refine))).eval()


def test_refinement_recovers_the_trajectory_from_exact_depth():
    s = make_scene(5, T, (96, 128), camera_path="handheld", dynamic=True, camera_speed=3.0, environment="room")
    state = StreamState(batch_size=1, image_size=(96, 128))
    poses = []
    for t in range(T):
        out = exact_output(s.depth[t][None], s.intrinsics[t][None], s.dynamic_mask[t][None])
        out, new = refine_pose(s.images[t][None], out, state, dataclasses.replace(state, frame_index=t + 1))
        poses.append(out.cam2world[0])
        state = new
    err = (torch.stack(poses)[:, :3, 3] - s.cam2world[:, :3, 3]).norm(dim=-1)
    unrefined = s.cam2world[:, :3, 3].norm(dim=-1)  # the error of the identity poses it started from
    assert unrefined.max() > 0.2 and err.max() < 0.2 * unrefined.max(), (unrefined, err)
    torch.testing.assert_close(torch.stack(poses)[:, :3, :3], s.cam2world[:, :3, :3], atol=0.01, rtol=0)


def test_refined_stream_is_causal_consistent_and_resumable(tmp_path):
    refined, plain = _model("photometric"), _model("none")
    clip = make_clip(T, H=48, W=64, seed=2)
    with torch.no_grad():
        seq, ref = refined(clip), plain(clip)
        _, state = refined.stream(clip[:, :3])
        state.save(tmp_path / "s.safetensors")
        rest, _ = refined.stream(clip[:, 3:], StreamState.load(tmp_path / "s.safetensors"))
        prefix = refined(clip[:, :3])
    torch.testing.assert_close(rest.cam2world, seq.cam2world[:, 3:])
    torch.testing.assert_close(prefix.cam2world, seq.cam2world[:, :3])  # later frames change nothing before them
    assert torch.equal(seq.cam2world[:, 0], torch.eye(4)[None])
    torch.testing.assert_close(seq.pts_world, transform_points(seq.cam2world[:, :, None, None], seq.pts_cam))
    for name in ("depth", "pts_cam", "intrinsics", "dynamic_prob"):  # the network's outputs are untouched
        assert torch.equal(getattr(seq, name), getattr(ref, name)), name
    assert state.prev_image is not None and state.pose_velocity.shape == (1, 4, 4)


def test_a_wrong_velocity_start_does_not_derail_the_next_frame():
    from mem4d.geometry.rotation import axis_angle_to_matrix

    s = make_scene(5, 2, (96, 128), camera_path="handheld", dynamic=True, camera_speed=3.0, environment="room")
    state = StreamState(batch_size=1, image_size=(96, 128))
    out0 = exact_output(s.depth[0][None], s.intrinsics[0][None], s.dynamic_mask[0][None])
    _, state = refine_pose(s.images[0][None], out0, state, dataclasses.replace(state, frame_index=1))
    wrong = torch.eye(4)[None].clone()
    wrong[0, :3, :3] = axis_angle_to_matrix(torch.tensor([0.0, 0.5, 0.0]))  # 29 degrees of yaw
    state = dataclasses.replace(state, pose_velocity=wrong)
    out1 = exact_output(s.depth[1][None], s.intrinsics[1][None], s.dynamic_mask[1][None])
    out1, _ = refine_pose(s.images[1][None], out1, state, dataclasses.replace(state, frame_index=2))
    torch.testing.assert_close(out1.cam2world[0, :3, :3], s.cam2world[1, :3, :3], atol=0.01, rtol=0)


def test_the_refinement_pyramid_follows_the_frame_size():
    """The same fast turn (4.4 degrees a frame) is refined at 192x256 as at 96x128 (issue 14)."""
    for size in ((96, 128), (192, 256)):
        s = make_scene(2, 2, size, camera_path="rotation", dynamic=False, camera_speed=4.0, environment="room")
        state = StreamState(batch_size=1, image_size=size)
        for t in range(2):
            out = exact_output((s.depth[t] * s.valid[t])[None], s.intrinsics[t][None], torch.zeros(1, *size))
            out, state = refine_pose(s.images[t][None], out, state, dataclasses.replace(state, frame_index=t + 1))
        err = torch.linalg.inv(s.cam2world[1]) @ out.cam2world[0]
        assert float(rotation_angle(err[:3, :3]).rad2deg()) < 0.5, size


def test_a_good_extra_start_rescues_a_turn_the_velocity_and_no_motion_miss():
    """A 14-degree turn in one frame is beyond the alignment from no motion (the velocity is still
    none at frame 1); the network's motion handed in as ``start_a2b`` is kept when it ends lower."""
    s = make_scene(2, 2, (96, 128), camera_path="rotation", dynamic=False, camera_speed=12.0, environment="room")
    truth = torch.linalg.inv(s.cam2world[1]) @ s.cam2world[0]  # frame 0 -> frame 1
    errors = []
    for start in (None, truth[None]):
        state = StreamState(batch_size=1, image_size=(96, 128))
        for t in range(2):
            out = exact_output((s.depth[t] * s.valid[t])[None], s.intrinsics[t][None], torch.zeros(1, 96, 128))
            out, state = refine_pose(s.images[t][None], out, state, dataclasses.replace(state, frame_index=t + 1),
                                     start_a2b=start if t else None)
        err = torch.linalg.inv(s.cam2world[1]) @ out.cam2world[0]
        errors.append(float(rotation_angle(err[:3, :3]).rad2deg()))
    assert errors[1] < 0.5 < 5.0 < errors[0], errors


@pytest.mark.parametrize("field, kwarg, settings", [
    ("refine_select_after", "select_after", ((0, None), (2, 2))),  # 0: every start runs every level
    ("refine_probes", "probes", ((False, False), (True, True))),
    ("refine_scale", "scale_keep", ((0.0, 0.0), (0.9, 0.9))),
])
def test_the_refinement_settings_are_model_settings(monkeypatch, field, kwarg, settings):
    """``heads.refine_select_after``, ``heads.refine_probes`` and ``heads.refine_scale`` reach the refinement."""
    import mem4d.model.mem4d as mem4d_module

    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs[kwarg])
        return refine_pose(*args, **kwargs)

    monkeypatch.setattr(mem4d_module, "refine_pose", spy)
    clip = make_clip(2, H=48, W=64, seed=2)
    for value, expected in settings:
        model = _model("photometric")
        setattr(model.config.heads, field, value)
        with torch.no_grad():
            model(clip)
        assert seen[-2:] == [expected, expected]
    bad = {"refine_select_after": -1, "refine_probes": 1, "refine_scale": 1.5}[field]
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(Mem4DConfig.tiny().heads, **{field: bad})


def test_rotation_probes_turn_the_velocity_by_a_fraction_of_the_field_of_view():
    """8 probes: the velocity turned left/right/up/down and diagonally by PROBE_FRACTION of the
    field of view."""
    from mem4d.model.pose_refinement import PROBE_FRACTION, rotation_probes

    K = torch.tensor([[[64.0, 0, 64], [0, 64.0, 48], [0, 0, 1]]])  # fov_x 90 degrees, fov_y 2 atan(0.75)
    velocity = torch.eye(4)[None].clone()
    velocity[0, :3, 3] = torch.tensor([0.1, 0.0, 0.0])
    probes = rotation_probes(velocity, K, (96, 128))
    assert probes.shape == (8, 1, 4, 4)
    turn = probes[:, 0] @ torch.linalg.inv(velocity[0])  # the turn applied on top of the velocity
    angles = rotation_angle(turn[:, :3, :3]).rad2deg()
    yaw, pitch = 90.0 * PROBE_FRACTION, float(torch.rad2deg(2 * torch.atan(torch.tensor(0.75)))) * PROBE_FRACTION
    axes = sorted(round(float(a), 3) for a in angles)
    assert axes[:2] == [round(pitch, 3)] * 2 and axes[2:4] == [round(yaw, 3)] * 2
    assert all(abs(a - (yaw ** 2 + pitch ** 2) ** 0.5) < 0.5 for a in axes[4:])  # the diagonals
    torch.testing.assert_close(turn[:, :3, 3], torch.zeros(8, 3), atol=1e-6, rtol=0)  # rotations only
    assert probes.dtype == velocity.dtype


def test_probes_rescue_a_first_frame_turn_that_every_start_misses():
    """The 14-degree first-frame turn of the test above, with no network motion to start from: the
    velocity and no-motion starts miss it, the rotation probes catch it; ``heads.refine_probes``
    reaches the refinement."""
    s = make_scene(2, 2, (96, 128), camera_path="rotation", dynamic=False, camera_speed=12.0, environment="room")
    errors = []
    for probes in (False, True):
        state = StreamState(batch_size=1, image_size=(96, 128))
        for t in range(2):
            out = exact_output((s.depth[t] * s.valid[t])[None], s.intrinsics[t][None], torch.zeros(1, 96, 128))
            out, state = refine_pose(s.images[t][None], out, state, dataclasses.replace(state, frame_index=t + 1),
                                     probes=probes)
        err = torch.linalg.inv(s.cam2world[1]) @ out.cam2world[0]
        errors.append(float(rotation_angle(err[:3, :3]).rad2deg()))
    assert errors[1] < 0.5 < 5.0 < errors[0], errors
