"""The synthetic generator's ground truth is exact: depth, poses, pointmaps, masks and scene flow agree.

Every check goes through `mem4d.geometry` (projection, unprojection, SE(3)), independently of the
renderer's own ray maths.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from mem4d.data.sample import Sample
from mem4d.data.synthetic import ENVIRONMENTS, PATH_KINDS, make_scene, world_pointmap
from mem4d.data.synthetic.generate import build_layout
from mem4d.data.synthetic.render import Renderer
from mem4d.geometry.camera import depth_to_pts_world, fov_to_intrinsics, project
from mem4d.geometry.se3 import se3_inverse, transform_points

SIZE = (48, 64)


@pytest.fixture(scope="module")
def dynamic_scene() -> Sample:
    return make_scene(7, 10, (96, 128), camera_path="handheld", environment="room", num_objects=3)


@pytest.fixture(scope="module")
def courtyard_scene() -> Sample:
    return make_scene(11, 8, (72, 96), camera_path="orbit", environment="courtyard", num_objects=2)


def _sample_inverse_depth(depth: torch.Tensor, uv: torch.Tensor):
    """Bilinear inverse depth at sub-pixel uv (N, 2), plus the 4 neighbour indices (N, 4) (-1 outside).

    Inverse depth is affine in pixel coordinates on a plane, so this is exact inside planar regions.
    """
    H, W = depth.shape
    u0 = torch.floor(uv[:, 0]).long()
    v0 = torch.floor(uv[:, 1]).long()
    fu = uv[:, 0] - u0
    fv = uv[:, 1] - v0
    inside = (u0 >= 0) & (v0 >= 0) & (u0 + 1 < W) & (v0 + 1 < H)
    u0c, v0c = u0.clamp(0, W - 2), v0.clamp(0, H - 2)
    idx = torch.stack([v0c * W + u0c, v0c * W + u0c + 1, (v0c + 1) * W + u0c, (v0c + 1) * W + u0c + 1], -1)
    d = depth.reshape(-1)[idx]
    inv = torch.where(d > 0, 1.0 / d.clamp_min(1e-9), 0.0)
    w = torch.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], -1)
    inv_interp = (inv * w).sum(-1)
    idx = torch.where(inside[:, None], idx, -1)
    return inv_interp, idx


def _planar(depth: torch.Tensor, ok: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood is `ok` and lies on one plane (inverse depth affine in u, v)."""
    inv = torch.where(ok, 1.0 / depth.clamp_min(1e-9), 0.0).double()
    c = inv[1:-1, 1:-1]
    dxx = inv[1:-1, 2:] - 2 * c + inv[1:-1, :-2]
    dyy = inv[2:, 1:-1] - 2 * c + inv[:-2, 1:-1]
    dxy = inv[2:, 2:] - inv[2:, :-2] - inv[:-2, 2:] + inv[:-2, :-2]
    flat = (dxx.abs() <= tol * c) & (dyy.abs() <= tol * c) & (dxy.abs() <= tol * c)
    all_ok = F.max_pool2d((~ok).float()[None, None], 3, stride=1)[0, 0] == 0
    out = torch.zeros_like(ok)
    out[1:-1, 1:-1] = flat & all_ok
    return out


def _reprojection_check(src_pts_world, dst_depth, dst_ok, dst_cam2world, K):
    """Projects world points into a frame: (projected depth, depth sampled there, usable mask).

    Usable: the point lands in front of the camera, inside a planar patch of `dst_ok` pixels, where
    bilinear interpolation of inverse depth is exact (no depth edge, crease or curved surface).
    """
    pts_cam = transform_points(se3_inverse(dst_cam2world), src_pts_world)
    z = pts_cam[:, 2]
    uv = project(K, pts_cam)
    inv, idx = _sample_inverse_depth(dst_depth, uv)
    planar = _planar(dst_depth, dst_ok).reshape(-1)
    usable = (idx >= 0).all(-1) & planar[idx.clamp_min(0)].all(-1) & (z > 0.05) & (inv > 0)
    sampled = torch.where(inv > 0, 1.0 / inv.clamp_min(1e-9), 0.0)
    return z, sampled, usable


