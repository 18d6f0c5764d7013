"""Preprocessing: colour/bit-depth conversion, resize + crop to multiples of 16, intrinsics that follow."""

from __future__ import annotations

import numpy as np
import pytest

from mem4d.stream.preprocess import Preprocessor, parse_intrinsics, to_rgb_float


def test_to_rgb_float_conversions():
    g8 = np.array([[0, 255]], np.uint8)
    np.testing.assert_allclose(to_rgb_float(g8)[0, 1], [1, 1, 1])
    g16 = np.array([[0, 65535, 32768]], np.uint16)
    out = to_rgb_float(g16)
    assert out.shape == (1, 3, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0], [0, 1, 32768 / 65535], rtol=1e-6)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # alpha is dropped, not composited
    np.testing.assert_allclose(to_rgb_float(rgba)[0, 0], [1, 0, 0])
    la = np.stack([np.full((2, 2), 128, np.uint8), np.zeros((2, 2), np.uint8)], -1)
    np.testing.assert_allclose(to_rgb_float(la)[0, 0], [128 / 255] * 3, rtol=1e-6)
    np.testing.assert_allclose(to_rgb_float(np.array([[2.0, -1.0]], np.float32))[0, :, 0], [1, 0])
    i32 = np.array([[1000, 65535]], np.int32)
    np.testing.assert_allclose(to_rgb_float(i32)[0, :, 0], [1000 / 65535, 1], rtol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.array([[np.nan, 0.5]], np.float32), "NaN"),
    (np.array([[np.inf, 0.5]], np.float64), "NaN"),
    (np.zeros((4, 4, 5), np.uint8), "channels"),
    (np.zeros((4,), np.uint8), "expected an image"),
    (np.zeros((2, 2), np.complex64), "unsupported"),
])
def test_to_rgb_float_rejects(bad, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_float(bad)


@pytest.mark.parametrize("hw, long_side, expected", [
    ((480, 640), 512, (384, 512)),
    ((1080, 1920), 512, (288, 512)),
    ((640, 480), 512, (512, 384)),
    ((48, 64), 64, (48, 64)),
    ((100, 100), 64, (64, 64)),
    ((33, 500), 64, (16, 64)),
])
def test_output_sizes_are_multiples_of_16(hw, long_side, expected):
    pre = Preprocessor(long_side)
    x = pre(np.zeros((*hw, 3), np.uint8))
    assert tuple(x.shape) == (3, *expected) and pre.size == expected
    assert all(s % 16 == 0 for s in expected) and max(expected) == long_side


def test_intrinsics_follow_the_pixels():
    """A bright dot at a known input pixel lands where the mapped intrinsics project its ray."""
    H0, W0 = 90, 160
    fx, fy, cx, cy = 120.0, 110.0, 81.3, 43.7
    u0, v0 = 120, 30
    img = np.zeros((H0, W0), np.float32)
    img[v0 - 2:v0 + 3, u0 - 2:u0 + 3] = 1.0
    pre = Preprocessor(64, intrinsics=(fx, fy, cx, cy))
    x = pre(img).numpy()[0]
    K = pre.intrinsics
    assert K is not None and pre.size == (32, 64)
    ray = np.array([(u0 - cx) / fx, (v0 - cy) / fy, 1.0])
    u1, v1 = K[0, 0] * ray[0] + K[0, 2], K[1, 1] * ray[1] + K[1, 2]
    vv, uu = np.mgrid[: x.shape[0], : x.shape[1]]
    w = x / x.sum()
    assert abs((w * uu).sum() - u1) < 0.15 and abs((w * vv).sum() - v1) < 0.15


def test_mixed_sizes_resized_with_one_warning():
    messages = []
    pre = Preprocessor(64, warn=messages.append)
    a = pre(np.zeros((48, 64, 3), np.uint8), "a")
    b = pre(np.zeros((60, 80, 3), np.uint8), "b")
    c = pre(np.zeros((30 * 2, 40 * 2, 3), np.uint8), "c")
    assert a.shape == b.shape == c.shape == (3, 48, 64)
    assert len(messages) == 1 and "resizing" in messages[0] and pre.resized_frames == 2


def test_tiny_frames_are_refused():
    pre = Preprocessor(64)
    with pytest.raises(ValueError, match="at least 32 pixels"):
        pre(np.zeros((31, 200, 3), np.uint8), "small.png")
    pre(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 32 pixels"):  # later frames too
        pre(np.zeros((16, 16, 3), np.uint8))


@pytest.mark.parametrize("size", [0, 8, 100, 31])
def test_bad_long_side(size):
    with pytest.raises(ValueError, match="multiple of 16"):
        Preprocessor(size)


def test_parse_intrinsics():
    assert parse_intrinsics("500,501.5,320,240") == (500.0, 501.5, 320.0, 240.0)
    assert parse_intrinsics("500 500 320 240") == (500.0, 500.0, 320.0, 240.0)
    for bad in ("500,500,320", "a,b,c,d", "500,500,320,240,1", "nan,500,1,1", "0,500,1,1", ""):
        with pytest.raises(ValueError, match="--intrinsics"):
            parse_intrinsics(bad)
