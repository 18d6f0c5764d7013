"""``heads.refine_scale``: each frame's depth put in the previous frame's scale through the refined motion."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import exact_output, make_clip

from mem4d.config import Mem4DConfig
from mem4d.data.synthetic import make_scene
from mem4d.model.mem4d import Mem4D
from mem4d.model.outputs import FrameOutput
from mem4d.model.pose_refinement import refine_pose
from mem4d.model.scale_chain import MAX_STEP, MIN_PIXELS, chained_factor, scale_ratio
from mem4d.model.state import StreamState

JITTER = [1.0, 1.15, 0.95, 1.12, 0.92, 1.08]  # the network's per-frame scale error, made up (steps within MAX_STEP)


def _scene():
    return make_scene(5, len(JITTER), (96, 128), camera_path="handheld", dynamic=True, camera_speed=3.0,
                      environment="room")


def _stream(scene, keep: float) -> tuple[list[FrameOutput], StreamState]:
    """The scene's exact depth times `JITTER` through the refinement."""
    state, outs = StreamState(batch_size=1, image_size=(96, 128)), []
    for t, factor in enumerate(JITTER):
        depth = (scene.depth[t] * scene.valid[t])[None] * factor
        out = exact_output(depth, scene.intrinsics[t][None], scene.dynamic_mask[t][None])
        out, state = refine_pose(scene.images[t][None], out, state, dataclasses.replace(state, frame_index=t + 1),
                                 scale_keep=keep)
        outs.append(out)
    return outs, state


def _log_ratios(scene, outs) -> torch.Tensor:
    """Per frame, the log of the median ratio of the output depth to the truth on valid static pixels."""
    logs = []
    for t, out in enumerate(outs):
        ok = scene.valid[t] & ~scene.dynamic_mask[t]
        logs.append(torch.log((out.depth[0][ok] / scene.depth[t][ok]).median()))
    return torch.stack(logs)


def test_the_ratio_recovers_a_scale_between_two_frames_and_is_nan_without_shared_static_pixels():
    s = _scene()
    a2b = torch.linalg.inv(s.cam2world[1]) @ s.cam2world[0]
    depth_a, depth_b = (s.depth[0] * s.valid[0])[None], (s.depth[1] * s.valid[1])[None]
    static_a, static_b = (~s.dynamic_mask[0]).float()[None], (~s.dynamic_mask[1]).float()[None]
    K = s.intrinsics[1][None]
    for true in (0.7, 1.0, 1.6):
        ratio = scale_ratio(depth_a, static_a, depth_b / true, static_b, K, a2b[None])
        assert abs(float(ratio[0]) / true - 1) < 0.02, (true, ratio)
    assert torch.isnan(scale_ratio(depth_a, torch.zeros_like(static_a), depth_b, static_b, K, a2b[None])).all()
    few = torch.zeros_like(static_a)
    few.view(-1)[: MIN_PIXELS // 2] = 1
    assert torch.isnan(scale_ratio(depth_a, few, depth_b, static_b, K, a2b[None])).all()
    away = torch.eye(4)[None].clone()
    away[0, 2, 3] = -1e3  # frame a's points moved behind camera b
    assert torch.isnan(scale_ratio(depth_a, static_a, depth_b, static_b, K, away)).all()


def test_the_factor_leaks_back_and_keeps_the_previous_one_without_a_believable_ratio():
    step = math.exp(0.9 * MAX_STEP)  # a jump the network's scale makes
    ratio = torch.tensor([2.0 * step, float("nan"), -1.0, 2.0 * math.exp(1.1 * MAX_STEP), 0.5])
    previous = torch.tensor([2.0, 1.5, 0.5, 2.0, 2.0])
    factor = chained_factor(ratio, previous, 0.9)
    torch.testing.assert_close(factor, torch.tensor([2.0 * step, 1.5, 0.5, 2.0, 2.0]) ** 0.9)
    torch.testing.assert_close(chained_factor(ratio, previous, 1.0), torch.tensor([2.0 * step, 1.5, 0.5, 2.0, 2.0]))


def test_a_jittering_depth_scale_is_chained_onto_frame_zero_and_the_translation_follows():
    """Exact depth times a made-up per-frame scale (±15 %): with the chain kept whole every frame
    ends within 3 % of frame 0's scale, points and poses agree, and the refined steps of the
    camera are all in one scale; with a leak the wander shrinks; off, the output depth is the input's."""
    s = _scene()
    chained, state = _stream(s, 1.0)
    leaked, _ = _stream(s, 0.7)
    plain, plain_state = _stream(s, 0.0)
    wander = _log_ratios(s, plain)
    torch.testing.assert_close(wander.exp(), torch.tensor(JITTER), atol=1e-3, rtol=0)  # off: untouched
    assert plain_state.depth_correction is None and state.depth_correction.shape == (1,)
    assert _log_ratios(s, chained).abs().max() < math.log(1.03)
    assert _log_ratios(s, leaked).std() < 0.6 * wander.std()
    last = chained[-1]
    torch.testing.assert_close(last.pts_cam[..., 2], last.depth)
    torch.testing.assert_close(last.pts_world, (last.cam2world[0, :3, :3] @ last.pts_cam[0].reshape(-1, 3).T).T
                               .reshape(last.pts_cam.shape) + last.cam2world[0, :3, 3])

    def step_log_ratios(outs):  # log of each refined step's length over the true step's
        c, g = torch.stack([o.cam2world[0, :3, 3] for o in outs]), s.cam2world[:, :3, 3]
        return torch.log((c[1:] - c[:-1]).norm(dim=-1) / (g[1:] - g[:-1]).norm(dim=-1))

    # off, each step is in its frame's jittered scale; chained, all in one scale
    assert step_log_ratios(chained).std() < 0.3 * step_log_ratios(plain).std(), (step_log_ratios(chained),
                                                                                step_log_ratios(plain))


def test_the_model_setting_chains_the_stream_and_stays_causal():
    """``heads.refine_scale`` through `Mem4D`: the clip call and the stream agree, frame 0 is untouched
    and later frames change only by one factor each."""
    torch.manual_seed(0)
    cfg = Mem4DConfig.tiny()
    heads = dataclasses.replace(cfg.heads, pose_refinement="photometric", refine_scale=0.9)
    model = Mem4D(dataclasses.replace(cfg, heads=heads)).eval()
    plain = Mem4D(dataclasses.replace(cfg, heads=dataclasses.replace(heads, refine_scale=0.0))).eval()
    plain.load_state_dict(model.state_dict())
    clip = make_clip(4, H=48, W=64, seed=3)
    with torch.no_grad():
        seq, ref = model(clip), plain(clip)
        streamed, _ = model.stream(clip)
    torch.testing.assert_close(streamed.depth, seq.depth)
    torch.testing.assert_close(seq.depth[:, 0], ref.depth[:, 0])
    factor = seq.depth / ref.depth  # one factor per frame
    torch.testing.assert_close(factor, factor.mean(dim=(-2, -1), keepdim=True).expand_as(factor), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.9"])
def test_the_setting_is_a_share_in_zero_one(bad):
    with pytest.raises(ValueError, match="refine_scale"):
        dataclasses.replace(Mem4DConfig.tiny().heads, refine_scale=bad)