def test_sample_is_valid_with_expected_fields(dynamic_scene):
    s = dynamic_scene
    T, H, W = 10, 96, 128
    s.validate()
    assert s.images.shape == (T, 3, H, W) and s.images.dtype == torch.float32
    assert s.depth.shape == (T, H, W) and s.valid.dtype == torch.bool
    assert s.intrinsics.shape == (T, 3, 3) and s.cam2world.shape == (T, 4, 4)
    assert s.dynamic_mask.dtype == torch.bool and s.instance_ids.dtype == torch.int64
    assert s.scene_flow.shape == (T, H, W, 3)
    assert torch.equal(s.cam2world[0], torch.eye(4))
    assert (s.depth[~s.valid] == 0).all() and (s.depth[s.valid] > 0).all()
    for key in ("seed", "camera_path", "camera_speed", "num_objects", "environment", "noise", "blur", "fov_deg"):
        assert key in s.meta
    assert s.meta["camera_path"] == "handheld" and s.meta["environment"] == "room"


def test_intrinsics_follow_fov_convention(dynamic_scene):
    H, W = 96, 128
    import math

    fov_x = math.radians(dynamic_scene.meta["fov_deg"])
    K = dynamic_scene.intrinsics[0]
    fov_y = 2 * math.atan((H / 2) / float(K[0, 0]))
    torch.testing.assert_close(K, fov_to_intrinsics(fov_x, fov_y, H, W).to(K.dtype), atol=1e-4, rtol=1e-5)
    assert (dynamic_scene.intrinsics == K).all()


def test_world_pointmap_is_the_hit_surface():
    """Unprojected depth equals the renderer's surface points, computed from each primitive's pose."""
    layout, _ = build_layout(3, 6, SIZE, camera_path="orbit", environment="room", num_objects=3)
    out = Renderer(layout, SIZE).render(surface_points=True)
    pts = depth_to_pts_world(out["depth"], out["intrinsics"], out["cam2world"])
    valid = out["valid"]
    err = (pts - out["surface_points"]).norm(dim=-1)[valid]
    scale = out["depth"][valid]
    assert (err / scale).max() < 1e-4
    sample = make_scene(3, 6, SIZE, camera_path="orbit", environment="room", num_objects=3)
    torch.testing.assert_close(world_pointmap(sample)[sample.valid], pts[valid])
    assert (world_pointmap(sample)[~sample.valid] == 0).all()


@pytest.mark.parametrize("scene", ["dynamic_scene", "courtyard_scene"])
def test_static_pixels_reproject_onto_the_same_surface(scene, request):
    s: Sample = request.getfixturevalue(scene)
    pts = world_pointmap(s)
    static_ok = s.valid & ~s.dynamic_mask
    K = s.intrinsics[0]
    T = s.num_frames
    agree = usable_total = behind = 0
    for i, j in [(0, T - 1), (T - 1, 0), (2, 5), (5, 3)]:
        src = pts[i][static_ok[i]]
        z, sampled, usable = _reprojection_check(src, s.depth[j], static_ok[j], s.cam2world[j], K)
        rel = (z - sampled) / z
        visible = usable & (rel.abs() < 1e-2)  # co-visible: not hidden behind something closer
        agree += int((visible & (rel.abs() < 1e-3)).sum())
        usable_total += int(visible.sum())
        behind += int((usable & (rel < -1e-2)).sum())  # seen *further* than the point itself: impossible
    assert usable_total > 500
    assert agree / usable_total > 0.95
    assert behind / usable_total < 0.01


@pytest.mark.parametrize("scene", ["dynamic_scene", "courtyard_scene"])
def test_scene_flow_carries_dynamic_points_to_their_next_position(scene, request):
    s: Sample = request.getfixturevalue(scene)
    pts = world_pointmap(s)
    K = s.intrinsics[0]
    agree = usable_total = 0
    for t in range(s.num_frames - 1):
        m = s.valid[t] & s.dynamic_mask[t]
        if not m.any():
            continue
        moved = pts[t][m] + s.scene_flow[t][m]
        nxt_ok = s.valid[t + 1] & s.dynamic_mask[t + 1]
        z, sampled, usable = _reprojection_check(moved, s.depth[t + 1], nxt_ok, s.cam2world[t + 1], K)
        rel = (z - sampled) / z
        visible = usable & (rel.abs() < 1e-2)
        agree += int((visible & (rel.abs() < 1e-3)).sum())
        usable_total += int(visible.sum())
        # without the flow, the same points do not land on the object (it really moves)
    assert usable_total > 50
    assert agree / usable_total > 0.9
    # flow is zero on static pixels and in the last frame, nonzero on moving ones
    assert (s.scene_flow[~s.dynamic_mask] == 0).all()
    assert (s.scene_flow[-1] == 0).all()
    moving = s.dynamic_mask[:-1]
    assert (s.scene_flow[:-1][moving].norm(dim=-1) > 1e-4).float().mean() > 0.9


