"""``heads.camera_pose = "procrustes"``: the pose is the chained weighted rigid fit of frame t's
self-view points onto frame t-1's at the correspondence head's matches."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import build_procrustes, make_clip

from mem4d.config import Mem4DConfig
from mem4d.data.synthetic import make_scene
from mem4d.geometry.camera import depth_to_pts_cam
from mem4d.geometry.rotation import rotation_angle
from mem4d.geometry.se3 import cam_a2cam_b, transform_points
from mem4d.losses.flow import flow_targets
from mem4d.losses.objective import Mem4DObjective, Targets
from mem4d.model.mem4d import Mem4D
from mem4d.model.procrustes_pose import fit_points, procrustes_motion, scale_gradient
from mem4d.model.state import StreamState


def test_exact_pointmaps_and_flow_give_the_true_motion():
    s = make_scene(11, 2, image_size=(96, 128), dynamic=True, camera_speed=3.0)
    t = Targets.from_samples([s])
    flow, supervised, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics,
                                          t.dynamic_mask)
    motion = procrustes_motion(t.pts_cam[:, 1], t.pts_cam[:, 0], flow[:, 0], supervised[:, 0].float())
    truth = cam_a2cam_b(s.cam2world[1:2], s.cam2world[0:1])  # camera 1 -> camera 0
    angle = torch.rad2deg(rotation_angle(truth[:, :3, :3].transpose(1, 2) @ motion[:, :3, :3]))
    assert float(angle) < 0.2
    assert float((motion[:, :3, 3] - truth[:, :3, 3]).norm()) < 0.01 * float(truth[:, :3, 3].norm()) + 2e-3
    # the identity is far worse: the test is not passed by doing nothing
    assert float(torch.rad2deg(rotation_angle(truth[:, :3, :3]))) > 1.0 or float(truth[:, :3, 3].norm()) > 0.05


@pytest.mark.parametrize("fit_points", ["depth", "pointmap"])
def test_outputs_are_consistent_and_frame0_is_the_identity(fit_points):
    model = build_procrustes(fit_points=fit_points)
    assert model.head_world is None and model.correspondence is not None
    with torch.no_grad():
        out = model(make_clip(4, B=2, seed=3))
    # the world pointmap is the fit's points placed by the pose: the depth on the intrinsics' rays, or pts_cam
    posed = depth_to_pts_cam(out.depth, out.intrinsics) if fit_points == "depth" else out.pts_cam
    torch.testing.assert_close(out.pts_world, transform_points(out.cam2world[:, :, None, None], posed))
    if fit_points == "depth":  # an untrained pointmap head's rays are its own: the option changes something
        assert not torch.allclose(posed, out.pts_cam, atol=1e-3)
    assert torch.equal(out.conf_world, out.conf_cam)
    assert torch.equal(out.cam2world[:, 0], torch.eye(4).expand(2, 4, 4))
    assert out.flow.shape == (2, 4, 12, 16, 2) and out.flow_weight.shape == (2, 4, 12, 16)
    assert torch.equal(out.flow_weight[:, 0], torch.zeros(2, 12, 16))
    assert ((out.flow_weight[:, 1:] > 0) & (out.flow_weight[:, 1:] < 1)).all()
    R = out.cam2world[..., :3, :3]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand_as(R), atol=1e-5, rtol=0)


def test_stream_is_causal_and_resumes_from_a_saved_state(tmp_path):
    model = build_procrustes(1)
    clip = make_clip(5, seed=4)
    changed = clip.clone()
    changed[:, 3:] = 1 - changed[:, 3:]
    with torch.no_grad():
        full, other = model(clip), model(changed)
        _, state = model.stream(clip[:, :2])
    torch.testing.assert_close(other.cam2world[:, :3], full.cam2world[:, :3])  # frames 0-2 never see frames 3-4
    assert not torch.allclose(other.cam2world[:, 3:], full.cam2world[:, 3:])
    assert state.prev_match_feats is not None and state.prev_pts_cam is not None
    state.save(tmp_path / "s.safetensors")
    loaded = StreamState.load(tmp_path / "s.safetensors")
    with torch.no_grad():
        rest, _ = model.stream(clip[:, 2:], loaded)
    torch.testing.assert_close(rest.cam2world, full.cam2world[:, 2:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest.pts_world, full.pts_world[:, 2:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("through", [0.0, 0.5])
@pytest.mark.parametrize("output", ["pose", "world points"])
def test_the_pose_loss_trains_matching_weights_and_depth_only_as_asked(through, output):
    """heads.depth_grad_from_pose: the gradient of the pose and of the world pointmap reaches the
    matches and weights always, the depth head only when asked (0, the default: not at all).
    Without the PSM, whose memory of earlier frames' points is another (legitimate) path from
    the depth to a later pose."""
    torch.manual_seed(2)
    cfg = dataclasses.replace(Mem4DConfig.tiny(), variant="no_psm")
    model = Mem4D(dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, camera_pose="procrustes",
                                                                     depth_grad_from_pose=through))).train()
    with torch.no_grad():  # as after some training: the head's zero-initialised last layer has moved
        model.correspondence.head[-1].weight.normal_(0, 0.01)
    out = model(make_clip(3, seed=5))
    (out.cam2world[:, 2, :3, 3] if output == "pose" else out.pts_world[:, 2]).sum().backward()
    assert model.correspondence.head[-1].weight.grad.abs().sum() > 0
    assert model.correspondence.fnet[0].weight.grad.abs().sum() > 0
    depth_grad = model.head_cam.dpt.out_conv3.weight.grad
    if through == 0:
        assert depth_grad is None or depth_grad.abs().sum() == 0
    else:
        assert depth_grad is not None and depth_grad.abs().sum() > 0


def test_scale_gradient_keeps_the_value_and_scales_the_gradient():
    x = torch.randn(5, requires_grad=True)
    for s in (0.0, 0.25, 1.0):
        x.grad = None
        y = scale_gradient(x, s)
        torch.testing.assert_close(y, x)
        if y.requires_grad:
            (3 * y).sum().backward()
        expected = torch.full((5,), 3 * s)
        torch.testing.assert_close(x.grad if x.grad is not None else torch.zeros(5), expected)


def test_objective_supervises_the_flow_and_the_weights():
    s = make_scene(2, 3, image_size=(48, 64), dynamic=True, camera_speed=2.0)
    targets = Targets.from_samples([s])
    model = build_procrustes(3).train()
    _, terms = Mem4DObjective()(model(s.images[None]), targets)
    assert terms["flow"] > 0 and terms["flow_weight"] > 0
    gt, supervised, frac, _ = flow_targets(targets.pts_world, targets.pts_cam[..., 2], targets.valid,
                                           targets.cam2world, targets.intrinsics, targets.dynamic_mask)
    assert supervised.any()
    from mem4d.losses.flow import flow_losses

    perfect_flow = torch.cat([torch.zeros_like(gt[:, :1]), gt], 1)
    perfect_weight = torch.cat([torch.zeros_like(frac[:, :1]), (frac >= 0.75).float()], 1)
    exact = flow_losses(perfect_flow, perfect_weight, targets)
    assert float(exact["flow"]) < 1e-4 and float(exact["flow_weight"]) < 1e-3
    single = flow_losses(perfect_flow[:, :1], perfect_weight[:, :1], targets)
    assert float(single["flow"]) == 0.0


def test_flow_targets_exclude_moving_and_occluded_pixels():
    s = make_scene(5, 2, image_size=(96, 128), dynamic=True, num_objects=3, camera_speed=2.0)
    t = Targets.from_samples([s])
    _, with_masks, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics,
                                       t.dynamic_mask)
    _, without, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics, None)
    moving_cells = torch.nn.functional.avg_pool2d(t.dynamic_mask[:, 1].float()[:, None], 4)[:, 0] > 0.5
    assert moving_cells.any()
    assert not (with_masks[:, 0] & moving_cells).any()
    assert without.sum() > with_masks.sum()


def test_init_from_a_model_with_a_world_head(tmp_path):
    from mem4d.train.recipe import Recipe
    from mem4d.train.trainer import build_model

    torch.manual_seed(0)
    base = Mem4D(Mem4DConfig.tiny())
    base.save_pretrained(tmp_path / "base")
    recipe = Recipe.from_dict({"model": {"init_from": str(tmp_path / "base"),
                                         "overrides": {"heads": {"camera_pose": "procrustes"}}}})
    model = build_model(recipe)
    assert model.init_report == {"fresh": ["correspondence", "motion_head.evidence"], "dropped": ["head_world"]}
    loaded = Mem4D.from_pretrained(tmp_path / "base").state_dict()
    own = model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in loaded.items() if not k.startswith("head_world."))


def test_procrustes_models_save_and_load(tmp_path):
    model = build_procrustes(4)
    model.save_pretrained(tmp_path / "m")
    again = Mem4D.from_pretrained(tmp_path / "m").eval()
    clip = make_clip(3, seed=6)
    with torch.no_grad():
        torch.testing.assert_close(again(clip).cam2world, model(clip).cam2world)


@pytest.mark.parametrize("bad", [{"flow_radius": 0}, {"flow_levels": 0}, {"camera_pose": "flow"}])
def test_bad_correspondence_settings_are_rejected(bad):
    from mem4d.config import HeadsConfig

    with pytest.raises(ValueError):
        HeadsConfig(**bad)


def test_motion_evidence_marks_a_moving_object():
    """Exact geometry: cells on a moving object disagree with the camera's rigid motion, static ones do not."""
    from mem4d.model.procrustes_pose import motion_evidence

    s = make_scene(5, 2, image_size=(96, 128), dynamic=True, num_objects=3, camera_speed=2.0, object_speed=3.0)
    t = Targets.from_samples([s])
    flow_static, supervised, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics,
                                                 t.dynamic_mask)
    motion = cam_a2cam_b(s.cam2world[1:2], s.cam2world[0:1])
    # the true optical flow of moving pixels: their own motion, from the scene flow of frame 0
    ev = motion_evidence(t.pts_cam[:, 1], t.pts_cam[:, 0], flow_static[:, 0], supervised[:, 0].float(), motion,
                         s.intrinsics[0:1])
    assert ev.shape == (1, 4, 24, 32)
    static_cells = supervised[0, 0]
    assert float(ev[0, :2].norm(dim=0)[static_cells].median()) < 0.1  # rigid flow = true flow on static cells
    assert float(ev[0, 3][static_cells].max()) == 0.0


