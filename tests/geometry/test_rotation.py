import math

import pytest
import torch
from torch.autograd import gradcheck

from mem4d.geometry.rotation import (
    _hat,
    axis_angle_to_matrix,
    axis_angle_to_quat,
    matrix_to_axis_angle,
    matrix_to_quat,
    quat_canonical,
    quat_conjugate,
    quat_multiply,
    quat_to_axis_angle,
    quat_to_matrix,
    quat_wxyz_to_xyzw,
    quat_xyzw_to_wxyz,
    rotation_angle,
    se3_orthonormalize,
)
from mem4d.geometry.se3 import se3_from_rt

from ._helpers import generator, random_quat, random_rotation

DTYPES = [torch.float32, torch.float64]
F64 = torch.float64


def _tol(dtype):
    return dict(atol=2e-6, rtol=0) if dtype == torch.float32 else dict(atol=1e-12, rtol=0)


def _same_rotation_quat(q1, q2, **tol):
    """q and -q are the same rotation."""
    sign = torch.where((q1 * q2).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(q1.dtype)
    torch.testing.assert_close(q1, sign * q2, **tol)


# Matrices hitting each branch of Shepperd's method, half-turns and the identity.
SPECIAL_MATRICES = [
    torch.eye(3),
    torch.diag(torch.tensor([1.0, -1.0, -1.0])),  # pi about x
    torch.diag(torch.tensor([-1.0, 1.0, -1.0])),  # pi about y
    torch.diag(torch.tensor([-1.0, -1.0, 1.0])),  # pi about z
    torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # pi/2 about z
    torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]]),  # 2pi/3 about (1,1,1)
]


@pytest.mark.parametrize("dtype", DTYPES)
def test_quat_matrix_round_trip_random(dtype):
    q = random_quat(1000, g=generator(0), dtype=dtype)
    R = quat_to_matrix(q)
    q2 = matrix_to_quat(R)
    torch.testing.assert_close(q2, quat_canonical(q), **_tol(dtype))
    torch.testing.assert_close(quat_to_matrix(q2), R, **_tol(dtype))


@pytest.mark.parametrize("index", range(len(SPECIAL_MATRICES)))
def test_quat_matrix_round_trip_special(index):
    R = SPECIAL_MATRICES[index].to(F64)
    q = matrix_to_quat(R)
    torch.testing.assert_close(q.norm(), torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(quat_to_matrix(q), R, atol=1e-14, rtol=0)


def test_matrix_to_quat_is_accurate_near_half_turns():
    # The classic trace-based formula loses all precision here; Shepperd's does not.
    axis = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=F64), dim=0)
    for angle in (math.pi, math.pi - 1e-7, math.pi - 1e-3):
        R = axis_angle_to_matrix(angle * axis)
        q = matrix_to_quat(R)
        expected = torch.cat([torch.tensor([math.cos(angle / 2)], dtype=F64), math.sin(angle / 2) * axis])
        _same_rotation_quat(q, expected, atol=1e-14, rtol=0)
        assert q[0] >= 0


def test_quat_to_matrix_known_case_and_normalisation():
    c = math.sqrt(0.5)
    R = quat_to_matrix(torch.tensor([c, 0.0, 0.0, c], dtype=F64))  # +90 degrees about z
    expected = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64)
    torch.testing.assert_close(R, expected, atol=1e-15, rtol=0)
    # A non-unit quaternion is normalised.
    torch.testing.assert_close(quat_to_matrix(torch.tensor([3 * c, 0.0, 0.0, 3 * c], dtype=F64)), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_quat_to_matrix_gives_rotations(dtype):
    R = quat_to_matrix(torch.randn(50, 4, generator=generator(1), dtype=dtype))
    eye = torch.eye(3, dtype=dtype).expand(50, 3, 3)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, **_tol(dtype))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(50, dtype=dtype), atol=1e-5, rtol=0)


def test_quat_canonical_sign_and_tie_break():
    q = torch.tensor([[-0.5, 0.5, 0.5, 0.5], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -0.6, 0.8], [0.5, -0.5, 0.5, -0.5]])
    out = quat_canonical(q)
    expected = torch.tensor(
        [[0.5, -0.5, -0.5, -0.5], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.6, -0.8], [0.5, -0.5, 0.5, -0.5]]
    )
    assert torch.equal(out, expected)


