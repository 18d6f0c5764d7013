"""``heads.camera_pose = "chained"``: the camera head predicts camera t in camera t-1's frame and
the stream composes it with the previous pose (kept in the state)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import make_clip

from mem4d.config import HeadsConfig, Mem4DConfig
from mem4d.geometry.rotation import matrix_to_quat
from mem4d.model.mem4d import Mem4D
from mem4d.model.state import StreamState

T = 6


def _model(camera_pose: str) -> Mem4D:
    torch.manual_seed(0)
    cfg = Mem4DConfig.tiny()
    cfg = dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, camera_pose=camera_pose))
    model = Mem4D(cfg).eval()
    with torch.no_grad():  # a head that predicts visible motion, not the near-identity init
        model.camera_head.mlp[-1].weight.mul_(30)
    return model


def test_chained_pose_is_the_running_product_of_the_heads_relative_poses():
    absolute, chained = _model("absolute"), _model("chained")
    chained.load_state_dict(absolute.state_dict())
    clip = make_clip(T, seed=3)
    with torch.no_grad():
        relative, out = absolute(clip), chained(clip)
    expected = [torch.eye(4).expand(1, 4, 4)]
    for t in range(1, T):
        expected.append(expected[-1] @ relative.cam2world[:, t])
    torch.testing.assert_close(out.cam2world, torch.stack(expected, 1), atol=1e-5, rtol=1e-5)
    assert (out.cam2world[:, -1, :3, 3] - relative.cam2world[:, -1, :3, 3]).norm() > 1e-3  # not the same thing
    torch.testing.assert_close(out.translation, out.cam2world[..., :3, 3])
    torch.testing.assert_close(out.quat_wxyz, matrix_to_quat(out.cam2world[..., :3, :3]))
    assert torch.equal(out.cam2world[:, 0], torch.eye(4)[None])
    for name in ("pts_world", "pts_cam", "depth", "intrinsics", "conf_world"):  # only the pose changes
        assert torch.equal(getattr(out, name), getattr(relative, name)), name


def test_chained_stream_resumes_from_a_saved_state(tmp_path):
    model = _model("chained")
    clip = make_clip(T, seed=4)
    with torch.no_grad():
        full = model(clip)
        _, state = model.stream(clip[:, :3])
    assert state.cam2world is not None and state.cam2world.shape == (1, 4, 4)
    state.save(tmp_path / "s.safetensors")
    loaded = StreamState.load(tmp_path / "s.safetensors")
    torch.testing.assert_close(loaded.cam2world, state.cam2world)
    with torch.no_grad():
        rest, _ = model.stream(clip[:, 3:], loaded)
    torch.testing.assert_close(rest.cam2world, full.cam2world[:, 3:])


def test_pose_loss_reaches_the_head_through_the_chain():
    model = _model("chained").train()
    out = model(make_clip(3, seed=5))
    out.cam2world[:, 2, :3, 3].sum().backward()
    assert model.camera_head.mlp[-1].weight.grad.abs().sum() > 0


def test_absolute_mode_keeps_no_pose_in_the_state():
    _, state = _model("absolute").stream(make_clip(2))
    assert state.cam2world is None


def test_unknown_camera_pose_is_rejected():
    with pytest.raises(ValueError, match="camera_pose"):
        HeadsConfig(camera_pose="relative")
