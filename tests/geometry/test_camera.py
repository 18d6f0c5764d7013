import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from mem4d.geometry.camera import (
    crop_intrinsics,
    depth_to_pts_cam,
    depth_to_pts_world,
    focal_to_fov,
    fov_to_focal,
    fov_to_intrinsics,
    intrinsics_inverse,
    intrinsics_to_fov,
    pixel_grid,
    project,
    pts_cam_to_depth,
    resize_intrinsics,
    scale_intrinsics,
    unproject,
    valid_from_depth,
)
from mem4d.geometry.se3 import transform_points

from ._helpers import generator, random_intrinsics, random_pts_cam, random_se3

DTYPES = [torch.float32, torch.float64]
F64 = torch.float64


def _tol(dtype):
    return dict(atol=1e-4, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_unproject_round_trip_with_skew(dtype):
    g = generator(0)
    K = random_intrinsics(2, 3, g=g, dtype=dtype, skew=True)
    pts_cam = random_pts_cam(2, 3, 50, g=g, dtype=dtype)
    uv = project(K, pts_cam)
    assert uv.shape == (2, 3, 50, 2)
    back = unproject(K, uv, pts_cam_to_depth(pts_cam))
    torch.testing.assert_close(back, pts_cam, **_tol(dtype))
    assert torch.equal(back[..., 2], pts_cam[..., 2])  # z-depth is carried exactly


def test_project_known_point():
    K = torch.tensor([[100.0, 0, 40], [0, 200, 30], [0, 0, 1]])
    uv = project(K, torch.tensor([[1.0, -2.0, 10.0], [0.0, 0.0, 5.0]]))
    torch.testing.assert_close(uv, torch.tensor([[50.0, -10.0], [40.0, 30.0]]))


def test_project_matches_matrix_formula():
    g = generator(1)
    K = random_intrinsics(4, g=g, skew=True)
    pts = random_pts_cam(4, 9, g=g)
    homog = torch.einsum("bij,bnj->bni", K, pts)
    torch.testing.assert_close(project(K, pts), homog[..., :2] / homog[..., 2:])


def test_project_keeps_gradients_finite_at_zero_depth():
    K = torch.tensor([[100.0, 0, 40], [0, 100, 30], [0, 0, 1]])
    pts = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 2.0]], requires_grad=True)
    uv = project(K, pts)
    assert torch.isfinite(uv).all()
    uv.sum().backward()
    assert torch.isfinite(pts.grad).all()
    assert not torch.isfinite(project(K, pts.detach(), eps=None)[0]).any()


def test_intrinsics_inverse_matches_linalg():
    K = random_intrinsics(6, g=generator(2), skew=True)
    torch.testing.assert_close(intrinsics_inverse(K), torch.linalg.inv(K), atol=1e-14, rtol=1e-12)