def test_motion_head_starts_unchanged_by_the_evidence_branch():
    from mem4d.model.motion_head import MotionHead

    torch.manual_seed(0)
    plain, with_evidence = MotionHead(32, 16), MotionHead(32, 16, evidence_channels=4)
    with_evidence.load_state_dict(plain.state_dict(), strict=False)
    tokens, tdm = torch.randn(1, 12, 32), torch.randn(1, 12, 32)
    evidence = torch.randn(1, 4, 12, 16)
    torch.testing.assert_close(with_evidence(tokens, tdm, (3, 4), evidence), plain(tokens, tdm, (3, 4)))
    with torch.no_grad():
        with_evidence.evidence[-1].bias.fill_(1.0)
    assert (with_evidence(tokens, tdm, (3, 4), evidence) > plain(tokens, tdm, (3, 4))).all()


def test_refinement_starts_from_the_networks_motion(monkeypatch):
    """With refinement on, a procrustes model hands its own motion t-1 -> t to the alignment as a start."""
    import mem4d.model.mem4d as mem4d_module

    torch.manual_seed(0)
    cfg = Mem4DConfig.tiny()
    cfg = dataclasses.replace(cfg, heads=dataclasses.replace(cfg.heads, camera_pose="procrustes",
                                                             pose_refinement="photometric"))
    model = Mem4D(cfg).eval()
    seen = []
    real = mem4d_module.refine_pose

    def spy(frame, out, state, new_state, **kw):
        if state.frame_index > 0:
            expected = torch.linalg.inv(out.cam2world.float()) @ state.cam2world.float()
            seen.append(torch.allclose(kw["start_a2b"], expected, atol=1e-5))
        return real(frame, out, state, new_state, **kw)

    monkeypatch.setattr(mem4d_module, "refine_pose", spy)
    with torch.no_grad():
        out = model(make_clip(3, seed=8))
    assert seen == [True, True]
    torch.testing.assert_close(out.pts_world, transform_points(out.cam2world[:, :, None, None], out.pts_cam))


