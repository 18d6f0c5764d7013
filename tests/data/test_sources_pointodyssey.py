"""PointOdyssey reader on a fixture in its layout (rgbs/, depths/ 16-bit scaled, anno.npz)."""

from __future__ import annotations

import numpy as np
import torch

from mem4d.data.sources import PointOdysseySource
from mem4d.geometry.camera import project
from mem4d.geometry.se3 import se3_inverse, transform_points
from test_sources_common import assert_reprojects, room_frames, write_png16, write_rgb

H, W = 54, 96  # PointOdyssey's 960x540 aspect, small


def write_pointodyssey(root, T=4):
    poses, K, depths, images = room_frames(T, H, W, seed=3)
    folder = root / "train" / "r4_new_f"
    for t in range(T):
        raw = depths[t] / 1000.0 * 65535.0
        raw[:2] = 65535  # saturated: no surface
        write_png16(folder / "depths" / f"depth_{t:05d}.png", raw)
        write_rgb(folder / "rgbs" / f"rgb_{t:05d}.jpg", images[t])
    # tracks: world points of frame 0's pixels, static
    v, u = np.mgrid[10:50:7, 8:90:9]
    z = depths[0][v, u]
    pts_cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1).reshape(-1, 3)
    pts_world = pts_cam @ poses[0][:3, :3].T + poses[0][:3, 3]
    trajs_3d = np.repeat(pts_world[None], T, 0).astype(np.float32)
    np.savez(
        folder / "anno.npz",
        intrinsics=np.repeat(K[None], T, 0).astype(np.float32),
        extrinsics=np.linalg.inv(poses).astype(np.float32),  # world-to-camera
        trajs_3d=trajs_3d,
        trajs_2d=np.zeros((T, len(pts_world), 2), np.float32),
        visibs=np.ones((T, len(pts_world)), bool),
        valids=np.ones((T, len(pts_world)), bool),
    )
    (root / "train" / "not_a_sequence").mkdir()
    return poses, K, depths


def test_pointodyssey_reader_inverts_extrinsics_scales_depth_and_reprojects(tmp_path):
    poses, _, depths = write_pointodyssey(tmp_path)
    src = PointOdysseySource(tmp_path)
    assert src.sequences() == ["train/r4_new_f"]
    assert PointOdysseySource(tmp_path, split="val").sequences() == []
    clip = src.load("train/r4_new_f", [0, 1, 2, 3])
    np.testing.assert_allclose(clip.cam2world.numpy(), poses, atol=1e-5)
    assert not clip.valid[:, :2].any()  # 65535 = saturated
    # depth = value / 65535 * 1000: quantised to ~1.5 cm
    np.testing.assert_allclose(clip.depth[0, 2:].numpy(), depths[0][2:], atol=0.008)
    assert_reprojects(clip, [(0, 1), (0, 2), (3, 2)], median_tol=5e-3)
    # the tracks land on the surface the depth maps see, in every frame
    tracks = src.tracks("train/r4_new_f", [1, 3])
    assert tracks["trajs_3d"].shape[0] == 2 and tracks["visibs"].all()
    for k, t in enumerate([1, 3]):
        pts_cam = transform_points(se3_inverse(clip.cam2world[t]), tracks["trajs_3d"][k].double())
        uv = project(clip.intrinsics[t].double(), pts_cam).round().long()
        ok = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 2) & (uv[:, 1] < H)
        assert ok.sum() > 20
        d = clip.depth[t][uv[ok, 1], uv[ok, 0]].double()
        rel = ((d - pts_cam[ok, 2]).abs() / d).median()
        assert rel < 0.03  # nearest-pixel lookup on slanted walls + quantisation


def test_pointodyssey_sequence_folder_as_root(tmp_path):
    write_pointodyssey(tmp_path, T=2)
    src = PointOdysseySource(tmp_path / "train" / "r4_new_f")
    assert src.sequences() == ["r4_new_f"] and src.num_frames("r4_new_f") == 2
    assert src.load("r4_new_f", [1]).intrinsics.dtype == torch.float32