def test_quat_multiply_matches_matrix_product_and_conjugate_inverts():
    g = generator(2)
    q1, q2 = random_quat(20, g=g), random_quat(20, g=g)
    R12 = quat_to_matrix(quat_multiply(q1, q2))
    torch.testing.assert_close(R12, quat_to_matrix(q1) @ quat_to_matrix(q2))
    identity = quat_multiply(q1, quat_conjugate(q1))
    torch.testing.assert_close(identity, torch.tensor([1.0, 0, 0, 0], dtype=F64).expand(20, 4))


@pytest.mark.parametrize("dtype", DTYPES)
def test_axis_angle_matrix_round_trip(dtype):
    g = generator(3)
    axis = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=dtype), dim=-1)
    angle = torch.rand(200, 1, generator=g, dtype=dtype) * (math.pi - 1e-2)
    # Include tiny and zero angles.
    angle[:4, 0] = torch.tensor([0.0, 1e-12, 1e-6, 1e-3], dtype=dtype)
    v = axis * angle
    R = axis_angle_to_matrix(v)
    torch.testing.assert_close(matrix_to_axis_angle(R), v, **_tol(dtype))
    torch.testing.assert_close(axis_angle_to_matrix(matrix_to_axis_angle(R)), R, **_tol(dtype))


def test_axis_angle_to_matrix_matches_matrix_exponential():
    g = generator(4)
    v = torch.randn(30, 3, generator=g, dtype=F64) * 2  # angles well beyond pi too
    v[0] = 0
    v[1] = 1e-4 * v[1]  # inside the series branch
    v[2] = 0.11 * v[2] / v[2].norm()  # just outside it
    torch.testing.assert_close(axis_angle_to_matrix(v), torch.linalg.matrix_exp(_hat(v)), atol=1e-14, rtol=0)


def test_axis_angle_known_case():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))
    torch.testing.assert_close(R @ torch.tensor([1.0, 0, 0], dtype=F64), torch.tensor([0.0, 1, 0], dtype=F64))
    torch.testing.assert_close(matrix_to_axis_angle(R), torch.tensor([0.0, 0.0, math.pi / 2], dtype=F64))


def test_axis_angle_quat_consistency():
    v = torch.randn(40, 3, generator=generator(5), dtype=F64)
    q = axis_angle_to_quat(v)
    assert (q[:, 0] >= 0).all()
    torch.testing.assert_close(quat_to_matrix(q), axis_angle_to_matrix(v))
    small = 1e-3 * v
    torch.testing.assert_close(quat_to_axis_angle(axis_angle_to_quat(small)), small, atol=1e-17, rtol=1e-13)


def test_matrix_to_axis_angle_half_turn():
    for axis in torch.eye(3, dtype=F64):
        R = axis_angle_to_matrix(math.pi * axis)
        v = matrix_to_axis_angle(R)
        torch.testing.assert_close(v.norm(), torch.tensor(math.pi, dtype=F64))
        torch.testing.assert_close(axis_angle_to_matrix(v), R, atol=1e-14, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotation_angle_known_values_including_0_and_pi(dtype):
    axis = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, -0.5], dtype=F64), dim=0)
    angles = torch.tensor([0.0, 1e-6, 0.3, 2.0, math.pi - 1e-6, math.pi], dtype=F64)
    R = axis_angle_to_matrix(angles[:, None] * axis).to(dtype)
    got = rotation_angle(R)
    assert got.dtype == dtype
    tol = dict(atol=1e-6, rtol=0) if dtype == torch.float32 else dict(atol=1e-13, rtol=0)
    torch.testing.assert_close(got, angles.to(dtype), **tol)


def test_rotation_angle_is_more_precise_than_acos_near_zero():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1e-5]))  # float32
    trace_based = torch.acos(((R.diagonal().sum() - 1) / 2).clamp(-1, 1))
    assert abs(rotation_angle(R).item() - 1e-5) < 1e-9
    assert abs(trace_based.item() - 1e-5) > 1e-6  # what the naive formula gets wrong


def test_rotation_angle_between_rotations_matches_relative_angle():
    g = generator(6)
    Ra, Rb = random_rotation(10, g=g), random_rotation(10, g=g)
    rel = rotation_angle(Ra.transpose(-1, -2) @ Rb)
    torch.testing.assert_close(rel, matrix_to_axis_angle(Ra.transpose(-1, -2) @ Rb).norm(dim=-1))


def test_xyzw_wxyz_round_trip_and_known_case():
    q_xyzw = torch.tensor([0.1, 0.2, 0.3, 0.9])
    q = quat_xyzw_to_wxyz(q_xyzw)
    assert torch.equal(q, torch.tensor([0.9, 0.1, 0.2, 0.3]))
    assert torch.equal(quat_wxyz_to_xyzw(q), q_xyzw)
    batch = torch.randn(2, 3, 4)
    assert torch.equal(quat_wxyz_to_xyzw(quat_xyzw_to_wxyz(batch)), batch)


