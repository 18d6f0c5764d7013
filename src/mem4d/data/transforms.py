"""Clip transforms: resize and crop that keep the intrinsics right, and one colour jitter per clip.

Geometry is never interpolated: depth, valid masks, dynamic masks, instance ids and scene
flow are resampled by *nearest* pixel (centre-correct: output pixel ``i`` takes input pixel
``floor((i + 0.5) * in / out)``), so no depth is invented across a discontinuity and
``valid`` stays exactly where ``depth`` is a measurement. Images are resized bilinearly
(antialiased when shrinking). Intrinsics follow the pixel-centre convention of
:func:`mem4d.geometry.camera.scale_intrinsics` / :func:`~mem4d.geometry.camera.crop_intrinsics`,
the same mapping ``u' = (u + 0.5) * W'/W - 0.5`` the resampling uses.

Sizes are ``(H, W)`` everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.data.sample import Sample
from mem4d.geometry.camera import crop_intrinsics, scale_intrinsics

__all__ = [
    "resize",
    "crop",
    "center_crop",
    "resize_and_crop_to",
    "size_for_long_side",
    "sizes_for_aspect_ratios",
    "resize_to_long_side",
    "ClipColorJitter",
]

_PER_PIXEL = ("depth", "valid", "dynamic_mask", "instance_ids", "scene_flow")


def _nearest_index(n_in: int, n_out: int, device: torch.device) -> Tensor:
    idx = torch.floor((torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out)).long()
    return idx.clamp_(0, n_in - 1)


def _gather_hw(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Nearest resampling of a (T, H, W[, C]) per-pixel tensor."""
    return x[:, rows][:, :, cols]


def resize(sample: Sample, size: tuple[int, int], *, antialias: bool = True) -> Sample:
    """Resizes every frame to ``size = (H', W')`` (aspect not kept; see :func:`resize_and_crop_to`).

    Images: bilinear (``align_corners=False``, antialiased when shrinking); depth and masks:
    nearest; intrinsics: ``scale_intrinsics(K, W'/W, H'/H)``.
    """
    H2, W2 = int(size[0]), int(size[1])
    if H2 <= 0 or W2 <= 0:
        raise ValueError(f"resize: size must be positive (H, W), got {size}")
    H, W = sample.image_size
    if (H2, W2) == (H, W):
        return sample
    images = F.interpolate(
        sample.images, size=(H2, W2), mode="bilinear", align_corners=False, antialias=antialias and (H2 < H or W2 < W)
    ).clamp_(0.0, 1.0)
    rows = _nearest_index(H, H2, sample.depth.device)
    cols = _nearest_index(W, W2, sample.depth.device)
    changes = {"images": images}
    for name in _PER_PIXEL:
        value = getattr(sample, name)
        if value is not None:
            changes[name] = _gather_hw(value, rows, cols)
    K = scale_intrinsics(sample.intrinsics.double(), W2 / W, H2 / H).to(sample.intrinsics.dtype)
    return replace(sample, intrinsics=K, **changes)