def test_fixed_patch_features_match_from_the_start():
    """Before any training, the parameter-free coarse-to-fine search already finds the motion."""
    from mem4d.model.correspondence import CorrespondenceHead, patch_features, quarter_image

    head = CorrespondenceHead(32)
    errors, still = [], []
    for seed in (900001, 900003):  # a small and a large (~19 px) motion
        s = make_scene(seed, 2, image_size=(96, 128), camera_speed=2.0, loop_frames=48)
        t = Targets.from_samples([s])
        gt, supervised, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics,
                                            t.dynamic_mask)
        image = quarter_image(s.images)
        assert image.shape == (2, 3, 24, 32)
        f = patch_features(image, 1)
        assert f.shape == (2, 27, 12, 16)
        torch.testing.assert_close(f.norm(dim=1), torch.ones(2, 12, 16), atol=1e-4, rtol=0)
        flow = 4 * head.coarse_to_fine(head._fixed(image[1:], image[:1]))[0].permute(1, 2, 0)
        errors.append(float((flow - gt[0, 0]).norm(dim=-1)[supervised[0, 0]].median()))
        still.append(float(gt[0, 0].norm(dim=-1)[supervised[0, 0]].median()))
    assert errors[0] < 0.6 * still[0] and errors[1] < 0.8 * still[1], (errors, still)  # both better than no motion


