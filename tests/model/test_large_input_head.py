"""``heads.large_input_head``: a second camera-pointmap head for frames larger than the model's own size."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import make_clip

from mem4d.config import Mem4DConfig
from mem4d.model.mem4d import Mem4D


def _pair() -> tuple[Mem4D, Mem4D]:
    """A tiny model at 32x48 and the same weights with the large-input head (a copy of head_cam)."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(Mem4DConfig.tiny(), image_size=(32, 48))
    plain = Mem4D(cfg).eval()
    large = Mem4D(dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, large_input_head=True))).eval()
    large.load_state_dict(plain.state_dict(), strict=False)
    large.head_cam_large.load_state_dict(plain.head_cam.state_dict())
    return plain, large


def test_the_default_size_is_untouched_and_larger_frames_read_the_second_head():
    plain, large = _pair()
    small, big = make_clip(3, H=32, W=48, seed=1), make_clip(3, H=64, W=96, seed=1)
    with torch.no_grad():
        for p in large.head_cam_large.parameters():  # a head that has learned something else
            p.add_(0.05 * torch.randn_like(p))
        for clip, changes in ((small, False), (make_clip(3, H=48, W=32, seed=1), False), (big, True)):
            a, b = plain(clip), large(clip)
            assert torch.equal(a.depth, b.depth) is not changes
            assert torch.equal(a.pts_cam, b.pts_cam) is not changes
            assert torch.equal(a.dynamic_prob, b.dynamic_prob) or changes


def test_a_fine_tune_starts_the_second_head_as_a_copy_of_the_first(tmp_path):
    from mem4d.train.recipe import Recipe
    from mem4d.train.trainer import build_model

    plain, _ = _pair()
    plain.save_pretrained(tmp_path / "base")
    recipe = {"model": {"init_from": str(tmp_path / "base"), "overrides": {"heads": {"large_input_head": True}}},
              "data": {"image_size": [32, 48]}}
    model = build_model(Recipe.from_dict(recipe)).eval()
    assert model.init_report["fresh"] == ["head_cam_large (copied from head_cam)"]
    big = make_clip(2, H=64, W=96, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(big).depth, plain(big).depth)  # the copy: the same outputs at first
    model.save_pretrained(tmp_path / "large")
    again = Mem4D.from_pretrained(tmp_path / "large")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_the_setting_is_a_bool_and_off_in_the_presets():
    assert not Mem4DConfig.tiny().heads.large_input_head
    with pytest.raises(ValueError, match="large_input_head"):
        dataclasses.replace(Mem4DConfig.tiny().heads, large_input_head=1)