def test_flow_is_needed_for_dynamic_points(dynamic_scene):
    """Control for the test above: dynamic points without their flow do not land on the object."""
    s = dynamic_scene
    pts = world_pointmap(s)
    K = s.intrinsics[0]
    with_flow = without = 0
    for t in range(s.num_frames - 1):
        m = s.valid[t] & s.dynamic_mask[t]
        nxt_ok = s.valid[t + 1] & s.dynamic_mask[t + 1]
        for moved, acc in ((pts[t][m] + s.scene_flow[t][m], "with"), (pts[t][m], "without")):
            z, sampled, usable = _reprojection_check(moved, s.depth[t + 1], nxt_ok, s.cam2world[t + 1], K)
            good = int((usable & (((z - sampled) / z).abs() < 1e-3)).sum())
            if acc == "with":
                with_flow += good
            else:
                without += good
    assert with_flow > 3 * max(without, 1)


def test_texture_is_attached_to_surfaces(dynamic_scene):
    """Photometric consistency: a static point has the same colour in another frame (Lambertian,
    texture in surface coordinates); a moving point keeps its colour when carried by its flow."""
    s = dynamic_scene
    pts = world_pointmap(s)
    K = s.intrinsics[0]
    H, W = s.image_size

    def colour_at(img, uv):
        grid = torch.stack([uv[:, 0] / (W - 1) * 2 - 1, uv[:, 1] / (H - 1) * 2 - 1], -1)
        return F.grid_sample(img[None], grid[None, None], align_corners=True)[0, :, 0].T

    for dyn in (False, True):
        diffs = []
        for t in range(s.num_frames - 1):
            m = s.valid[t] & (s.dynamic_mask[t] if dyn else ~s.dynamic_mask[t])
            src = pts[t][m] + (s.scene_flow[t][m] if dyn else 0)
            ok = s.valid[t + 1] & (s.dynamic_mask[t + 1] if dyn else ~s.dynamic_mask[t + 1])
            z, sampled, usable = _reprojection_check(src, s.depth[t + 1], ok, s.cam2world[t + 1], K)
            keep = usable & (((z - sampled) / z).abs() < 1e-3)
            uv = project(K, transform_points(se3_inverse(s.cam2world[t + 1]), src))[keep]
            before = s.images[t].permute(1, 2, 0)[m][keep]
            diffs.append((colour_at(s.images[t + 1], uv) - before).abs().mean(-1))
        d = torch.cat(diffs)
        assert d.numel() > 20
        assert d.median() < (0.03 if not dyn else 0.06), (dyn, float(d.median()))


def test_masks_and_instance_ids_agree(dynamic_scene, courtyard_scene):
    for s in (dynamic_scene, courtyard_scene):
        assert torch.equal(s.dynamic_mask, s.instance_ids > 0)
        ids = s.instance_ids.unique()
        assert ids.min() >= 0 and ids.max() <= s.meta["num_objects"]
        assert (s.instance_ids[~s.valid & (s.instance_ids > 0)]).numel() == 0  # moving pixels have depth
        assert s.meta["object_kinds"][0] == "walker"


def test_walker_parts_share_one_instance_id():
    layout, _ = build_layout(5, 4, SIZE, num_objects=1, environment="room")
    walker = [p for p in layout.prims if p.instance == 1]
    assert layout.objects[0].kind == "walker"
    assert {p.name.split(":")[1] for p in walker} == {"torso", "head", "left_leg", "right_leg", "left_arm", "right_arm"}
    # the limbs move relative to the torso (articulation), not rigidly with it
    torso = next(p for p in walker if p.name.endswith("torso")).local2scene
    leg = next(p for p in walker if p.name.endswith("left_leg")).local2scene
    rel = torch.from_numpy(torso).inverse() @ torch.from_numpy(leg)
    assert (rel[1:] - rel[:-1]).abs().max() > 1e-3


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_culling_is_exact(environment):
    """Tile culling (bounding spheres, projected boxes) never drops a primitive that a pixel sees."""
    for seed in range(2):
        layout, _ = build_layout(seed, 4, (40, 56), environment=environment, num_objects=4)
        fast = Renderer(layout, (40, 56), tile=8).render()
        slow = Renderer(layout, (40, 56), tile=8, cull=False).render()
        assert torch.equal(fast["depth"], slow["depth"]) and torch.equal(fast["instance_ids"], slow["instance_ids"])
        assert torch.equal(fast["images"], slow["images"])


