import pytest
import torch
from torch.autograd import gradcheck

from mem4d.geometry.camera import depth_to_pts_cam, depth_to_pts_world
from mem4d.geometry.pointmap import normalize_pointmap, pointmap_to_depth

from ._helpers import generator, random_intrinsics, random_se3

F64 = torch.float64


def test_pointmap_to_depth_from_cam_and_world_frames():
    g = generator(0)
    depth = 1 + torch.rand(2, 3, 4, 5, generator=g, dtype=F64)
    K = random_intrinsics(2, 3, g=g)
    cam2world = random_se3(2, 3, g=g)
    assert torch.equal(pointmap_to_depth(depth_to_pts_cam(depth, K)), depth)
    from_world = pointmap_to_depth(depth_to_pts_world(depth, K, cam2world), cam2world=cam2world)
    torch.testing.assert_close(from_world, depth)


def test_pointmap_to_depth_zeroes_invalid_points():
    pts = torch.tensor([[[0.0, 0, 2], [0, 0, -1], [float("nan"), 0, 3], [0, 0, 4]]])  # (1, 4, 3)
    valid = torch.tensor([[True, True, True, False]])
    assert pointmap_to_depth(pts, valid=valid).tolist() == [[2.0, 0.0, 0.0, 0.0]]
    assert pointmap_to_depth(pts).tolist() == [[2.0, 0.0, 0.0, 4.0]]


def test_normalize_pointmap_uses_mean_distance_of_valid_points_per_sample():
    pts = torch.zeros(2, 1, 2, 2, 3, dtype=F64)  # (B, T, H, W, 3)
    pts[0, 0, :, :, 2] = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    pts[1, 0, :, :, 0] = torch.tensor([[4.0, 4.0], [4.0, 4.0]])
    valid = torch.ones(2, 1, 2, 2, dtype=torch.bool)
    valid[0, 0, 1, 1] = False  # the outlier is excluded
    normalized, scale = normalize_pointmap(pts, valid)
    torch.testing.assert_close(scale, torch.tensor([2.0, 4.0], dtype=F64))
    torch.testing.assert_close(normalized, pts / scale[:, None, None, None, None])
    dist = normalized.norm(dim=-1)
    for b in range(2):
        torch.testing.assert_close(dist[b][valid[b]].mean(), torch.tensor(1.0, dtype=F64))


def test_normalize_pointmap_num_batch_dims():
    g = generator(1)
    pts = torch.randn(2, 3, 4, 5, 3, generator=g, dtype=F64)
    _, per_clip = normalize_pointmap(pts)
    _, per_frame = normalize_pointmap(pts, num_batch_dims=2)
    _, global_scale = normalize_pointmap(pts, num_batch_dims=0)
    assert per_clip.shape == (2,) and per_frame.shape == (2, 3) and global_scale.shape == ()
    torch.testing.assert_close(per_frame.mean(1), per_clip)
    torch.testing.assert_close(global_scale, pts.norm(dim=-1).mean())


def test_normalize_pointmap_ignores_non_finite_points_in_value_and_gradient():
    pts = torch.tensor([[[3.0, 4.0, 0.0], [float("nan"), 0.0, 0.0], [float("inf"), 1.0, 1.0], [0.0, 0.0, 5.0]]])
    pts.requires_grad_()
    _, scale = normalize_pointmap(pts)
    torch.testing.assert_close(scale, torch.tensor([5.0]))
    scale.sum().backward()
    assert torch.isfinite(pts.grad).all()
    assert (pts.grad[0, 1:3] == 0).all()


def test_normalize_pointmap_without_valid_points_has_scale_one():
    pts = torch.randn(2, 4, 3)
    valid = torch.zeros(2, 4, dtype=torch.bool)
    valid[0, 0] = True
    normalized, scale = normalize_pointmap(pts, valid)
    assert scale[1] == 1 and torch.equal(normalized[1], pts[1])
    torch.testing.assert_close(scale[0], pts[0, 0].norm())


@pytest.mark.parametrize(
    "fn, args, kwargs, match",
    [
        (pointmap_to_depth, (torch.zeros(4, 3),), {}, r"\(\.\.\., H, W, 3\)"),
        (pointmap_to_depth, (torch.zeros(2, 4, 2),), {}, r"pointmap must have shape \(\.\.\., 3\)"),
        (pointmap_to_depth, (torch.zeros(4, 4, 3),), {"cam2world": torch.eye(4).expand(2, 4, 4)}, "more batch dims"),
        (pointmap_to_depth, (torch.zeros(4, 4, 3),), {"valid": torch.ones(4, 4)}, "bool tensor"),
        (
            normalize_pointmap,
            (torch.zeros(2, 4, 3),),
            {"num_batch_dims": 2},
            r"num_batch_dims must be an int in \[0, 1\]",
        ),
        (normalize_pointmap, (torch.zeros(2, 4, 3),), {"valid": torch.ones(3, dtype=torch.bool)}, "must match"),
    ],
)
def test_wrong_inputs_raise_value_error(fn, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


def test_gradcheck_pointmap():
    g = generator(2)
    pts = torch.randn(2, 3, 4, 3, generator=g, dtype=F64, requires_grad=True)
    valid = torch.rand(2, 3, 4, generator=g) > 0.3
    assert gradcheck(lambda p: normalize_pointmap(p, valid), (pts,))
    pts_world = torch.randn(2, 3, 4, 3, generator=g, dtype=F64) + torch.tensor([0, 0, 5.0], dtype=F64)
    cam2world = random_se3(2, g=g)
    cam2world[..., :3, :3] = torch.eye(3, dtype=F64)  # keep points in front of the cameras
    cam2world[..., 2, 3] = 0
    assert gradcheck(lambda p, c: pointmap_to_depth(p, c), (pts_world.requires_grad_(), cam2world.requires_grad_()))
