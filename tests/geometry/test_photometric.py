"""Direct photometric alignment on synthetic frames with exact depth."""

from __future__ import annotations

import pytest
import torch

from mem4d.data.synthetic import make_scene
from mem4d.geometry.photometric import photometric_align
from mem4d.geometry.rotation import rotation_angle
from mem4d.geometry.se3 import cam_a2cam_b


@pytest.fixture(scope="module")
def scenes():
    return {path: make_scene(11, 3, (96, 128), camera_path=path, dynamic=True, camera_speed=1.5)
            for path in ("handheld", "forward", "rotation")}


def _errors(est: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    err = torch.linalg.inv(gt) @ est
    return float(rotation_angle(err[:3, :3]).rad2deg()), float((est[:3, 3] - gt[:3, 3]).norm())


@pytest.mark.parametrize("path", ["handheld", "forward", "rotation"])
def test_recovers_the_motion_between_frames(scenes, path):
    s = scenes[path]
    gt = cam_a2cam_b(s.cam2world[0], s.cam2world[1])  # camera 0 -> camera 1
    still = (~s.dynamic_mask[0]).float()[None]
    est, cost = photometric_align(s.images[0][None], s.depth[0][None], s.images[1][None], s.intrinsics[0][None],
                                  weight_a=still)
    rot, trans = _errors(est[0], gt)
    rot0, trans0 = _errors(torch.eye(4), gt)  # what the identity start gets wrong
    assert rot < 0.25 and trans < 0.01, (rot, trans)
    assert rot < 0.3 * rot0 or trans < 0.3 * trans0
    assert torch.isfinite(cost).all()


def test_translation_follows_the_depth_scale(scenes):
    s = scenes["forward"]
    args = (s.images[1][None], s.intrinsics[0][None])
    still = (~s.dynamic_mask[0]).float()[None]
    one, _ = photometric_align(s.images[0][None], s.depth[0][None], *args, weight_a=still)
    two, _ = photometric_align(s.images[0][None], 2 * s.depth[0][None], *args, weight_a=still)
    torch.testing.assert_close(two[0, :3, 3], 2 * one[0, :3, 3], atol=0.01, rtol=0.1)
    assert float(rotation_angle(one[0, :3, :3].T @ two[0, :3, :3]).rad2deg()) < 0.1


def test_batched_pairs_match_single_pairs(scenes):
    a, b = scenes["handheld"], scenes["forward"]
    batch, _ = photometric_align(torch.stack([a.images[0], b.images[0]]), torch.stack([a.depth[0], b.depth[0]]),
                                 torch.stack([a.images[1], b.images[1]]), torch.stack([a.intrinsics[0], b.intrinsics[0]]))
    single, _ = photometric_align(b.images[0][None], b.depth[0][None], b.images[1][None], b.intrinsics[0][None])
    torch.testing.assert_close(batch[1], single[0], atol=1e-4, rtol=1e-4)


def test_without_depth_the_start_is_kept(scenes):
    s = scenes["handheld"]
    init = torch.eye(4)[None].clone()
    init[0, 0, 3] = 0.1
    depth = torch.full_like(s.depth[0][None], float("nan"))
    est, _ = photometric_align(s.images[0][None], depth, s.images[1][None], s.intrinsics[0][None], init_a2b=init)
    assert torch.equal(est, init)


def test_the_pyramid_follows_the_image_size():
    from mem4d.geometry.photometric import pyramid_levels

    assert [pyramid_levels(s) for s in ((48, 64), (96, 128), (192, 256), (384, 512), (480, 854))] == [2, 3, 4, 5, 6]


def test_a_larger_image_catches_the_same_motion():
    """A camera turning 4.4 degrees a frame: caught at 96x128, and at 192x256 too (a fixed 3-level
    pyramid, coarsest level 48x64 there, found no motion at all: issue 14)."""
    for size in ((96, 128), (192, 256)):
        s = make_scene(2, 2, size, camera_path="rotation", dynamic=False, camera_speed=4.0, environment="room")
        gt = cam_a2cam_b(s.cam2world[0], s.cam2world[1])
        est, _ = photometric_align(s.images[0][None], (s.depth[0] * s.valid[0])[None], s.images[1][None],
                                   s.intrinsics[0][None])
        rot, _ = _errors(est[0], gt)
        rot0, _ = _errors(torch.eye(4), gt)
        assert rot0 > 4 and rot < 0.5, (size, rot0, rot)


@pytest.mark.parametrize("select_after", [None, 1, 2])
def test_several_starts_keep_the_one_that_aligns(scenes, select_after):
    """Starts (S, B, 4, 4): a start far off (a 20 degree turn) beside the identity; the result is
    the alignment of the good start, whether picked at full resolution (None: exactly the
    better of the separate runs) or after the coarse levels."""
    s = scenes["handheld"]
    args = (s.images[0][None], s.depth[0][None], s.images[1][None], s.intrinsics[0][None])
    still = (~s.dynamic_mask[0]).float()[None]
    gt = cam_a2cam_b(s.cam2world[0], s.cam2world[1])
    bad = torch.eye(4)[None].clone()
    bad[0, :3, :3] = torch.tensor([[0.9397, 0.0, 0.3420], [0.0, 1.0, 0.0], [-0.3420, 0.0, 0.9397]])
    good = torch.eye(4)[None]
    est, cost = photometric_align(*args, init_a2b=torch.stack([bad, good]), weight_a=still, select_after=select_after)
    rot, trans = _errors(est[0], gt)
    assert rot < 0.25 and trans < 0.01, (rot, trans)
    alone, alone_cost = photometric_align(*args, init_a2b=good, weight_a=still)
    from_bad, _ = photometric_align(*args, init_a2b=bad, weight_a=still)
    assert _errors(from_bad[0], gt)[0] > 1.0  # the bad start alone stays wrong: the choice matters
    if select_after is None:
        torch.testing.assert_close(est, alone, atol=1e-6, rtol=0)
        torch.testing.assert_close(cost, alone_cost, atol=1e-7, rtol=0)


def test_gauss_newton_carries_a_kept_steps_system_exactly(scenes):
    """One residual evaluation per iteration: the system a kept step hands on is the one a fresh
    start at that pose would form, so k iterations in one call equal k calls of one iteration."""
    from mem4d.geometry.photometric import _gauss_newton, _pts, _pyramid, _grey

    s = scenes["rotation"]
    level = _pyramid(_grey(s.images[0][None]), s.depth[0][None], torch.ones(1, 96, 128), s.intrinsics[0][None], 3)[2]
    grey_b = torch.nn.functional.avg_pool2d(_grey(s.images[1][None]), 4)
    pts = _pts(level)
    start, damping = torch.eye(4)[None], torch.full((1,), 1e-3)
    start[0, :3, 3] = torch.tensor([1.0, 0.5, -0.5])  # far off: the last steps are refused
    together = _gauss_newton(level, grey_b, pts, start, damping, 12, 0.05)
    a2b, d = start, damping
    for _ in range(12):
        a2b, d = _gauss_newton(level, grey_b, pts, a2b, d, 1, 0.05)
    torch.testing.assert_close(together[0], a2b, atol=1e-6, rtol=0)
    torch.testing.assert_close(together[1], d)
    assert d.item() > 1e-6  # a step was refused (the damping rose from its floor)
    assert not torch.equal(a2b, start)  # the steps moved the pose


def test_a_probe_near_the_motion_joins_the_starts_and_far_probes_change_nothing(scenes):
    """Probes run the coarsest level only; the best of them goes on as one more start. A probe
    within a few degrees of a 20-degree turn rescues an alignment whose own start is stuck far off,
    and probes that are all far off leave the result of a good start exactly as without them."""
    s = scenes["handheld"]
    args = (s.images[0][None], s.depth[0][None], s.images[1][None], s.intrinsics[0][None])
    still = (~s.dynamic_mask[0]).float()[None]
    gt = cam_a2cam_b(s.cam2world[0], s.cam2world[1])

    def turn(deg: float) -> torch.Tensor:
        a = torch.deg2rad(torch.tensor(deg))
        T = torch.eye(4)[None].clone()
        T[0, :3, :3] = torch.tensor([[torch.cos(a), 0.0, torch.sin(a)], [0.0, 1.0, 0.0], [-torch.sin(a), 0.0, torch.cos(a)]])
        return T

    off = turn(20.0) @ gt[None]  # a start 20 degrees off the truth
    stuck, _ = photometric_align(*args, init_a2b=off, weight_a=still)
    assert _errors(stuck[0], gt)[0] > 1.0  # alone it stays wrong
    probes = torch.stack([turn(d) @ off for d in (-40.0, -18.0, 15.0)])  # one lands 2 degrees from the truth
    est, _ = photometric_align(*args, init_a2b=off, weight_a=still, probe_a2b=probes)
    rot, trans = _errors(est[0], gt)
    assert rot < 0.25 and trans < 0.01, (rot, trans)

    good = torch.eye(4)[None]
    alone, alone_cost = photometric_align(*args, init_a2b=good, weight_a=still)
    far = torch.stack([turn(d) for d in (-45.0, 45.0)])
    with_far, far_cost = photometric_align(*args, init_a2b=good, weight_a=still, probe_a2b=far)
    torch.testing.assert_close(with_far, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(far_cost, alone_cost, atol=1e-7, rtol=0)


def test_probes_are_batched_per_pair(scenes):
    """Two pairs aligned at once with probes give each pair's own result."""
    pairs = [scenes["handheld"], scenes["rotation"]]
    imgs_a = torch.stack([p.images[0] for p in pairs])
    imgs_b = torch.stack([p.images[1] for p in pairs])
    depth = torch.stack([p.depth[0] for p in pairs])
    K = torch.stack([p.intrinsics[0] for p in pairs])
    probes = torch.eye(4).repeat(3, 2, 1, 1)
    probes[0, :, 0, 3], probes[1, :, 1, 3], probes[2, :, 2, 3] = 0.05, -0.05, 0.1
    both, _ = photometric_align(imgs_a, depth, imgs_b, K, probe_a2b=probes)
    for i in range(2):
        one, _ = photometric_align(imgs_a[i:i + 1], depth[i:i + 1], imgs_b[i:i + 1], K[i:i + 1],
                                   probe_a2b=probes[:, i:i + 1])
        torch.testing.assert_close(both[i:i + 1], one, atol=1e-5, rtol=0)
