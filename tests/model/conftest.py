"""Fixtures of the Mem4D network tests: a seeded tiny model in eval mode and random clips."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mem4d.config import Mem4DConfig
from mem4d.geometry.camera import depth_to_pts_cam
from mem4d.model.mem4d import Mem4D
from mem4d.model.outputs import FrameOutput


def build_tiny(seed: int = 0, **overrides) -> Mem4D:
    """Tiny preset, fixed seed, eval mode."""
    torch.manual_seed(seed)
    return Mem4D(Mem4DConfig.tiny(**overrides)).eval()


def build_procrustes(seed: int = 0, **heads) -> Mem4D:
    """Tiny preset with ``heads.camera_pose: procrustes`` and the other ``heads`` fields given; fixed seed, eval mode."""
    cfg = Mem4DConfig.tiny()
    return build_tiny(seed, heads=dataclasses.replace(cfg.heads, camera_pose="procrustes", **heads))


def exact_output(depth: torch.Tensor, K: torch.Tensor, dynamic: torch.Tensor) -> FrameOutput:
    """A `FrameOutput` with the given depth (1, H, W), intrinsics (1, 3, 3) and dynamic mask (1, H, W)
    and an identity (uninformed) pose: what the refinement gets from a network with exact depth."""
    pts = depth_to_pts_cam(depth, K)
    one = torch.ones_like(depth)
    return FrameOutput(pts_world=pts, conf_world=one, pts_cam=pts, conf_cam=one, depth=depth, intrinsics=K,
                       cam2world=torch.eye(4)[None], fov_x=torch.ones(1), quat_wxyz=torch.tensor([[1.0, 0, 0, 0]]),
                       translation=torch.zeros(1, 3), dynamic_prob=dynamic.float())


def make_clip(T: int, B: int = 1, H: int = 48, W: int = 64, seed: int = 1) -> torch.Tensor:
    """(B, T, 3, H, W) smooth-ish random frames in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(B, 1, 3, H, W, generator=g)
    drift = torch.rand(B, T, 3, H, W, generator=g)
    return (0.7 * base + 0.3 * drift).clamp(0, 1)


@pytest.fixture(scope="module")
def tiny_model() -> Mem4D:
    return build_tiny()


@pytest.fixture
def single_thread():
    """One intra-op thread: on the shared 2-core machine, two OpenMP threads competing with
    other processes make each tiny op wait for a descheduled thread (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
