import pytest
import torch
from torch.autograd import gradcheck

from mem4d.geometry.se3 import (
    cam_a2cam_b,
    reanchor_to_first_frame,
    se3_compose,
    se3_from_rt,
    se3_inverse,
    se3_to_rt,
    transform_points,
)

from ._helpers import generator, random_rotation, random_se3

DTYPES = [torch.float32, torch.float64]


def _tol(dtype):
    return dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_se3_inverse_round_trip(dtype):
    a2b = random_se3(5, 3, g=generator(1), dtype=dtype)
    b2a = se3_inverse(a2b)
    eye = torch.eye(4, dtype=dtype).expand(5, 3, 4, 4)
    torch.testing.assert_close(se3_compose(b2a, a2b), eye, **_tol(dtype))
    torch.testing.assert_close(se3_compose(a2b, b2a), eye, **_tol(dtype))
    torch.testing.assert_close(se3_inverse(b2a), a2b, **_tol(dtype))
    assert b2a.dtype == dtype


def test_se3_inverse_matches_general_inverse_and_keeps_last_row_exact():
    a2b = random_se3(10, g=generator(2))
    b2a = se3_inverse(a2b)
    torch.testing.assert_close(b2a, torch.linalg.inv(a2b), atol=1e-12, rtol=0)
    assert torch.equal(b2a[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(10, 4))


def test_se3_compose_reads_right_to_left():
    g = generator(3)
    a2b, b2c = random_se3(4, g=g), random_se3(4, g=g)
    pts_a = torch.randn(4, 7, 3, generator=g, dtype=torch.float64)
    via_b = transform_points(b2c, transform_points(a2b, pts_a))
    torch.testing.assert_close(transform_points(se3_compose(b2c, a2b), pts_a), via_b)
    # The other order is a different transform: the test can tell them apart.
    assert not torch.allclose(transform_points(se3_compose(a2b, b2c), pts_a), via_b)


def test_se3_compose_broadcasts_batch_dims():
    g = generator(4)
    b2c, a2b = random_se3(2, 1, g=g), random_se3(3, g=g)
    a2c = se3_compose(b2c, a2b)
    assert a2c.shape == (2, 3, 4, 4)
    torch.testing.assert_close(a2c[1, 2], b2c[1, 0] @ a2b[2])


def test_se3_from_rt_and_to_rt_round_trip_with_broadcasting():
    g = generator(5)
    R = random_rotation(g=g)  # (3, 3) shared
    t = torch.randn(6, 3, generator=g, dtype=torch.float64)
    a2b = se3_from_rt(R, t)
    assert a2b.shape == (6, 4, 4)
    R2, t2 = se3_to_rt(a2b)
    torch.testing.assert_close(R2, R.expand(6, 3, 3))
    torch.testing.assert_close(t2, t)
    assert torch.equal(a2b[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64).expand(6, 4))


def _reference_transform(a2b, pts):
    """Loop-free reference: expand the transform over the point dims explicitly."""
    nb = a2b.ndim - 2
    npd = pts.ndim - 1 - nb
    R = a2b[..., :3, :3].reshape(*a2b.shape[:nb], *([1] * npd), 3, 3)
    t = a2b[..., :3, 3].reshape(*a2b.shape[:nb], *([1] * npd), 3)
    return (R @ pts.unsqueeze(-1)).squeeze(-1) + t


@pytest.mark.parametrize(
    "transform_shape, pts_shape, out_shape",
    [
        ((), (7,), (7,)),  # (4,4) and (N,3)
        ((), (2, 3, 5), (2, 3, 5)),  # one transform for a whole pointmap
        ((), (), ()),  # one point
        ((2,), (2,), (2,)),  # one point per transform
        ((2,), (2, 5, 6), (2, 5, 6)),  # (B,4,4) with (B,H,W,3)
        ((2, 3), (2, 3, 5, 6), (2, 3, 5, 6)),  # (B,T,4,4) with (B,T,H,W,3)
        ((2, 1), (2, 3, 5), (2, 3, 5)),  # shared across T with a size-1 dim
        ((1,), (4, 5), (4, 5)),  # size-1 batch dim broadcasts over pts
        ((4,), (1, 5), (4, 5)),  # ... and over the transform
    ],
)
def test_transform_points_batch_rule(transform_shape, pts_shape, out_shape):
    g = generator(6)
    a2b = random_se3(*transform_shape, g=g)
    pts = torch.randn(*pts_shape, 3, generator=g, dtype=torch.float64)
    out = transform_points(a2b, pts)
    assert out.shape == (*out_shape, 3)
    torch.testing.assert_close(out, _reference_transform(a2b, pts).expand(*out_shape, 3))


def test_transform_points_known_case():
    R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about z
    a2b = se3_from_rt(R, torch.tensor([1.0, 2.0, 3.0]))
    out = transform_points(a2b, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.0, 3.0, 3.0], [1.0, 2.0, 4.0]]))