def test_moving_objects_are_visible_and_move():
    seen = []
    for seed in range(6):
        s = make_scene(100 + seed, 12, (32, 48), num_objects=2)
        frac = s.dynamic_mask.flatten(1).any(-1).float().mean()
        seen.append(float(frac))
    assert sum(f > 0.3 for f in seen) >= 5, seen


def test_determinism_and_variety():
    a = make_scene(42, 5, (40, 56))
    b = make_scene(42, 5, (40, 56))
    for name, value in a.tensors().items():
        assert torch.equal(value, getattr(b, name)), name
    assert a.meta == b.meta
    c = make_scene(43, 5, (40, 56))
    assert not torch.equal(a.images, c.images)
    # fixing a knob to the value it would have taken randomly does not change the scene
    d = make_scene(42, 5, (40, 56), camera_path=a.meta["camera_path"], environment=a.meta["environment"])
    assert torch.equal(a.images, d.images)
    # tiling is a performance setting only
    e = make_scene(42, 5, (40, 56), tile=8)
    assert torch.equal(a.depth, e.depth) and torch.allclose(a.images, e.images, atol=1e-6)


def _grad(images):
    return (images[..., :, 1:] - images[..., :, :-1]).abs().mean() + (
        images[..., 1:, :] - images[..., :-1, :]
    ).abs().mean()


@pytest.mark.parametrize("environment,camera_path", list(itertools.product(ENVIRONMENTS, PATH_KINDS)))
def test_every_path_and_environment_renders(environment, camera_path):
    T = 8
    s = make_scene(3, T, (32, 40), camera_path=camera_path, environment=environment, num_objects=2, validate=True)
    assert s.meta["camera_path"] == camera_path and s.meta["environment"] == environment
    assert torch.isfinite(s.images).all() and torch.isfinite(s.scene_flow).all()
    assert s.valid.float().mean() > (0.95 if environment == "room" else 0.4)
    assert _grad(s.images) > 0.02  # textured
    assert s.depth[s.valid].min() > 0.25  # never inside or against an object
    assert s.dynamic_mask.any()
    centres = s.cam2world[:, :3, 3]
    steps = (centres[1:] - centres[:-1]).norm(dim=-1)
    if camera_path == "rotation":
        assert centres.abs().max() < 1e-5
    else:
        assert steps.mean() > 0.005
    if camera_path == "loop":
        # the last frame revisits the first views
        assert (centres[-1] - centres[0]).norm() < 0.5 * steps.sum() / 2


