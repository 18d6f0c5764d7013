"""The geometry functions run on any device and keep the input's dtype and device."""

import pytest
import torch

from mem4d.geometry import (
    axis_angle_to_matrix,
    depth_to_pts_world,
    fov_to_intrinsics,
    matrix_to_axis_angle,
    matrix_to_quat,
    normalize_pointmap,
    pointmap_to_depth,
    project,
    quat_to_matrix,
    rotation_angle,
    scale_intrinsics,
    se3_from_rt,
    se3_inverse,
    transform_points,
)

from ._helpers import generator

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")],
    ),
]


def _pipeline(v, t, depth, fov, device, dtype):
    """A little of everything; returns a dict of outputs."""
    v, t, depth, fov = (x.to(device=device, dtype=dtype) for x in (v, t, depth, fov))
    R = axis_angle_to_matrix(v)
    cam2world = se3_from_rt(R, t)
    K = scale_intrinsics(fov_to_intrinsics(fov, fov * 0.75, 8, 10), 0.5, 0.5)
    pts_world = depth_to_pts_world(depth, K, cam2world)
    normalized, scale = normalize_pointmap(pts_world)
    return {
        "quat": matrix_to_quat(R),
        "R_from_quat": quat_to_matrix(matrix_to_quat(R)),
        "axis_angle": matrix_to_axis_angle(R),
        "angle": rotation_angle(R),
        "pts_world": pts_world,
        "depth": pointmap_to_depth(pts_world, cam2world=cam2world),
        "uv": project(K, transform_points(se3_inverse(cam2world), pts_world)),
        "normalized": normalized,
        "scale": scale,
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_are_kept_and_results_match_cpu_float64(device, dtype):
    g = generator(0)
    B, T, H, W = 2, 3, 4, 5
    inputs = (
        torch.randn(B, T, 3, generator=g, dtype=torch.float64),
        torch.randn(B, T, 3, generator=g, dtype=torch.float64),
        1 + torch.rand(B, T, H, W, generator=g, dtype=torch.float64),
        0.8 + 0.4 * torch.rand(B, T, generator=g, dtype=torch.float64),
    )
    reference = _pipeline(*inputs, "cpu", torch.float64)
    out = _pipeline(*inputs, device, dtype)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    for name, value in out.items():
        assert value.device.type == device and value.dtype == dtype, name
        torch.testing.assert_close(value.cpu().double(), reference[name], **tol, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_flow_on_device(device):
    v = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]], device=device, requires_grad=True)
    loss = matrix_to_axis_angle(axis_angle_to_matrix(v)).square().sum() + rotation_angle(axis_angle_to_matrix(v)).sum()
    loss.backward()
    assert v.grad.device.type == device and torch.isfinite(v.grad).all()