@pytest.mark.parametrize(
    "fn, arg, match",
    [
        (quat_to_matrix, torch.zeros(3), r"q must have shape \(\.\.\., 4\)"),
        (matrix_to_quat, torch.zeros(4, 4), r"R must have shape \(\.\.\., 3, 3\)"),
        (axis_angle_to_matrix, torch.zeros(4), r"v must have shape \(\.\.\., 3\)"),
        (matrix_to_axis_angle, torch.zeros(3), r"R must have shape"),
        (rotation_angle, torch.zeros(2, 3), r"R must have shape"),
        (quat_xyzw_to_wxyz, torch.zeros(3), r"q_xyzw must have shape"),
    ],
)
def test_wrong_shapes_raise_value_error(fn, arg, match):
    with pytest.raises(ValueError, match=match):
        fn(arg)


# ----------------------------------------------------------------------------- gradients


def test_gradcheck_quat_to_matrix():
    q = torch.randn(4, 4, generator=generator(7), dtype=F64, requires_grad=True)
    assert gradcheck(quat_to_matrix, (q,))


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5])
def test_gradcheck_matrix_to_quat_every_branch(index):
    # Rotate the special matrices a little so each selects a different Shepperd branch and
    # sits away from branch switches.
    R0 = SPECIAL_MATRICES[index].to(F64)
    R = (R0 @ axis_angle_to_matrix(torch.tensor([0.05, -0.03, 0.02], dtype=F64))).requires_grad_()
    assert gradcheck(matrix_to_quat, (R,))


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-7, 0.0])
def test_gradcheck_axis_angle_to_matrix_including_identity(scale):
    v = (scale * torch.tensor([0.7, -1.1, 0.4], dtype=F64)).requires_grad_()
    assert gradcheck(axis_angle_to_matrix, (v,))
    assert gradcheck(axis_angle_to_quat, (v,))


def test_axis_angle_to_matrix_jacobian_at_identity_is_hat_basis():
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, torch.zeros(3, dtype=F64))  # (3,3,3)
    for k in range(3):
        torch.testing.assert_close(jac[..., k], _hat(torch.eye(3, dtype=F64)[k]))


@pytest.mark.parametrize("angle", [1.0, 1e-3, 1e-8, 3.0])
def test_gradcheck_matrix_to_axis_angle(angle):
    axis = torch.nn.functional.normalize(torch.tensor([0.2, 0.9, -0.4], dtype=F64), dim=0)
    R = axis_angle_to_matrix(angle * axis).requires_grad_()
    assert gradcheck(matrix_to_axis_angle, (R,))
    q = axis_angle_to_quat(angle * axis).requires_grad_()
    assert gradcheck(quat_to_axis_angle, (q,))


def test_gradcheck_rotation_angle():
    R = random_rotation(5, g=generator(8)).requires_grad_()
    assert gradcheck(rotation_angle, (R,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_are_finite_at_identity_half_turn_and_large_angles(dtype):
    v = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.pi], [300.0, -200.0, 100.0]], dtype=dtype, requires_grad=True)
    R = axis_angle_to_matrix(v)
    (R.sum() + matrix_to_axis_angle(R).sum() + rotation_angle(R).sum() + matrix_to_quat(R).sum()).backward()
    assert torch.isfinite(v.grad).all()


def test_se3_orthonormalize_projects_a_drifted_pose_back_onto_a_rigid_transform():
    g = torch.Generator().manual_seed(0)
    R = axis_angle_to_matrix(torch.randn(5, 3, generator=g))
    pose = se3_from_rt(R, torch.randn(5, 3, generator=g))
    drifted = pose.clone()
    drifted[:, :3, :3] += 1e-3 * torch.randn(5, 3, 3, generator=g)
    fixed = se3_orthonormalize(drifted)
    eye = torch.eye(3).expand(5, 3, 3)
    assert (drifted[:, :3, :3] @ drifted[:, :3, :3].transpose(1, 2) - eye).abs().max() > 1e-4
    torch.testing.assert_close(fixed[:, :3, :3] @ fixed[:, :3, :3].transpose(1, 2), eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(fixed[:, :3, 3], drifted[:, :3, 3])  # the translation is kept
    torch.testing.assert_close(fixed[:, :3, :3], R, atol=5e-3, rtol=0)  # the nearby rotation, not another
    torch.testing.assert_close(se3_orthonormalize(pose), pose, atol=1e-6, rtol=0)  # a rotation stays itself
