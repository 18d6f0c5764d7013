"""Resize/crop keep intrinsics consistent with the pixels; nearest depth; per-clip colour jitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mem4d.data.sample import Sample
from mem4d.data.transforms import (
    ClipColorJitter,
    center_crop,
    crop,
    resize,
    resize_and_crop_to,
    resize_to_long_side,
    size_for_long_side,
    sizes_for_aspect_ratios,
)
from mem4d.geometry.camera import project, unproject


def make_clip(T=2, H=48, W=64, seed=0) -> Sample:
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[50.0, 0, 30.3], [0, 47.0, 25.1], [0, 0, 1]]).repeat(T, 1, 1)
    depth = 1 + 4 * torch.rand(T, H, W, generator=g)
    valid = torch.rand(T, H, W, generator=g) > 0.2
    depth = torch.where(valid, depth, torch.zeros_like(depth))
    return Sample(
        images=torch.rand(T, 3, H, W, generator=g),
        depth=depth,
        valid=valid,
        intrinsics=K,
        cam2world=torch.eye(4).repeat(T, 1, 1),
        dynamic_mask=torch.rand(T, H, W, generator=g) > 0.5,
        name="clip",
    )


@pytest.mark.parametrize("new_size, window", [((30, 50), (3, 5, 24, 40)), ((96, 80), (10, 7, 64, 64))])
def test_a_projected_point_lands_where_the_new_intrinsics_put_it(new_size, window):
    clip = make_clip()
    H, W = clip.image_size
    X = torch.tensor([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    uv = project(clip.intrinsics[0].double(), X)
    out = crop(resize(clip, new_size), *window)
    sx, sy = new_size[1] / W, new_size[0] / H
    top, left = window[0], window[1]
    expected = torch.stack([(uv[:, 0] + 0.5) * sx - 0.5 - left, (uv[:, 1] + 0.5) * sy - 0.5 - top], -1)
    got = project(out.intrinsics[0].double(), X)
    assert (got - expected).abs().max() < 1e-4
    assert out.image_size == window[2:]


def test_nearest_depth_and_masks_agree_with_the_intrinsics():
    """Each output depth pixel comes from the input pixel under its centre (per the new K)."""
    clip = make_clip(T=1)
    H, W = clip.image_size
    code = (torch.arange(H * W, dtype=torch.float32).reshape(1, H, W) + 1)
    coded = Sample(**{**clip.__dict__, "depth": code, "valid": torch.ones(1, H, W, dtype=torch.bool)})
    for size, pos in [((40, 40), (0.5, 0.5)), ((24, 60), (0.2, 0.9)), ((100, 90), (1.0, 0.0))]:
        out = resize_and_crop_to(coded, size, crop_position=pos)
        assert out.image_size == size
        src = out.depth[0].long() - 1
        us, vs = (src % W).double(), (src // W).double()
        h2, w2 = size
        v2, u2 = torch.meshgrid(torch.arange(h2, dtype=torch.float64), torch.arange(w2, dtype=torch.float64), indexing="ij")
        uv2 = torch.stack([u2, v2], -1)
        pts = unproject(out.intrinsics[0].double(), uv2, torch.ones(h2, w2, dtype=torch.float64))
        uv_src = project(clip.intrinsics[0].double(), pts)
        assert (uv_src[..., 0] - us).abs().max() <= 0.5 + 1e-4
        assert (uv_src[..., 1] - vs).abs().max() <= 0.5 + 1e-4


def test_images_follow_the_intrinsics_too():
    """A linear ramp in the image stays the same function of the ray after resizing (interior)."""
    clip = make_clip(T=1)
    H, W = clip.image_size
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    ramp = (0.1 + 0.8 * (0.6 * u / W + 0.4 * v / H)).float()
    img = Sample(**{**clip.__dict__, "images": ramp.expand(1, 3, H, W).clone()})
    for size in [(30, 40), (72, 96)]:
        out = resize(img, size)
        h2, w2 = size
        v2, u2 = torch.meshgrid(torch.arange(h2, dtype=torch.float64), torch.arange(w2, dtype=torch.float64), indexing="ij")
        pts = unproject(out.intrinsics[0].double(), torch.stack([u2, v2], -1), torch.ones(h2, w2, dtype=torch.float64))
        uv = project(clip.intrinsics[0].double(), pts)
        expected = 0.1 + 0.8 * (0.6 * uv[..., 0] / W + 0.4 * uv[..., 1] / H)
        inner = (slice(3, -3), slice(3, -3))
        assert (out.images[0, 0][inner].double() - expected[inner]).abs().max() < 2e-3


def test_resize_keeps_depth_values_and_valid_consistent():
    clip = make_clip()
    out = resize_and_crop_to(clip, (20, 36))
    assert set(out.depth.unique().tolist()) <= set(clip.depth.unique().tolist())
    assert torch.equal(out.valid, out.depth > 0)
    assert out.dynamic_mask.shape == (2, 20, 36) and out.dynamic_mask.dtype == torch.bool
    assert out.images.min() >= 0 and out.images.max() <= 1
    c = center_crop(clip, (40, 40))
    assert torch.equal(c.depth, clip.depth[:, 4:44, 12:52])
    with pytest.raises(ValueError, match="does not fit"):
        crop(clip, 10, 10, 48, 64)


def test_long_side_sizes_are_multiples_of_16():
    assert size_for_long_side(480, 640) == (384, 512)
    assert size_for_long_side(375, 1242) == (160, 512)
    assert size_for_long_side(436, 1024) == (224, 512)
    assert size_for_long_side(640, 480) == (512, 384)
    assert size_for_long_side(480, 640, long_side=224) == (176, 224)
    sizes = sizes_for_aspect_ratios()
    assert sizes == [(384, 512), (336, 512), (288, 512), (256, 512), (512, 512), (512, 384)]
    assert all(h % 16 == 0 and w % 16 == 0 and max(h, w) == 512 for h, w in sizes)
    assert resize_to_long_side(make_clip(H=48, W=64), long_side=32, multiple=8).image_size == (24, 32)
    assert resize_to_long_side(make_clip(H=48, W=64), long_side=32).image_size == (32, 32)  # 1.5 x 16 rounds up
    with pytest.raises(ValueError, match="multiple"):
        size_for_long_side(480, 640, long_side=500)


def test_colour_jitter_is_one_draw_per_clip_and_seeded():
    base = make_clip(T=1)
    clip = Sample(**{**base.__dict__, "images": base.images.repeat(3, 1, 1, 1), "depth": base.depth.repeat(3, 1, 1),
                     "valid": base.valid.repeat(3, 1, 1), "intrinsics": base.intrinsics.repeat(3, 1, 1),
                     "cam2world": base.cam2world.repeat(3, 1, 1), "dynamic_mask": None})
    jitter = ClipColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    a = jitter(clip, torch.Generator().manual_seed(3))
    b = jitter(clip, torch.Generator().manual_seed(3))
    c = jitter(clip, torch.Generator().manual_seed(4))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert torch.equal(a.images[0], a.images[1]) and torch.equal(a.images[0], a.images[2])  # same change per frame
    assert not torch.allclose(a.images, clip.images, atol=1e-3)
    assert a.images.min() >= 0 and a.images.max() <= 1
    assert a.depth is clip.depth and a.meta["color_jitter"]["brightness"] != 1.0
    off = ClipColorJitter(p=0.0)(clip, torch.Generator().manual_seed(0))
    torch.testing.assert_close(off.images, clip.images)
    np.testing.assert_allclose(
        ClipColorJitter.apply(clip, {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}).images,
        clip.images, atol=1e-6)