def test_pixel_grid_is_column_row_pixel_centres():
    grid = pixel_grid(3, 4, dtype=F64)
    assert grid.shape == (3, 4, 2) and grid.dtype == F64
    assert torch.equal(grid[2, 1], torch.tensor([1.0, 2.0], dtype=F64))  # row 2, column 1 -> (u=1, v=2)
    assert torch.equal(grid[..., 0], torch.arange(4, dtype=F64).expand(3, 4))
    assert torch.equal(grid[..., 1], torch.arange(3, dtype=F64)[:, None].expand(3, 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_depth_pointmap_round_trip(dtype):
    g = generator(3)
    B, T, H, W = 2, 3, 5, 7
    depth = 1 + 4 * torch.rand(B, T, H, W, generator=g, dtype=dtype)
    K = random_intrinsics(B, T, g=g, dtype=dtype)
    pts_cam = depth_to_pts_cam(depth, K)
    assert pts_cam.shape == (B, T, H, W, 3)
    assert torch.equal(pts_cam_to_depth(pts_cam), depth)
    # Every pixel's point projects back onto that pixel's centre.
    uv = project(K, pts_cam)
    torch.testing.assert_close(uv, pixel_grid(H, W, dtype=dtype).expand(B, T, H, W, 2), **_tol(dtype))


def test_depth_to_pts_cam_batch_rule_shares_leading_intrinsics():
    g = generator(4)
    depth = 1 + torch.rand(2, 3, 4, 5, generator=g, dtype=F64)
    K = random_intrinsics(2, g=g)
    shared = depth_to_pts_cam(depth, K)  # (B,3,3) lines up with B, shared across T
    torch.testing.assert_close(shared, depth_to_pts_cam(depth, K[:, None]))
    torch.testing.assert_close(shared[1, 2], depth_to_pts_cam(depth[1, 2], K[1]))
    one = depth_to_pts_cam(depth, K[0])  # (3,3): one camera for everything
    torch.testing.assert_close(one[1, 2], depth_to_pts_cam(depth[1, 2], K[0]))


def test_depth_to_pts_world_matches_transform():
    g = generator(5)
    depth = 1 + torch.rand(2, 3, 4, 5, generator=g, dtype=F64)
    K = random_intrinsics(2, 3, g=g)
    cam2world = random_se3(2, 3, g=g)
    pts_world = depth_to_pts_world(depth, K, cam2world)
    assert pts_world.shape == (2, 3, 4, 5, 3)
    expected = torch.einsum("btij,bthwj->bthwi", cam2world[..., :3, :3], depth_to_pts_cam(depth, K))
    torch.testing.assert_close(pts_world, expected + cam2world[:, :, None, None, :3, 3])


def test_unproject_broadcasts_one_pixel_grid_over_a_batch():
    g = generator(6)
    depth = 1 + torch.rand(3, 4, 5, generator=g, dtype=F64)
    K = random_intrinsics(3, g=g)
    out = unproject(K, pixel_grid(4, 5, dtype=F64), depth)
    torch.testing.assert_close(out, depth_to_pts_cam(depth, K))


def test_valid_from_depth():
    depth = torch.tensor([1.0, 0.0, -1.0, float("nan"), float("inf"), 1e-6])
    assert valid_from_depth(depth).tolist() == [True, False, False, False, False, True]


@pytest.mark.parametrize("dtype", DTYPES)
def test_fov_intrinsics_round_trip_batched(dtype):
    fov_x = torch.tensor([[0.5, 1.0, 2.0]], dtype=dtype)
    fov_y = torch.tensor([[0.4], [1.5]], dtype=dtype)
    K = fov_to_intrinsics(fov_x, fov_y, H=48, W=64)
    assert K.shape == (2, 3, 3, 3) and K.dtype == dtype
    fx_back, fy_back = intrinsics_to_fov(K, H=48, W=64)
    torch.testing.assert_close(fx_back, fov_x.expand(2, 3), **_tol(dtype))
    torch.testing.assert_close(fy_back, fov_y.expand(2, 3), **_tol(dtype))


def test_fov_to_intrinsics_known_case_and_floats():
    K = fov_to_intrinsics(math.pi / 2, 2 * math.atan(0.5), H=10, W=20)
    expected = torch.tensor([[10.0, 0, 9.5], [0, 10.0, 4.5], [0, 0, 1]])
    torch.testing.assert_close(K, expected)
    assert fov_to_focal(math.pi / 2, 20) == pytest.approx(10.0)
    assert focal_to_fov(10.0, 20) == pytest.approx(math.pi / 2)
    f = torch.tensor([50.0, 100.0], dtype=F64)
    torch.testing.assert_close(fov_to_focal(focal_to_fov(f, 64), 64), f)


@pytest.mark.parametrize(
    "fn, args, match",
    [
        (project, (torch.eye(4), torch.zeros(3)), r"intrinsics must have shape \(\.\.\., 3, 3\)"),
        (project, (torch.eye(3), torch.zeros(5, 2)), r"pts_cam must have shape \(\.\.\., 3\)"),
        (project, (torch.eye(3).expand(2, 3, 3), torch.zeros(4, 3)), "leading dims of pts_cam"),
        (
            project,
            (torch.eye(3, dtype=F64), torch.zeros(4, 3)),
            r"intrinsics is torch.float64 but pts_cam is torch.float32",
        ),
        (unproject, (torch.eye(3), torch.zeros(5, 2), torch.ones(4)), "depth"),
        (unproject, (torch.eye(3), torch.zeros(5, 3), torch.ones(5)), r"uv must have shape \(\.\.\., 2\)"),
        (depth_to_pts_cam, (torch.ones(5), torch.eye(3)), r"\(\.\.\., H, W\)"),
        (depth_to_pts_cam, (torch.ones(4, 5), torch.eye(3).expand(2, 3, 3)), "more batch dims"),
        (depth_to_pts_world, (torch.ones(2, 4, 5), torch.eye(3), torch.eye(4).expand(2, 3, 4, 4)), "more batch dims"),
        (pixel_grid, (0, 4), "H must be a positive int"),
        (pixel_grid, (4, 2.5), "W must be a positive int"),
        (fov_to_intrinsics, (90.0, 1.0, 10, 10), r"fov_x must be in \(0, pi\) radians"),
        (fov_to_focal, (0.0, 10), r"\(0, pi\)"),
        (focal_to_fov, (-1.0, 10), "focal must be > 0"),
        (resize_intrinsics, (torch.eye(3), (10, 10), (10,)), r"\(H, W\) pairs"),
        (scale_intrinsics, (torch.eye(2), 2.0, 2.0), "intrinsics must have shape"),
    ],
)
def test_wrong_inputs_raise_value_error(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


# ------------------------------------------------------------------ resizing and cropping


def test_scale_intrinsics_moves_projections_by_the_half_pixel_rule():
    g = generator(7)
    K = random_intrinsics(3, g=g, skew=True)
    pts = random_pts_cam(3, 20, g=g)
    sx, sy = 0.37, 2.5
    uv = project(K, pts)
    uv_scaled = project(scale_intrinsics(K, sx, sy), pts)
    expected = (uv + 0.5) * torch.tensor([sx, sy], dtype=F64) - 0.5
    torch.testing.assert_close(uv_scaled, expected)


def test_scale_intrinsics_accepts_per_batch_tensors():
    K = random_intrinsics(4, g=generator(8))
    s = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=F64)
    out = scale_intrinsics(K, s, 2 * s)
    for i in range(4):
        torch.testing.assert_close(out[i], scale_intrinsics(K[i], float(s[i]), float(2 * s[i])))


def test_resize_intrinsics_keeps_fov_intrinsics_consistent():
    fov_x, fov_y = 1.2, 0.9
    K = fov_to_intrinsics(fov_x, fov_y, H=30, W=40)
    resized = resize_intrinsics(K, (30, 40), (45, 100))
    torch.testing.assert_close(resized, fov_to_intrinsics(fov_x, fov_y, H=45, W=100))


def _blob_image(uv_centre, H, W, sigma=2.0):
    grid = pixel_grid(H, W, dtype=F64)
    d2 = ((grid - uv_centre) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * sigma**2))  # (H, W)


def _centroid(image):
    grid = pixel_grid(*image.shape, dtype=image.dtype)
    return (grid * image[..., None]).sum((0, 1)) / image.sum()


@pytest.mark.parametrize("mode, factor", [("bilinear", 2), ("area", 0.5), ("bilinear", 3)])
def test_scaled_intrinsics_follow_a_real_image_resize(mode, factor):
    # A blob drawn where a 3D point projects, resized with torch's own (pixel-centre,
    # align_corners=False) resampling, lands where the scaled intrinsics project the point.
    H, W = 24, 32
    K = torch.tensor([[30.0, 0, 15.5], [0, 30, 11.5], [0, 0, 1]], dtype=F64)
    pts = torch.tensor([0.13, -0.07, 1.0], dtype=F64)
    uv = project(K, pts)
    image = _blob_image(uv, H, W)
    new_size = (int(H * factor), int(W * factor))
    kwargs = dict(align_corners=False) if mode == "bilinear" else {}
    resized = F.interpolate(image[None, None], size=new_size, mode=mode, **kwargs)[0, 0]
    uv_resized = project(resize_intrinsics(K, (H, W), new_size), pts)
    torch.testing.assert_close(_centroid(resized), uv_resized, atol=2e-3, rtol=0)
    # The naive rule (scale cx too, no half-pixel shift) is off by a visible amount.
    naive = K.clone()
    naive[:2] *= factor
    assert (project(naive, pts) - _centroid(resized)).abs().max() > 0.2


def test_crop_then_resize_intrinsics_follow_the_image():
    H, W = 40, 48
    K = torch.tensor([[40.0, 0, 23.5], [0, 40, 19.5], [0, 0, 1]], dtype=F64)
    pts = torch.tensor([0.1, 0.05, 1.0], dtype=F64)
    image = _blob_image(project(K, pts), H, W)
    left, top = 8, 6
    crop = image[top : top + 24, left : left + 32]
    K_crop = crop_intrinsics(K, left, top)
    torch.testing.assert_close(_centroid(crop), project(K_crop, pts), atol=1e-3, rtol=0)
    small = F.interpolate(crop[None, None], size=(12, 16), mode="area")[0, 0]
    K_small = resize_intrinsics(K_crop, (24, 32), (12, 16))
    torch.testing.assert_close(_centroid(small), project(K_small, pts), atol=1e-3, rtol=0)


def test_crop_intrinsics_known_case_and_batched_offsets():
    K = torch.tensor([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]]).expand(2, 3, 3)
    out = crop_intrinsics(K, torch.tensor([10.0, 20.0]), 5)
    assert out[0, 0, 2] == 40 and out[1, 0, 2] == 30 and (out[:, 1, 2] == 35).all()
    assert torch.equal(out[..., :2, :2], K[..., :2, :2])


