"""Output invariants and conventions of one streamed clip (tiny preset)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_clip

from mem4d.model.camera_head import fov_to_intrinsics, quat_to_rotmat

pytestmark = pytest.mark.usefixtures("single_thread")

H, W, T = 48, 64, 4


@pytest.fixture(scope="module")
def seq(tiny_model):
    with torch.no_grad():
        return tiny_model(make_clip(T, B=2, H=H, W=W, seed=11))


def test_shapes(seq):
    assert seq.pts_world.shape == seq.pts_cam.shape == (2, T, H, W, 3)
    for name in ("conf_world", "conf_cam", "depth", "dynamic_prob"):
        assert getattr(seq, name).shape == (2, T, H, W), name
    assert seq.intrinsics.shape == (2, T, 3, 3) and seq.cam2world.shape == (2, T, 4, 4)
    assert seq.fov_x.shape == (2, T) and seq.quat_wxyz.shape == (2, T, 4) and seq.translation.shape == (2, T, 3)
    assert seq[1].pts_world.shape == (2, H, W, 3) and seq.frame(-1).depth.shape == (2, H, W)
    with pytest.raises(IndexError):
        seq.frame(T)
    for name, x in seq.tensors().items():
        assert torch.isfinite(x).all(), name


def test_confidence_at_least_one(seq):
    assert (seq.conf_world >= 1).all() and (seq.conf_cam >= 1).all()


def test_depth_is_pts_cam_z(seq):
    assert torch.equal(seq.depth, seq.pts_cam[..., 2])


def test_dynamic_prob_is_a_probability(seq):
    assert ((seq.dynamic_prob >= 0) & (seq.dynamic_prob <= 1)).all()


def test_quaternions_unit_canonical_and_pose_orthonormal(seq):
    q = seq.quat_wxyz
    torch.testing.assert_close(q.norm(dim=-1), torch.ones_like(q[..., 0]))
    assert (q[..., 0] >= 0).all()
    R = seq.cam2world[..., :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(R @ R.transpose(-1, -2), eye.expand_as(R), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[:-2], dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(R.float(), quat_to_rotmat(q))
    torch.testing.assert_close(seq.cam2world[..., :3, 3], seq.translation)
    assert torch.equal(seq.cam2world[..., 3, :], torch.tensor([0.0, 0, 0, 1]).expand(2, T, 4))


def test_world_frame_is_camera_zero(seq):
    """cam2world of frame 0 is defined as the identity (the head's pose output is overridden)."""
    assert torch.equal(seq.cam2world[:, 0], torch.eye(4).expand(2, 4, 4))
    assert torch.equal(seq.quat_wxyz[:, 0], torch.tensor([1.0, 0, 0, 0]).expand(2, 4))
    assert not torch.equal(seq.cam2world[:, 1], seq.cam2world[:, 0])


def test_intrinsics_consistent_with_fov(seq):
    fov = seq.fov_x
    assert ((fov > 0) & (fov < math.pi)).all()
    K = seq.intrinsics
    f = (W / 2) / torch.tan(fov / 2)
    torch.testing.assert_close(K[..., 0, 0], f)
    torch.testing.assert_close(K[..., 1, 1], f)
    assert (K[..., 0, 2] == (W - 1) / 2).all() and (K[..., 1, 2] == (H - 1) / 2).all()
    assert (K[..., 2, 2] == 1).all() and (K[..., 0, 1] == 0).all() and (K[..., 2, :2] == 0).all()
    torch.testing.assert_close(fov_to_intrinsics(fov, (H, W)), K)


def test_world_and_camera_pointmaps_are_separate_predictions(seq):
    """Documented choice: the two DPT heads are not forced to agree (pts_world != cam2world . pts_cam
    in general; training pulls them together). Only their shapes and finiteness are contracts."""
    R, t = seq.cam2world[..., :3, :3], seq.cam2world[..., :3, 3]
    mapped = torch.einsum("btij,bthwj->bthwi", R, seq.pts_cam) + t[:, :, None, None]
    assert mapped.shape == seq.pts_world.shape


def test_initial_camera_guess():
    """An untrained model starts near FoV 60 deg and identity motion (stable early training)."""
    from conftest import build_tiny

    model = build_tiny(seed=5)
    with torch.no_grad():
        seq = model(make_clip(2, H=H, W=W))
    torch.testing.assert_close(seq.fov_x, torch.full_like(seq.fov_x, math.pi / 3), atol=0.05, rtol=0)
    assert (seq.quat_wxyz[..., 0] > 0.99).all()


def test_model_cast_to_bfloat16_streams_and_returns_float32():
    from conftest import build_tiny

    model = build_tiny(seed=6).to(torch.bfloat16)
    with torch.no_grad():
        seq = model(make_clip(3, H=32, W=32))
    assert seq.pts_world.dtype == torch.float32 and torch.isfinite(seq.pts_world).all()
