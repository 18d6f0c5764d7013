"""Sintel reader on a fixture of .dpt / .cam / .png files in the Sintel layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mem4d.data.sources import SintelSource
from mem4d.data.sources.sintel import TAG_FLOAT, read_cam, read_dpt, write_cam, write_dpt
from test_sources_common import assert_reprojects, room_frames, write_rgb

H, W = 36, 84  # Sintel's 1024x436 aspect, small


def write_sintel(root, T=4):
    poses, K, depths, images = room_frames(T, H, W)
    training = root / "training"
    for seq in ("alley_9", "cave_9"):
        for d in ("final", "clean", "depth", "camdata_left"):
            (training / d / seq).mkdir(parents=True)
        for t in range(T):
            stem = f"frame_{t + 1:04d}"
            depth = depths[t].astype(np.float32)
            depth[:3, :] = 1e10  # "sky"
            write_dpt(training / "depth" / seq / f"{stem}.dpt", depth)
            write_cam(training / "camdata_left" / seq / f"{stem}.cam", K, np.linalg.inv(poses[t])[:3])
            write_rgb(training / "final" / seq / f"{stem}.png", images[t])
            write_rgb(training / "clean" / seq / f"{stem}.png", images[t])
    (training / "final" / "no_depth_seq").mkdir()  # images without depth/camera: not a sequence
    return poses, K, depths


def test_dpt_and_cam_byte_layout(tmp_path):
    depth = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_dpt(tmp_path / "a.dpt", depth)
    raw = (tmp_path / "a.dpt").read_bytes()
    assert len(raw) == 4 + 8 + 12 * 4
    assert np.frombuffer(raw[:4], "<f4")[0] == np.float32(TAG_FLOAT)
    assert tuple(np.frombuffer(raw[4:12], "<i4")) == (4, 3)  # width, then height
    np.testing.assert_array_equal(read_dpt(tmp_path / "a.dpt"), depth)
    M, N = np.arange(9.0).reshape(3, 3), np.arange(12.0).reshape(3, 4)
    write_cam(tmp_path / "a.cam", M, N)
    assert len((tmp_path / "a.cam").read_bytes()) == 4 + 21 * 8
    M2, N2 = read_cam(tmp_path / "a.cam")
    np.testing.assert_array_equal(M2, M)
    np.testing.assert_array_equal(N2, N)
    (tmp_path / "bad.dpt").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="not a Sintel"):
        read_dpt(tmp_path / "bad.dpt")


def test_sintel_reader_inverts_world_to_camera_and_reprojects(tmp_path):
    poses, K, _ = write_sintel(tmp_path)
    src = SintelSource(tmp_path, max_depth=1000.0)
    assert src.sequences() == ["alley_9", "cave_9"]
    assert src.num_frames("alley_9") == 4
    clip = src.load("alley_9", [0, 1, 2, 3])
    np.testing.assert_allclose(clip.cam2world.numpy(), poses, atol=1e-9)
    torch.testing.assert_close(clip.intrinsics[0].double(), torch.from_numpy(K), atol=1e-5, rtol=0)
    assert not clip.valid[:, :3].any() and clip.valid[:, 3:].all()  # sky beyond max_depth
    assert_reprojects(clip, [(0, 1), (0, 3), (3, 2)], median_tol=1e-4)
    assert clip.meta["frame_ids"][0] == "frame_0001"
    # the other pass and the training/ folder as root work too
    clean = SintelSource(tmp_path / "training", pass_name="clean", sequences=["cave_*"])
    assert clean.sequences() == ["cave_9"] and clean.load("cave_9", [1]).depth.shape == (1, H, W)