def test_reprojection_steps_recover_the_motion_from_exact_matches_and_noisy_depth():
    """Frame t-1's depth is off by a smooth 15 % ripple: the rigid fit is pulled, the reprojection
    steps (which only need frame t's depth) come back close to the truth."""
    s = make_scene(12, 2, image_size=(96, 128), dynamic=False, camera_speed=3.0)
    t = Targets.from_samples([s])
    flow, supervised, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics, None)
    ys = torch.linspace(0, 3.14, 96)[:, None]
    noisy_prev = t.pts_cam[:, 0] * (1 + 0.15 * torch.sin(ys * 2 + torch.linspace(0, 6, 128)[None]))[None, :, :, None]
    truth = cam_a2cam_b(s.cam2world[1:2], s.cam2world[0:1])
    errors = []
    for iters in (0, 3):
        motion = procrustes_motion(t.pts_cam[:, 1], noisy_prev, flow[:, 0], supervised[:, 0].float(),
                                   intrinsics=s.intrinsics[:1], reprojection_iters=iters)
        errors.append(float((motion[:, :3, 3] - truth[:, :3, 3]).norm()))
    assert errors[1] < 0.5 * errors[0] and errors[1] < 0.1 * float(truth[:, :3, 3].norm()) + 2e-3, errors
    with pytest.raises(ValueError, match="intrinsics"):
        procrustes_motion(t.pts_cam[:, 1], noisy_prev, flow[:, 0], supervised[:, 0].float(), reprojection_iters=2)