# ----------------------------------------------------------------------------- gradients


def test_gradcheck_camera():
    g = generator(9)
    K = random_intrinsics(2, g=g, skew=True).requires_grad_()
    pts = random_pts_cam(2, 3, g=g).requires_grad_()
    uv = (torch.rand(2, 3, 2, generator=g, dtype=F64) * 50).requires_grad_()
    depth = (1 + torch.rand(2, 3, generator=g, dtype=F64)).requires_grad_()
    depth_map = (1 + torch.rand(2, 3, 4, generator=g, dtype=F64)).requires_grad_()
    cam2world = random_se3(2, g=g).requires_grad_()
    assert gradcheck(project, (K, pts))
    assert gradcheck(unproject, (K, uv, depth))
    assert gradcheck(depth_to_pts_world, (depth_map, K, cam2world))
    assert gradcheck(lambda k: intrinsics_to_fov(k, 20, 30), (K,))
    assert gradcheck(lambda k: scale_intrinsics(k, 0.5, 1.5), (K,))
    assert gradcheck(lambda k: crop_intrinsics(k, 3.0, 4.0), (K,))
    fov = torch.tensor([0.7, 1.3], dtype=F64, requires_grad=True)
    assert gradcheck(lambda f: fov_to_intrinsics(f, f * 0.8, 20, 30), (fov,))


def test_transform_then_project_composes_with_batch_rule():
    # (B, T) poses and intrinsics applied to (B, T, N, 3) world points.
    g = generator(10)
    cam2world = random_se3(2, 3, g=g)
    K = random_intrinsics(2, 3, g=g)
    pts_cam = random_pts_cam(2, 3, 6, g=g)
    pts_world = transform_points(cam2world, pts_cam)
    from mem4d.geometry.se3 import se3_inverse

    uv = project(K, transform_points(se3_inverse(cam2world), pts_world))
    torch.testing.assert_close(uv, project(K, pts_cam))
