"""`Sample`: one clip with ground truth, the interface every data source produces.

Conventions (docs/CONVENTIONS.md): OpenCV cameras, `cam2world` poses, z-depth with a `valid`
mask, images float in [0, 1], world frame = camera of frame 0 after `reanchor()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

from mem4d.geometry.se3 import reanchor_to_first_frame, se3_inverse


@dataclass
class Sample:
    """A clip of T frames of size H x W with ground truth.

    Attributes:
        images: (T, 3, H, W) float in [0, 1].
        depth: (T, H, W) z-depth in metres (0 where invalid).
        valid: (T, H, W) bool, True where `depth` is a valid measurement.
        intrinsics: (T, 3, 3) pinhole intrinsics in pixels.
        cam2world: (T, 4, 4) camera-to-world poses.
        dynamic_mask: (T, H, W) bool, True on independently moving surfaces (None if unknown).
        instance_ids: (T, H, W) int64, 0 = static background, k > 0 = moving object k (None if unknown).
        scene_flow: (T, H, W, 3) world-frame displacement of each pixel's surface point from
            frame t to frame t+1 (zero for the last frame; None if unknown).
        name: identifier of the clip (dataset/scene/frames).
        meta: free-form extra information (dataset name, seed, generator knobs...).
    """

    images: Tensor
    depth: Tensor
    valid: Tensor
    intrinsics: Tensor
    cam2world: Tensor
    dynamic_mask: Tensor | None = None
    instance_ids: Tensor | None = None
    scene_flow: Tensor | None = None
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def tensors(self) -> dict[str, Tensor]:
        """All tensor fields that are set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}

    def to(self, device: torch.device | str) -> "Sample":
        """Moves every tensor to `device`."""
        return replace(self, **{name: value.to(device) for name, value in self.tensors().items()})

    def slice(self, index: slice | Tensor | list[int]) -> "Sample":
        """The sub-clip of the given frames (world frame unchanged; call `reanchor()` after)."""
        return replace(self, **{name: value[index] for name, value in self.tensors().items()})

    def reanchor(self) -> "Sample":
        """Re-expresses poses (and scene flow) in the frame of the first camera, so cam2world[0] == I."""
        cam2world = reanchor_to_first_frame(self.cam2world.double())
        flow = self.scene_flow
        if flow is not None:  # a displacement turns with the world frame; it does not translate
            world2cam0 = se3_inverse(self.cam2world[0].double())
            flow = torch.einsum("ij,thwj->thwi", world2cam0[:3, :3].to(flow.dtype), flow)
        cam2world = cam2world.to(self.cam2world.dtype)
        return replace(self, cam2world=cam2world, scene_flow=flow)

    def validate(self) -> "Sample":
        """Checks the invariants every source must satisfy; raises ValueError naming the broken one.

        Finite values, consistent shapes, frame 0 at identity, orthonormal rotations with det +1,
        positive focal lengths, non-negative depth.
        """
        T, H, W = self.images.shape[0], self.images.shape[-2], self.images.shape[-1]
        expect = {
            "images": (T, 3, H, W),
            "depth": (T, H, W),
            "valid": (T, H, W),
            "intrinsics": (T, 3, 3),
            "cam2world": (T, 4, 4),
            "dynamic_mask": (T, H, W),
            "instance_ids": (T, H, W),
            "scene_flow": (T, H, W, 3),
        }
        for name, value in self.tensors().items():
            if name in expect and tuple(value.shape) != expect[name]:
                raise ValueError(f"Sample {self.name!r}: {name} has shape {tuple(value.shape)}, expected {expect[name]}")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise ValueError(f"Sample {self.name!r}: {name} has non-finite values")
        if self.valid.dtype != torch.bool:
            raise ValueError(f"Sample {self.name!r}: valid must be bool, got {self.valid.dtype}")
        if self.images.min() < 0 or self.images.max() > 1:
            raise ValueError(f"Sample {self.name!r}: images must be in [0, 1]")
        if (self.depth < 0).any():
            raise ValueError(f"Sample {self.name!r}: negative depth")
        eye = torch.eye(4, dtype=self.cam2world.dtype, device=self.cam2world.device)
        if not torch.allclose(self.cam2world[0], eye, atol=1e-5):
            raise ValueError(f"Sample {self.name!r}: cam2world[0] is not the identity; call reanchor()")
        R = self.cam2world[:, :3, :3].double()
        ortho = R @ R.transpose(-1, -2) - torch.eye(3, dtype=R.dtype, device=R.device)
        if ortho.abs().max() > 1e-4 or (torch.linalg.det(R) - 1).abs().max() > 1e-4:
            raise ValueError(f"Sample {self.name!r}: cam2world rotations are not orthonormal with det +1")
        if not (self.cam2world[:, 3, :] == eye[3]).all():
            raise ValueError(f"Sample {self.name!r}: cam2world last row must be [0, 0, 0, 1]")
        if (self.intrinsics[:, 0, 0] <= 0).any() or (self.intrinsics[:, 1, 1] <= 0).any():
            raise ValueError(f"Sample {self.name!r}: focal lengths must be positive")
        return self