@pytest.mark.parametrize(
    "fn, args, match",
    [
        (se3_inverse, (torch.eye(3),), r"a2b must have shape \(\.\.\., 4, 4\)"),
        (se3_compose, (torch.eye(4), torch.eye(3)), "a2b must have shape"),
        (se3_compose, (torch.eye(4).expand(2, 4, 4), torch.eye(4).expand(3, 4, 4)), "do not broadcast"),
        (se3_from_rt, (torch.eye(3), torch.zeros(4)), r"t must have shape \(\.\.\., 3\)"),
        (se3_from_rt, (torch.eye(3).expand(2, 3, 3), torch.zeros(3, 3)), "do not broadcast"),
        (transform_points, (torch.eye(4), torch.zeros(5, 4)), r"pts must have shape \(\.\.\., 3\)"),
        (transform_points, (torch.eye(4).expand(2, 4, 4), torch.zeros(3, 5, 3)), "leading dims of pts"),
        (transform_points, (torch.eye(4).expand(2, 3, 4, 4), torch.zeros(2, 3)), "at least 2 leading dims"),
        (reanchor_to_first_frame, (torch.eye(4),), r"\(\.\.\., T, 4, 4\)"),
    ],
)
def test_wrong_shapes_raise_value_error(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_non_tensor_input_raises_type_error():
    with pytest.raises(TypeError, match="a2b must be a torch.Tensor"):
        transform_points([[1.0]], torch.zeros(3))


def test_cam_a2cam_b_maps_points_from_camera_a_into_camera_b():
    g = generator(7)
    cam2world_a, cam2world_b = random_se3(3, g=g), random_se3(3, g=g)
    pts_cam_a = torch.randn(3, 10, 3, generator=g, dtype=torch.float64)
    pts_world = transform_points(cam2world_a, pts_cam_a)
    expected = transform_points(se3_inverse(cam2world_b), pts_world)
    torch.testing.assert_close(transform_points(cam_a2cam_b(cam2world_a, cam2world_b), pts_cam_a), expected)


def test_reanchor_to_first_frame_keeps_relative_poses():
    g = generator(8)
    cam2world = random_se3(2, 5, g=g)
    anchored = reanchor_to_first_frame(cam2world)
    assert torch.equal(anchored[:, 0], torch.eye(4, dtype=torch.float64).expand(2, 4, 4))
    torch.testing.assert_close(
        cam_a2cam_b(anchored[:, 1:], anchored[:, :-1]), cam_a2cam_b(cam2world[:, 1:], cam2world[:, :-1])
    )
    # Points move with the documented world change.
    pts_cam = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64)
    old_world = transform_points(cam2world, pts_cam)
    new_world = transform_points(anchored, pts_cam)
    world_old2new = se3_inverse(cam2world[:, :1])
    torch.testing.assert_close(transform_points(world_old2new, old_world), new_world)


def test_gradcheck_se3():
    g = generator(9)
    a2b = random_se3(2, g=g).requires_grad_()
    b2c = random_se3(2, g=g).requires_grad_()
    pts = torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    R = random_rotation(2, g=g).requires_grad_()
    t = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert gradcheck(se3_inverse, (a2b,))
    assert gradcheck(se3_compose, (b2c, a2b))
    assert gradcheck(transform_points, (a2b, pts))
    assert gradcheck(se3_from_rt, (R, t))
    assert gradcheck(cam_a2cam_b, (a2b, b2c))
