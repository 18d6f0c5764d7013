"""``heads.motion_refine``: the motion head refines its mask on the correspondence head's
1/4-resolution grid, reading the image's matching features."""

from __future__ import annotations

import pytest
import torch
from conftest import build_procrustes

from mem4d.config import HeadsConfig
from mem4d.model.motion_head import MotionHead


def _inputs():
    torch.manual_seed(1)
    return torch.randn(1, 12, 32), torch.randn(1, 12, 32), torch.randn(1, 4, 12, 16), torch.randn(1, 35, 12, 16)


def test_the_refinement_starts_unchanged():
    torch.manual_seed(0)
    plain, refined = MotionHead(32, 16, evidence_channels=4), MotionHead(32, 16, evidence_channels=4, guide_channels=35)
    refined.load_state_dict(plain.state_dict(), strict=False)
    tokens, tdm, evidence, guide = _inputs()
    torch.testing.assert_close(refined(tokens, tdm, (3, 4), evidence, guide), plain(tokens, tdm, (3, 4), evidence))
    torch.testing.assert_close(refined(tokens, tdm, (3, 4), None, guide), plain(tokens, tdm, (3, 4)))


def test_the_refinement_draws_the_mask_at_four_pixels_from_the_image():
    """Inside one token's 16 x 16 patch the mask follows the guide, and no gradient goes back
    into the guide (the matching features are the correspondence head's to learn)."""
    torch.manual_seed(0)
    head = MotionHead(32, 16, evidence_channels=4, guide_channels=35)
    for layer in head.refine:
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.normal_(layer.weight, std=0.3)
    tokens, tdm, evidence, guide = _inputs()
    guide.requires_grad_(True)
    prob = head(tokens, tdm, (3, 4), evidence, guide)
    assert prob.shape == (1, 48, 64)
    changed = guide.detach().clone()
    changed[..., 1, 1] += 5.0  # one 4 x 4 cell of the first token's patch
    other = head(tokens, tdm, (3, 4), evidence, changed)
    diff = (other - prob).detach().abs()[0]
    assert float(diff[4:8, 4:8].max()) > 1e-3  # the cell itself
    assert float(diff[:16, :16].max()) > 10 * float(diff[:16, :16].min()) + 1e-6  # varies inside the patch
    assert float(diff[:, 48:].max()) == 0.0  # beyond the receptive field (11 cells): untouched
    prob.sum().backward()
    assert guide.grad is None
    assert all(p.grad is not None for p in head.refine.parameters())


def test_the_model_refines_from_frame_zero_and_trains_the_refinement():
    model = build_procrustes(motion_refine=True)
    for layer in model.motion_head.refine:
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.normal_(layer.weight, std=0.1)
    base = build_procrustes(motion_refine=False)
    base.load_state_dict(model.state_dict(), strict=False)
    frames = torch.rand(3, 1, 3, 96, 128)
    state, plain = model.init_state(1, (96, 128)), base.init_state(1, (96, 128))
    for t in range(3):
        out, state = model.step(frames[t], state)
        ref, plain = base.step(frames[t], plain)
        assert out.dynamic_prob.shape == (1, 96, 128)
        assert not torch.allclose(out.dynamic_prob, ref.dynamic_prob)  # frame 0 too (zero evidence)
        torch.testing.assert_close(out.depth, ref.depth)
        torch.testing.assert_close(out.cam2world, ref.cam2world)


def test_init_from_adds_the_refinement_fresh(tmp_path):
    from mem4d.train.recipe import Recipe
    from mem4d.train.trainer import build_model

    build_procrustes().save_pretrained(tmp_path / "base")
    recipe = Recipe.from_dict({"model": {"init_from": str(tmp_path / "base"),
                                         "overrides": {"heads": {"motion_refine": True}}}})
    model = build_model(recipe)
    assert model.init_report == {"fresh": ["motion_head.refine"], "dropped": []}
    assert model.config.heads.motion_refine


@pytest.mark.parametrize("heads", [{"camera_pose": "absolute"}, {"camera_pose": "procrustes", "motion": False}])
def test_the_refinement_needs_the_correspondence_head_and_the_motion_head(heads):
    with pytest.raises(ValueError, match="motion_refine"):
        HeadsConfig(motion_refine=True, **heads)


def test_epipolar_distance_is_zero_for_static_matches_whatever_their_depth():
    """True matches of static cells lie on their epipolar lines, and so do the matches a wrong
    depth would predict; matches moved off them by 3 pixels read about 2-3 pixels."""
    from mem4d.data.synthetic import make_scene
    from mem4d.geometry.se3 import cam_a2cam_b
    from mem4d.losses.flow import flow_targets
    from mem4d.losses.objective import Targets
    from mem4d.model.procrustes_pose import cell_centres, epipolar_distance

    s = make_scene(5, 2, image_size=(96, 128), dynamic=True, num_objects=3, camera_speed=3.0)
    t = Targets.from_samples([s])
    flow, supervised, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics,
                                          t.dynamic_mask)
    motion = cam_a2cam_b(s.cam2world[1:2], s.cam2world[0:1])  # camera 1 -> camera 0
    K = t.intrinsics[:, 1]
    dist = epipolar_distance(flow[:, 0], motion, K)[:, 0]
    assert dist.shape == (1, 24, 32)
    cells = supervised[:, 0]
    assert float(dist[cells].median()) < 0.05
    # the rigid flow of a scene 1.5x farther: other matches, on the same lines
    c = cell_centres(24, 32, flow.device)[None]
    depth = torch.nn.functional.avg_pool2d(t.pts_cam[:, 1, ..., 2][:, None], 4)[:, 0] * 1.5
    rays = torch.cat([c, torch.ones_like(c[..., :1])], -1) @ torch.linalg.inv(K).transpose(1, 2)[:, None]
    x0 = (rays * depth[..., None]) @ motion[:, None, :3, :3].transpose(-1, -2) + motion[:, None, None, :3, 3]
    uv = x0 @ K[:, None].transpose(-1, -2)
    wrong = uv[..., :2] / uv[..., 2:] - c
    assert float((wrong - flow[:, 0])[cells].norm(dim=-1).median()) > 0.5  # the matches did move
    assert float(epipolar_distance(wrong, motion, K)[:, 0][cells].median()) < 0.05
    # 3 pixels off in x or in y: one of the two is at least 3 / sqrt(2) off any line
    shifted = [epipolar_distance(flow[:, 0] + torch.tensor(d), motion, K)[:, 0] for d in ([3.0, 0.0], [0.0, 3.0])]
    off = torch.maximum(*shifted)[cells]
    assert 1.5 < float(off.median()) <= 3.0 * 128 / 128 + 0.1


def test_the_epipolar_channel_needs_the_refinement_and_feeds_it():
    with pytest.raises(ValueError, match="motion_epipolar"):
        HeadsConfig(camera_pose="procrustes", motion_epipolar=True)
    model = build_procrustes(motion_refine=True, motion_epipolar=True)
    assert model.motion_head.refine[0].in_channels == 1 + 4 + 32 + 3 + 1
    seen = []
    real = model.motion_head.forward

    def spy(*args):
        seen.append(args[4].detach())
        return real(*args)

    model.motion_head.forward = spy
    state = model.init_state(1, (96, 128))
    for frame in torch.rand(2, 1, 3, 96, 128):
        _, state = model.step(frame, state)
    assert [g.shape[1] for g in seen] == [36, 36]
    assert float(seen[0][:, -1].abs().max()) == 0.0  # frame 0: no motion, no distance
    assert float(seen[1][:, -1].max()) > 0.0
