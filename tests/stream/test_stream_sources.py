"""Frame sources: natural order, globs, videos, image kinds, and the errors of bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mem4d.stream.sources import ImageSource, VideoSource, natural_key, open_source, read_image


def _png(path, h=40, w=48, value=0):
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_natural_key_orders_numbers_numerically():
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame2b.png", "frame100.png"]
    assert sorted(names, key=natural_key) == ["Frame1.png", "frame2.png", "frame2b.png", "frame10.png", "frame100.png"]


def test_folder_source_natural_order_stride_and_max_frames(tmp_path):
    for i in (0, 1, 2, 10, 11):
        _png(tmp_path / f"f{i}.png", value=i)
    (tmp_path / ".hidden.png").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_text("x")
    src = open_source(tmp_path)
    assert isinstance(src, ImageSource) and src.fps is None and len(src) == 5
    names = [f.name for f in src.frames()]
    assert names == ["f0.png", "f1.png", "f2.png", "f10.png", "f11.png"]
    picked = list(src.frames(stride=2, max_frames=2))
    assert [(f.index, f.name) for f in picked] == [(0, "f0.png"), (2, "f2.png")]
    assert int(picked[1].image[0, 0, 0]) == 2
    assert src.peek().name == "f0.png"


def test_glob_and_single_image(tmp_path):
    for i in (3, 20, 100):
        _png(tmp_path / f"img_{i}.jpg")
    _png(tmp_path / "other.png")
    src = open_source(str(tmp_path / "img_*.jpg"), fps=5.0)
    assert [f.name for f in src.frames()] == ["img_3.jpg", "img_20.jpg", "img_100.jpg"] and src.fps == 5.0
    one = open_source(tmp_path / "other.png")
    assert len(list(one.frames())) == 1


def test_video_source_reads_frames_in_order(tmp_path):
    import imageio_ffmpeg

    path = tmp_path / "v.mp4"
    w = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=8, macro_block_size=16, ffmpeg_log_level="error")
    w.send(None)
    levels = [20, 80, 140, 200, 240]
    for v in levels:
        w.send(np.full((48, 64, 3), v, np.uint8))
    w.close()
    src = open_source(path)
    assert isinstance(src, VideoSource) and src.fps == pytest.approx(8.0)
    frames = list(src.frames())
    assert len(frames) == 5 and frames[0].image.shape == (48, 64, 3)
    np.testing.assert_allclose([f.image.mean() for f in frames], levels, atol=4)
    assert [f.index for f in src.frames(stride=2)] == [0, 2, 4]
    assert [f.index for f in src.frames(stride=2, max_frames=2)] == [0, 2]
    assert src.peek().image.shape == (48, 64, 3)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.mp4", "does not exist"),
    (lambda p: (p / "x.mp4").write_bytes(np.random.default_rng(1).bytes(5000)) and p / "x.mp4", "cannot read video"),
    (lambda p: (p / "e.mp4").write_bytes(b"") or p / "e.mp4", "empty file"),
    (lambda p: (p / "d").mkdir() or p / "d", "no images"),
    (lambda p: str(p / "*.png"), "matches no images"),
])
def test_bad_sources(tmp_path, make, message):
    target = make(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        open_source(target)


def test_folder_with_only_videos_points_at_them(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match="clip.mp4"):
        open_source(tmp_path)


def test_input_and_camera_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        open_source(tmp_path, camera=0)
    with pytest.raises(ValueError, match="no INPUT"):
        open_source(None)


def test_read_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (34, 40, 3), dtype=np.uint8)
    cases = {
        "L": Image.fromarray(rgb).convert("L"),
        "LA": Image.fromarray(rgb).convert("LA"),
        "RGBA": Image.fromarray(rgb).convert("RGBA"),
        "P": Image.fromarray(rgb).convert("P"),
        "1": Image.fromarray(rgb).convert("1"),
        "I16": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
        "F": Image.fromarray(rgb[..., 0].astype(np.float32) / 255.0),
        "CMYK": Image.fromarray(rgb).convert("CMYK"),
    }
    shapes = {}
    for name, img in cases.items():
        ext = "tiff" if name in ("F", "CMYK") else "png"
        path = tmp_path / f"{name}.{ext}"
        img.save(path)
        arr = read_image(path)
        shapes[name] = (arr.shape, arr.dtype)
    assert shapes["L"] == ((34, 40), np.uint8)
    assert shapes["LA"][0] == (34, 40, 2)
    assert shapes["RGBA"][0] == (34, 40, 4)
    assert shapes["P"][0] in ((34, 40, 3), (34, 40, 4))
    assert shapes["1"] == ((34, 40), np.uint8)
    assert shapes["I16"][1] in (np.uint16, np.int32)
    assert shapes["F"][1] == np.float32
    assert shapes["CMYK"][0] == (34, 40, 3)


def test_read_image_corrupt(tmp_path):
    p = tmp_path / "bad.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(p)
