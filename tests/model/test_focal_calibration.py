"""``heads.refine_focal``: the focal length calibrated from the video's motion."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import make_clip

from mem4d.config import Mem4DConfig
from mem4d.data.synthetic import make_scene
from mem4d.geometry.camera import depth_to_pts_cam
from mem4d.geometry.rotation import rotation_angle
from mem4d.model.focal_calibration import FOCAL_SCALES, MIN_CONTRAST, focal_scale, running_intrinsics, zoom_focal
from mem4d.model.mem4d import Mem4D
from mem4d.model.outputs import FrameOutput
from mem4d.model.pose_refinement import refine_pose
from mem4d.model.state import StreamState


def _output(depth: torch.Tensor, K: torch.Tensor) -> FrameOutput:
    """Exact depth, the given intrinsics (possibly wrong) and an identity pose."""
    pts = depth_to_pts_cam(depth, K)
    one = torch.ones_like(depth)
    fov = 2 * torch.atan(depth.shape[-1] / (2 * K[:, 0, 0]))
    return FrameOutput(pts_world=pts, conf_world=one, pts_cam=pts, conf_cam=one, depth=depth, intrinsics=K,
                       cam2world=torch.eye(4)[None], fov_x=fov, quat_wxyz=torch.tensor([[1.0, 0, 0, 0]]),
                       translation=torch.zeros(1, 3), dynamic_prob=torch.zeros_like(depth))


def _stream(scene, focal_factor: float | list[float], focal: bool = True) -> list[FrameOutput]:
    """The scene's exact depth with the network's focal ``focal_factor`` times the truth (one
    factor per frame when a list)."""
    state, outs = StreamState(batch_size=1, image_size=tuple(scene.images.shape[-2:])), []
    for t in range(scene.num_frames):
        factor = focal_factor[t] if isinstance(focal_factor, list) else focal_factor
        K = zoom_focal(scene.intrinsics[t][None], torch.tensor([factor]))
        out = _output((scene.depth[t] * scene.valid[t])[None], K)
        out, state = refine_pose(scene.images[t][None], out, state, dataclasses.replace(state, frame_index=t + 1),
                                 focal=focal, probes=True)
        outs.append(out)
    return outs


def test_the_scale_is_the_parabola_minimum_of_the_summed_costs_and_one_when_flat():
    logs = torch.log(torch.tensor(FOCAL_SCALES, dtype=torch.float64))
    for truth in (0.85, 1.0, 1.18):
        summed = 1.0 + (logs - math.log(truth)) ** 2  # a parabola in log scale
        assert abs(float(focal_scale(summed[None])[0]) - truth) < 0.02 * truth
    edge = 1.0 + (logs - math.log(0.35)) ** 2  # the minimum lies beyond the grid: its end
    assert float(focal_scale(edge[None])[0]) == pytest.approx(FOCAL_SCALES[0], rel=0.05)
    flat = torch.full((1, len(FOCAL_SCALES)), 3.0, dtype=torch.float64)
    flat[0, 2] -= 3.0 * MIN_CONTRAST / 2  # a spread below the contrast: not enough to tell
    assert float(focal_scale(flat)[0]) == 1.0
    assert float(focal_scale(torch.full((1, len(FOCAL_SCALES)), float("nan")))[0]) == 1.0


@pytest.mark.parametrize("factor", [1.3, 0.8, 1.7])
def test_a_wrong_focal_is_found_from_a_turning_camera_and_the_turn_follows(factor):
    """The network's focal 30 % or 70 % too long (or 20 % too short) on a camera turning ~7 degrees a
    frame: within a few frames the output focal is within 5 % of the truth, and the rotation is
    right, where without the calibration it is off by about the focal error."""
    s = make_scene(3, 6, (96, 128), camera_path="rotation", dynamic=False, camera_speed=6.0, environment="room")
    calibrated, plain = _stream(s, factor), _stream(s, factor, focal=False)
    f_true = float(s.intrinsics[-1, 0, 0])
    assert abs(float(calibrated[-1].intrinsics[0, 0, 0]) / f_true - 1) < 0.05
    assert abs(float(plain[-1].intrinsics[0, 0, 0]) / f_true - factor) < 1e-6  # untouched without it

    def turn_err(outs):  # the worst frame-to-frame rotation error once the focal is found (frames 2..)
        est = [o.cam2world[0] for o in outs]
        return max(float(rotation_angle((torch.linalg.inv(s.cam2world[t - 1] @ torch.linalg.inv(s.cam2world[t]))
                                         @ (est[t - 1] @ torch.linalg.inv(est[t])))[:3, :3]).rad2deg())
                   for t in range(2, len(outs)))

    assert turn_err(calibrated) < 0.3 < 1.0 < turn_err(plain), (turn_err(calibrated), turn_err(plain))
    last = calibrated[-1]  # pointmap, intrinsics and fov agree
    torch.testing.assert_close(last.pts_cam, depth_to_pts_cam(last.depth, last.intrinsics), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(last.fov_x, 2 * torch.atan(128 / (2 * last.intrinsics[:, 0, 0])))


def test_a_still_camera_keeps_the_networks_focal():
    """Four identical frames: nothing tells the focal lengths apart, the network's is kept."""
    s = make_scene(3, 1, (96, 128), camera_path="handheld", dynamic=False, environment="room")
    still = dataclasses.replace(s, images=s.images.repeat(4, 1, 1, 1), depth=s.depth.repeat(4, 1, 1),
                                valid=s.valid.repeat(4, 1, 1), intrinsics=s.intrinsics.repeat(4, 1, 1),
                                cam2world=s.cam2world.repeat(4, 1, 1))
    for out in _stream(still, 1.3):
        assert float(out.intrinsics[0, 0, 0]) == pytest.approx(1.3 * float(s.intrinsics[0, 0, 0]), rel=1e-6)