def crop(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """The window of ``height x width`` pixels whose first pixel is (row ``top``, column ``left``)."""
    H, W = sample.image_size
    if not (0 <= top and 0 <= left and height > 0 and width > 0 and top + height <= H and left + width <= W):
        raise ValueError(f"crop: window top={top} left={left} {height}x{width} does not fit in {H}x{W}")
    changes = {"images": sample.images[..., top : top + height, left : left + width]}
    for name in _PER_PIXEL:
        value = getattr(sample, name)
        if value is not None:
            changes[name] = value[:, top : top + height, left : left + width]
    K = crop_intrinsics(sample.intrinsics.double(), float(left), float(top)).to(sample.intrinsics.dtype)
    return replace(sample, intrinsics=K, **changes)


def center_crop(sample: Sample, size: tuple[int, int]) -> Sample:
    """The centred ``size = (H', W')`` window (offsets rounded down)."""
    H, W = sample.image_size
    return crop(sample, (H - size[0]) // 2, (W - size[1]) // 2, size[0], size[1])


def resize_and_crop_to(
    sample: Sample,
    size: tuple[int, int],
    *,
    crop_position: tuple[float, float] = (0.5, 0.5),
    antialias: bool = True,
) -> Sample:
    """Exactly ``size = (H', W')`` keeping the aspect ratio: resize to cover, then crop.

    The scale is the smallest that makes both sides at least the target; the excess of the
    longer side is cropped at ``crop_position`` (fractions along (y, x) of the free range:
    (0.5, 0.5) = centre crop, (0, 0) = top-left; a random position gives a random crop).
    """
    H, W = sample.image_size
    H2, W2 = int(size[0]), int(size[1])
    scale = max(H2 / H, W2 / W)
    Hr, Wr = max(H2, round(H * scale)), max(W2, round(W * scale))
    out = resize(sample, (Hr, Wr), antialias=antialias)
    fy, fx = (min(max(float(c), 0.0), 1.0) for c in crop_position)
    top, left = int(math.floor(fy * (Hr - H2))), int(math.floor(fx * (Wr - W2)))
    return crop(out, top, left, H2, W2)


def size_for_long_side(height: int, width: int, long_side: int = 512, multiple: int = 16) -> tuple[int, int]:
    """(H', W') with the long side ``long_side`` and the short side the multiple of ``multiple``
    nearest to the aspect-preserving length (halves round up; at least ``multiple``).

    ``long_side`` itself must be a multiple of ``multiple``. The small aspect change is taken
    up by the crop of :func:`resize_and_crop_to`.
    """
    if long_side % multiple:
        raise ValueError(f"size_for_long_side: long_side {long_side} is not a multiple of {multiple}")
    if height >= width:
        short = max(multiple, int(math.floor(width * long_side / height / multiple + 0.5)) * multiple)
        return long_side, short
    short = max(multiple, int(math.floor(height * long_side / width / multiple + 0.5)) * multiple)
    return short, long_side


def sizes_for_aspect_ratios(
    aspect_ratios: Sequence[float] = (4 / 3, 32 / 21, 16 / 9, 2.0, 1.0, 3 / 4),
    long_side: int = 512,
    multiple: int = 16,
) -> list[tuple[int, int]]:
    """(H, W) sizes with the given width/height ratios, long side ``long_side``, multiples of ``multiple``.

    The default gives (384, 512), (336, 512), (288, 512), (256, 512), (512, 512), (512, 384):
    the landscape, square and portrait shapes used for mixed-aspect training.
    """
    sizes = []
    for r in aspect_ratios:
        if r <= 0:
            raise ValueError(f"sizes_for_aspect_ratios: aspect ratios must be > 0, got {r}")
        if long_side % multiple:
            raise ValueError(f"sizes_for_aspect_ratios: long_side {long_side} is not a multiple of {multiple}")
        if r >= 1:
            size = (max(multiple, int(math.floor(long_side / r / multiple + 0.5)) * multiple), long_side)
        else:
            size = (long_side, max(multiple, int(math.floor(long_side * r / multiple + 0.5)) * multiple))
        if size not in sizes:
            sizes.append(size)
    return sizes


def resize_to_long_side(sample: Sample, long_side: int = 512, multiple: int = 16, **kwargs) -> Sample:
    """Keeps the clip's aspect ratio (to within a multiple): :func:`size_for_long_side` + :func:`resize_and_crop_to`."""
    return resize_and_crop_to(sample, size_for_long_side(*sample.image_size, long_side, multiple), **kwargs)


# -- colour -------------------------------------------------------------------------------------

_LUMA = (0.299, 0.587, 0.114)


def _gray(images: Tensor) -> Tensor:
    r, g, b = images.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def _rotate_hue(images: Tensor, angle: float) -> Tensor:
    """Rotates chroma by ``angle`` radians about the grey axis in YIQ space (linear, keeps luma)."""
    rgb2yiq = images.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    c, s = math.cos(angle), math.sin(angle)
    rot = images.new_tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    M = torch.linalg.inv(rgb2yiq) @ rot @ rgb2yiq
    return torch.einsum("ij,tjhw->tihw", M, images)


@dataclass(frozen=True)
class ClipColorJitter:
    """One random colour change applied identically to every frame of a clip.

    Factors are drawn uniformly: brightness and contrast and saturation in ``[1 - x, 1 + x]``,
    hue rotation in ``[-hue, hue]`` turns (0.5 = half a turn). Contrast blends with the clip's
    mean grey level (one value for the whole clip), saturation with each pixel's grey.
    ``p`` is the probability of jittering a clip at all.
    """

    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3
    hue: float = 0.0
    p: float = 1.0

    def sample_params(self, generator: torch.Generator | None = None) -> dict[str, float]:
        u = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
        if u[0] >= self.p:
            return {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
        return {
            "brightness": 1.0 + self.brightness * (2 * u[1] - 1),
            "contrast": 1.0 + self.contrast * (2 * u[2] - 1),
            "saturation": 1.0 + self.saturation * (2 * u[3] - 1),
            "hue": self.hue * (2 * u[4] - 1),
        }

    @staticmethod
    def apply(sample: Sample, params: dict[str, float]) -> Sample:
        x = sample.images
        x = x * params["brightness"]
        mean = _gray(x.clamp(0, 1)).mean()
        x = (x - mean) * params["contrast"] + mean
        g = _gray(x)
        x = (x - g) * params["saturation"] + g
        if params["hue"] != 0.0:
            x = _rotate_hue(x, 2 * math.pi * params["hue"])
        meta = {**sample.meta, "color_jitter": dict(params)}
        return replace(sample, images=x.clamp(0.0, 1.0), meta=meta)

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        return self.apply(sample, self.sample_params(generator))
