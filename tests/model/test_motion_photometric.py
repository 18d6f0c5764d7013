"""``heads.motion_photometric``: after the photometric pose refinement the motion head rechecks
its mask against the photometric residual under the refined motion."""

from __future__ import annotations

import pytest
import torch
from conftest import build_procrustes

from mem4d.config import HeadsConfig
from mem4d.geometry.photometric import warp_residual
from mem4d.model.motion_head import MotionHead


def _scene(T: int = 3):
    from mem4d.data.synthetic import make_scene

    return make_scene(11, T, image_size=(64, 96), dynamic=True, num_objects=2, camera_speed=4.0)


def test_warp_residual_is_zero_for_the_true_motion_on_static_pixels_and_large_on_movers():
    from mem4d.geometry.se3 import cam_a2cam_b

    s = _scene()
    b2a = cam_a2cam_b(s.cam2world[1:2], s.cam2world[0:1])  # camera 1 -> camera 0
    residual, inside = warp_residual(s.images[1:2], s.depth[1:2], s.images[0:1], s.intrinsics[1:2], b2a)
    assert residual.shape == inside.shape == (1, 64, 96)
    static = inside[0] & ~s.dynamic_mask[1] & s.valid[1]
    moving = inside[0] & s.dynamic_mask[1]
    assert static.float().mean() > 0.5 and moving.sum() > 20
    assert float(residual[0][static].median()) < 0.06  # in standard deviations of the image
    assert float(residual[0][moving].mean()) > 3 * float(residual[0][static].mean())
    # a wrong motion (no motion at all) leaves a residual on the static pixels too
    still, _ = warp_residual(s.images[1:2], s.depth[1:2], s.images[0:1], s.intrinsics[1:2], torch.eye(4)[None])
    assert float(still[0][static].mean()) > 1.5 * float(residual[0][static].mean())
    assert float(residual[0][~inside[0]].abs().max()) == 0.0


def test_warp_residual_ignores_a_global_change_of_exposure():
    from mem4d.geometry.se3 import cam_a2cam_b

    s = _scene()
    b2a = cam_a2cam_b(s.cam2world[1:2], s.cam2world[0:1])
    plain, _ = warp_residual(s.images[1:2], s.depth[1:2], s.images[0:1], s.intrinsics[1:2], b2a)
    darker, _ = warp_residual(s.images[1:2], s.depth[1:2], 0.6 * s.images[0:1] + 0.05, s.intrinsics[1:2], b2a)
    torch.testing.assert_close(darker, plain, atol=1e-3, rtol=1e-3)


def test_the_recheck_starts_unchanged_and_reads_the_residual():
    torch.manual_seed(0)
    head = MotionHead(32, 16, evidence_channels=4, guide_channels=35, photometric=True)
    prob = torch.rand(1, 48, 64) * 0.98 + 0.01
    residual, inside, guide = torch.rand(1, 48, 64), torch.ones(1, 48, 64, dtype=torch.bool), 0.2 * torch.randn(1, 35, 12, 16)
    torch.testing.assert_close(head.recheck(prob, residual, inside, guide), prob, atol=1e-5, rtol=1e-4)
    for layer in head.recheck_stack:
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.normal_(layer.weight, std=0.15)
    guide.requires_grad_(True)
    out = head.recheck(prob, residual, inside, guide)
    changed = residual.clone()
    changed[0, 4:8, 4:8] += 1.0  # one 4 x 4 cell
    diff = (head.recheck(prob, changed, inside, guide) - out).detach().abs()[0]
    assert float(diff[4:8, 4:8].max()) > 1e-3
    assert float(diff[:, 48:].max()) == 0.0  # beyond the receptive field (11 cells): untouched
    out.sum().backward()
    assert guide.grad is None
    assert all(p.grad is not None for p in head.recheck_stack.parameters())


def _side_by_side(model, base, frames):
    """Streams ``frames`` (T, 1, 3, H, W) through both models: yields (t, out, its new state, base's out)."""
    state, plain = model.init_state(1, frames.shape[-2:]), base.init_state(1, frames.shape[-2:])
    with torch.no_grad():
        for t in range(len(frames)):
            out, state = model.step(frames[t], state)
            ref, plain = base.step(frames[t], plain)
            yield t, out, state, ref


def test_the_model_rechecks_only_after_the_refinement_and_the_mask_weights_the_next_alignment():
    model = build_procrustes(motion_refine=True, motion_photometric=True, pose_refinement="photometric")
    for layer in model.motion_head.recheck_stack:
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.normal_(layer.weight, std=0.1)
    base = build_procrustes(motion_refine=True, pose_refinement="photometric")
    base.load_state_dict(model.state_dict(), strict=False)
    frames = torch.rand(3, 1, 3, 64, 96)
    for t, out, state, ref in _side_by_side(model, base, frames):
        torch.testing.assert_close(out.depth, ref.depth)
        if t == 0:  # nothing to recheck against: the refined mask as it was
            torch.testing.assert_close(out.dynamic_prob, ref.dynamic_prob)
        else:
            assert not torch.allclose(out.dynamic_prob, ref.dynamic_prob)
        torch.testing.assert_close(state.prev_weight, 1 - out.dynamic_prob)
    # without the photometric refinement the recheck does not run
    model.config.heads.pose_refinement = base.config.heads.pose_refinement = "none"
    for _, out, _, ref in _side_by_side(model, base, frames[:2]):
        torch.testing.assert_close(out.dynamic_prob, ref.dynamic_prob)


def test_the_recheck_needs_the_refinement_guide():
    with pytest.raises(ValueError, match="motion_photometric"):
        HeadsConfig(camera_pose="procrustes", motion_photometric=True)
    with pytest.raises(ValueError, match="guide"):
        MotionHead(32, 16, photometric=True)