def test_loop_revisits_earlier_views():
    s = make_scene(9, 40, (24, 32), camera_path="loop", num_objects=0)
    c = s.cam2world
    d = (c[-1, :3, 3] - c[:5, :3, 3]).norm(dim=-1).min()
    path = (c[1:, :3, 3] - c[:-1, :3, 3]).norm(dim=-1).sum()
    assert d < 0.1 * path
    R = c[-1, :3, :3].T @ c[:5, :3, :3]
    angle = torch.acos(((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)).min()
    assert angle < 0.2


def _turn_per_frame_deg(c2w: torch.Tensor) -> torch.Tensor:
    R = c2w[:-1, :3, :3].transpose(-1, -2) @ c2w[1:, :3, :3]
    return torch.rad2deg(torch.acos(((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)))


def test_short_loop_clip_is_an_arc_of_a_loop_frames_long_loop():
    # By default a loop closes within the clip: 8 frames turn ~50 degrees each (no shared view).
    # With loop_frames=48 an 8-frame clip moves like the first frames of a 48-frame loop video.
    closed = make_scene(2, 8, (24, 32), camera_path="loop", num_objects=0)
    arc = make_scene(2, 8, (24, 32), camera_path="loop", num_objects=0, loop_frames=48)
    video = make_scene(2, 48, (24, 32), camera_path="loop", num_objects=0)
    assert _turn_per_frame_deg(closed.cam2world).min() > 30
    assert _turn_per_frame_deg(arc.cam2world).max() < 15
    assert torch.allclose(_turn_per_frame_deg(arc.cam2world).mean(), _turn_per_frame_deg(video.cam2world).mean(), rtol=0.3)
    assert arc.meta["camera"]["loop_frames"] == 48 and closed.meta["camera"]["loop_frames"] == 8
    for bad in (1, 2.5, True):
        with pytest.raises(ValueError, match="loop_frames"):
            make_scene(2, 8, (24, 32), camera_path="loop", loop_frames=bad)


def test_knobs_static_speed_fov_noise_blur():
    static = make_scene(4, 6, (32, 40), dynamic=False)
    assert not static.dynamic_mask.any() and (static.scene_flow == 0).all() and static.meta["num_objects"] == 0
    slow = make_scene(4, 6, (32, 40), camera_path="forward", camera_speed=0.5)
    fast = make_scene(4, 6, (32, 40), camera_path="forward", camera_speed=2.0)

    def length(s):
        return (s.cam2world[1:, :3, 3] - s.cam2world[:-1, :3, 3]).norm(dim=-1).sum()

    assert length(fast) > 2.5 * length(slow)
    narrow = make_scene(4, 2, (32, 40), fov_deg=40.0)
    wide = make_scene(4, 2, (32, 40), fov_deg=90.0)
    assert narrow.intrinsics[0, 0, 0] > 2 * wide.intrinsics[0, 0, 0]
    clean = make_scene(4, 3, (32, 40))
    noisy = make_scene(4, 3, (32, 40), noise=0.05, blur=1.0)
    assert not torch.equal(clean.images, noisy.images)
    assert torch.equal(clean.depth, noisy.depth) and torch.equal(clean.scene_flow, noisy.scene_flow)
    assert noisy.images.min() >= 0 and noisy.images.max() <= 1
    fov_scenes = {round(make_scene(s, 1, (16, 16)).meta["fov_deg"]) for s in range(5)}
    assert len(fov_scenes) > 1  # FoV varies between scenes


def test_any_resolution_and_single_frame():
    s = make_scene(1, 3, (37, 53))
    assert s.images.shape == (3, 3, 37, 53)
    one = make_scene(1, 1, (9, 11))
    assert one.num_frames == 1 and (one.scene_flow == 0).all()
    # the same scene at two resolutions has the same cameras and consistent depth at the centre pixel
    big = make_scene(1, 3, (75, 107))
    torch.testing.assert_close(big.cam2world, s.cam2world)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1, "num_frames": 3},
        {"seed": 0, "num_frames": 0},
        {"seed": 0, "num_frames": 3, "image_size": (4, 4)},
        {"seed": 0, "num_frames": 3, "camera_path": "zigzag"},
        {"seed": 0, "num_frames": 3, "environment": "space"},
        {"seed": 0, "num_frames": 3, "num_objects": 5},
        {"seed": 0, "num_frames": 3, "dynamic": False, "num_objects": 2},
        {"seed": 0, "num_frames": 3, "noise": -1.0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        make_scene(**kwargs)


def test_the_closeup_path_films_a_surface_a_metre_or_two_away_and_is_never_drawn_at_random():
    """camera_path="closeup" (data.closeup_fraction): the drawn paths look 2-7 m into open space; this
    one stays 0.5-2 m from what it looks at. It is not among the random kinds, so every seed's scene is
    what it was."""
    import numpy as np

    from mem4d.data.synthetic.camera_paths import CLOSEUP_DISTANCE, EXTRA_PATH_KINDS

    assert "closeup" in EXTRA_PATH_KINDS and "closeup" not in PATH_KINDS
    medians = []
    for seed in range(6):
        s = make_scene(seed, 6, image_size=(24, 32), dynamic=False, camera_path="closeup")
        assert s.meta["camera_path"] == "closeup" and bool(s.valid.all())
        medians.append(float(s.depth[s.valid].median()))
        assert CLOSEUP_DISTANCE[0] * 0.5 < float(s.depth[0][s.valid[0]].median()) < CLOSEUP_DISTANCE[1] * 1.5
    drawn = [float(make_scene(seed, 2, image_size=(24, 32), dynamic=False).depth.median()) for seed in range(6)]
    assert np.median(medians) < 0.6 * np.median(drawn), (medians, drawn)
    with pytest.raises(ValueError, match="closeup"):
        make_scene(0, 2, image_size=(24, 32), camera_path="close")