def test_reprojection_steps_never_raise_the_cost_or_jump_far():
    """Random matches (as early in training): the guarded steps keep the camera near its start."""
    from mem4d.model.procrustes_pose import reprojection_refine

    g = torch.Generator().manual_seed(0)
    p = torch.cat([torch.rand(2, 200, 2, generator=g) - 0.5, 1 + torch.rand(2, 200, 1, generator=g)], -1)
    target = torch.rand(2, 200, 2, generator=g) * torch.tensor([128.0, 96.0])
    K = torch.tensor([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]]).expand(2, 3, 3)
    start = torch.eye(4).expand(2, 4, 4)
    moved = reprojection_refine(start, p, target, torch.ones(2, 200), K, 5, 2.0)
    bound = 5 * 0.1 * p[..., 2].median(dim=-1).values  # 5 steps of at most 10 % of the median depth each
    assert (moved[:, :3, 3].norm(dim=-1) <= bound + 1e-5).all()
    assert torch.isfinite(moved).all()


def test_depth_fit_points_survive_a_pointmap_whose_rays_disagree_with_the_intrinsics():
    """``heads.fit_points = "depth"``: a pointmap head whose x/y spread is off (here 15 % too wide)
    but whose depth is right still gives the true motion; its own points do not."""
    s = make_scene(11, 2, image_size=(96, 128), dynamic=True, camera_speed=3.0)
    t = Targets.from_samples([s])
    flow, supervised, _, _ = flow_targets(t.pts_world, t.pts_cam[..., 2], t.valid, t.cam2world, t.intrinsics,
                                          t.dynamic_mask)
    wide = t.pts_cam * torch.tensor([1.15, 1.15, 1.0])  # (B, T, H, W, 3): right depth, wrong rays
    truth = cam_a2cam_b(s.cam2world[1:2], s.cam2world[0:1])
    errors = {}
    for source in ("depth", "pointmap"):
        p, q = (fit_points(wide[:, i], t.intrinsics[:, i], source, 1.0) for i in (1, 0))
        motion = procrustes_motion(p, q, flow[:, 0], supervised[:, 0].float(), intrinsics=t.intrinsics[:, 0],
                                   reprojection_iters=3)
        errors[source] = float(torch.rad2deg(rotation_angle(truth[:, :3, :3].transpose(1, 2) @ motion[:, :3, :3])))
    assert errors["depth"] < 0.2 < errors["pointmap"]


def test_fit_points_scale_the_depth_gradient_and_keep_the_intrinsics():
    grads = {}
    for scale in (1.0, 0.5, 0.0):
        pts = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
        K = torch.tensor([[[10.0, 0, 4], [0, 10, 4], [0, 0, 1]]], requires_grad=True)
        fit_points(pts, K, "depth", scale).square().sum().backward()
        grads[scale] = (torch.zeros_like(pts) if pts.grad is None else pts.grad, K.grad)
    assert torch.equal(grads[1.0][0][..., :2], torch.zeros(1, 8, 8, 2))  # only the depth is read
    torch.testing.assert_close(grads[0.5][0], 0.5 * grads[1.0][0])
    assert torch.equal(grads[0.0][0], torch.zeros(1, 8, 8, 3))
    for scale in (0.5, 0.0):  # the intrinsics keep their whole gradient
        torch.testing.assert_close(grads[scale][1], grads[1.0][1])


def test_chained_refined_poses_stay_rotations_over_a_long_stream():
    """The refinement's first start is the network's motion, read off the chained poses; without
    re-projecting each chained pose onto SO(3) its float32 error fed back through that start and
    grew (|R R^T - I| 0.08 after 40 frames of the shipped procrustes candidate; the scene memory
    refuses such a pose)."""
    model = build_procrustes(seed=2, pose_refinement="photometric")
    frames = make_scene(seed=4, num_frames=40, image_size=(48, 64), dynamic=True, camera_path="loop").images
    state, worst = model.init_state(1, (48, 64)), 0.0
    with torch.no_grad():
        for t in range(frames.shape[0]):
            out, state = model.step(frames[t][None], state)
            R = out.cam2world[0, :3, :3].double()
            worst = max(worst, float((R @ R.T - torch.eye(3, dtype=R.dtype)).abs().max()))
    assert worst < 1e-5, worst
