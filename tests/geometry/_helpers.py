"""Random test data for the geometry tests (seeded, any dtype)."""

from __future__ import annotations

import torch
from torch import Tensor

from mem4d.geometry.rotation import quat_to_matrix
from mem4d.geometry.se3 import se3_from_rt


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_quat(*shape: int, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """Uniformly random unit quaternions (normalised Gaussians), any sign of w."""
    q = torch.randn(*shape, 4, generator=g, dtype=dtype)
    return q / q.norm(dim=-1, keepdim=True)


def random_rotation(*shape: int, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    return quat_to_matrix(random_quat(*shape, g=g, dtype=dtype))


def random_se3(*shape: int, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    R = random_rotation(*shape, g=g, dtype=dtype)
    t = torch.randn(*shape, 3, generator=g, dtype=dtype)
    return se3_from_rt(R, t)


def random_intrinsics(
    *shape: int, g: torch.Generator, dtype: torch.dtype = torch.float64, skew: bool = False
) -> Tensor:
    """Plausible pinhole intrinsics for images of roughly 64 x 96 pixels."""
    K = torch.zeros(*shape, 3, 3, dtype=dtype)
    K[..., 0, 0] = 80 + 40 * torch.rand(shape, generator=g, dtype=dtype)
    K[..., 1, 1] = 80 + 40 * torch.rand(shape, generator=g, dtype=dtype)
    K[..., 0, 2] = 47.5 + 5 * torch.randn(shape, generator=g, dtype=dtype)
    K[..., 1, 2] = 31.5 + 5 * torch.randn(shape, generator=g, dtype=dtype)
    if skew:
        K[..., 0, 1] = 2 * torch.randn(shape, generator=g, dtype=dtype)
    K[..., 2, 2] = 1
    return K


def random_pts_cam(*shape: int, g: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """Points in front of the camera (z in [1, 5])."""
    xy = torch.randn(*shape, 2, generator=g, dtype=dtype)
    z = 1 + 4 * torch.rand(*shape, 1, generator=g, dtype=dtype)
    return torch.cat([xy * z * 0.3, z], dim=-1)