def test_the_calibration_is_a_model_setting_causal_and_resumable(tmp_path):
    torch.manual_seed(0)
    cfg = Mem4DConfig.tiny()
    heads = dataclasses.replace(cfg.heads, pose_refinement="photometric", refine_focal=True)
    model = Mem4D(dataclasses.replace(cfg, heads=heads)).eval()
    clip = make_clip(5, H=48, W=64, seed=2)
    with torch.no_grad():
        seq = model(clip)
        _, state = model.stream(clip[:, :3])
        assert state.focal_costs is not None and state.focal_costs.shape == (1, len(FOCAL_SCALES))
        state.save(tmp_path / "s.safetensors")
        rest, _ = model.stream(clip[:, 3:], StreamState.load(tmp_path / "s.safetensors"))
        prefix = model(clip[:, :3])
    torch.testing.assert_close(rest.intrinsics, seq.intrinsics[:, 3:])
    torch.testing.assert_close(rest.cam2world, seq.cam2world[:, 3:])
    torch.testing.assert_close(prefix.intrinsics, seq.intrinsics[:, :3])  # later frames change nothing before
    with pytest.raises(ValueError, match="refine_focal"):
        dataclasses.replace(Mem4DConfig.tiny().heads, refine_focal="yes")


def test_every_frame_calibrates_at_first_then_every_stride_th():
    from mem4d.model.focal_calibration import DENSE_FRAMES, STRIDE, calibrates

    used = [t for t in range(0, DENSE_FRAMES + 4 * STRIDE + 1) if calibrates(t)]
    assert used[:DENSE_FRAMES] == list(range(1, DENSE_FRAMES + 1))  # frame 0 has no pair
    assert all(t % STRIDE == 0 for t in used[DENSE_FRAMES:]) and len(used[DENSE_FRAMES:]) == 4


def test_a_camera_that_only_translates_keeps_the_networks_focal():
    """Frames that turn less than MIN_TURN_DEG add no evidence: a forward walk keeps the network's
    focal length even when it is wrong (a wrong focal could be traded for a wrong depth there)."""
    from mem4d.model.focal_calibration import MIN_TURN_DEG, informative

    s = make_scene(4, 5, (96, 128), camera_path="forward", dynamic=False, camera_speed=2.0, environment="room")
    rel = torch.linalg.inv(s.cam2world[1:]) @ s.cam2world[:-1]
    assert float(rotation_angle(rel[:, :3, :3]).rad2deg().max()) < MIN_TURN_DEG  # the premise: it barely turns
    assert not informative(rel).any()
    for t, out in enumerate(_stream(s, 1.3)):
        assert float(out.intrinsics[0, 0, 0]) == pytest.approx(1.3 * float(s.intrinsics[t, 0, 0]), rel=1e-6)


def test_the_networks_jittering_focal_is_averaged_over_the_frames_so_far():
    """A video has one camera: the network's per-frame guesses (here 1.2x and 1.4x the truth in
    turn, on a walk that does not turn, so no calibration evidence) give way to their running
    mean, and the output's points lie on the output's rays."""
    s = make_scene(4, 5, (96, 128), camera_path="forward", dynamic=False, camera_speed=2.0, environment="room")
    factors = [1.2, 1.4, 1.2, 1.4, 1.2]
    f_true = float(s.intrinsics[0, 0, 0])
    for t, out in enumerate(_stream(s, factors)):
        mean = sum(factors[: t + 1]) / (t + 1)
        assert float(out.intrinsics[0, 0, 0]) == pytest.approx(mean * f_true, rel=1e-5)
        torch.testing.assert_close(out.pts_cam, depth_to_pts_cam(out.depth, out.intrinsics), atol=1e-4, rtol=1e-4)
    plain = _stream(s, factors, focal=False)  # without the option each frame keeps its own guess
    assert [round(float(o.intrinsics[0, 0, 0]) / f_true, 4) for o in plain] == factors


def test_the_running_intrinsics_are_the_mean_so_far_even_from_a_state_without_the_sum():
    """Frames 0..t average; a state saved before it carried the sum (None after frame 0) takes
    this frame's guess for the earlier ones instead of dividing one frame by t + 1."""
    Ks = [torch.diag(torch.tensor([f, f, 1.0])).expand(2, 3, 3) for f in (100.0, 110.0, 120.0)]
    summed = None
    for t, K in enumerate(Ks):
        mean, summed = running_intrinsics(K, summed, t)
    assert torch.allclose(mean[:, 0, 0], torch.tensor([110.0, 110.0]))
    mean, summed = running_intrinsics(Ks[2], None, 5)
    assert torch.allclose(mean, Ks[2]) and torch.allclose(summed, 6 * Ks[2])
    mean, _ = running_intrinsics(Ks[0], summed, 6)
    assert torch.allclose(mean[:, 0, 0], torch.full((2,), (6 * 120.0 + 100.0) / 7))
