"""``heads.depth_scale``: one factor per frame on the camera pointmap, starting at 1."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import build_procrustes, make_clip

from mem4d.config import HeadsConfig, Mem4DConfig
from mem4d.model.depth_scale import MAX_LOG_SCALE, DepthScaleHead
from mem4d.model.mem4d import Mem4D


def _with_scale(base: Mem4D) -> Mem4D:
    """``base`` with a depth scale head added (fresh, as `model.init_from` would give it)."""
    model = Mem4D(dataclasses.replace(base.config, heads=dataclasses.replace(base.config.heads, depth_scale=True)))
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("depth_scale.") for k in missing)
    return model.eval()


def test_a_fresh_head_changes_nothing(single_thread):
    base = build_procrustes()
    model = _with_scale(base)
    clip = make_clip(3)
    with torch.no_grad():
        a, b = base(clip), model(clip)
    for name in ("pts_cam", "pts_world", "depth", "cam2world", "intrinsics", "dynamic_prob"):
        torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("bias", [0.4, -0.7, 50.0])
def test_the_factor_scales_the_first_frame_and_is_bounded(single_thread, bias):
    base = build_procrustes()
    model = _with_scale(base)
    with torch.no_grad():
        model.depth_scale.mlp[-1].bias.fill_(bias)
        clip = make_clip(1)
        a, b = base(clip), model(clip)
    factor = math.exp(MAX_LOG_SCALE * math.tanh(bias / MAX_LOG_SCALE))
    assert factor <= math.exp(MAX_LOG_SCALE) + 1e-6
    torch.testing.assert_close(b.pts_cam, a.pts_cam * factor, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.depth, a.depth * factor, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.cam2world, a.cam2world)  # frame 0 is the world: a scale moves no camera


def test_the_factor_reads_the_depth_and_the_tokens():
    torch.manual_seed(0)
    head = DepthScaleHead(dim=8, encoder_dim=12, hidden=16)
    torch.nn.init.normal_(head.mlp[-1].weight)
    cam, patches, enc, depth = torch.randn(2, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 12), torch.full((2, 4, 6), 2.0)
    g = head(cam, patches, enc, depth)
    assert g.shape == (2,)
    assert not torch.allclose(head(cam, patches, enc, depth * 3), g)
    assert not torch.allclose(head(torch.randn(2, 8), patches, enc, depth), g)  # (a shift or a gain alone: normalised away)
    assert not torch.allclose(head(cam, torch.randn(2, 5, 8), enc, depth), g)
    assert not torch.allclose(head(cam, patches, torch.randn(2, 5, 12), depth), g)


def test_only_the_head_learns_when_the_rest_is_frozen():
    from mem4d.train.trainer import freeze_modules

    model = _with_scale(build_procrustes()).train()
    freeze_modules(model, sorted({n.split(".")[0] for n, _ in model.named_parameters()} - {"depth_scale"}))
    with torch.no_grad():
        model.depth_scale.mlp[-1].bias.fill_(0.1)
    out = model(make_clip(2))
    out.depth.mean().backward()
    grads = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {"depth_scale"}


def test_config_checks_the_head():
    with pytest.raises(ValueError, match="depth_scale must be a bool"):
        HeadsConfig(depth_scale=1)
    with pytest.raises(ValueError, match="depth_scale_hidden"):
        HeadsConfig(depth_scale=True, depth_scale_hidden=0)
    assert Mem4D(Mem4DConfig.tiny()).depth_scale is None


def test_the_head_survives_save_and_load(tmp_path):
    model = _with_scale(build_procrustes())
    with torch.no_grad():
        model.depth_scale.mlp[-1].bias.fill_(0.3)
    model.save_pretrained(tmp_path / "m")
    loaded = Mem4D.from_pretrained(tmp_path / "m")
    assert loaded.config.heads.depth_scale
    torch.testing.assert_close(loaded.depth_scale.mlp[-1].bias, model.depth_scale.mlp[-1].bias)
