"""NRGBD reader on a fixture in its layout (OpenGL poses in 4-line blocks, depth in mm, a NaN pose)."""

from __future__ import annotations

import numpy as np
import torch

from mem4d.data.sources import NrgbdSource
from test_sources_common import assert_reprojects, holes, render_room_depth, room_image, room_poses, write_png16, write_rgb

H, W = 48, 64
FOCAL = 55.4  # focal.txt of a small fixture (the release: 554.2562584220408 at 640x480)


def write_nrgbd(root, T=5, nan_frame=2):
    folder = root / "green_room"
    poses_cv = room_poses(T)
    K = np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1]])
    blocks = []
    for t in range(T):
        depth = render_room_depth(K, poses_cv[t], H, W)
        raw = depth * 1000
        raw[holes((H, W), 0.1, t)] = 0
        write_png16(folder / "depth" / f"depth{t}.png", raw)
        write_rgb(folder / "images" / f"img{t}.png", room_image(depth, t))
        gl = poses_cv[t] @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
        if t == nan_frame:
            gl = np.full((4, 4), np.nan)
        blocks.append("\n".join(" ".join(f"{x:.10f}" if np.isfinite(x) else "nan" for x in row) for row in gl))
    (folder / "poses.txt").write_text("\n".join(blocks) + "\n")
    (folder / "focal.txt").write_text(f"{FOCAL}\n")
    return poses_cv


def test_nrgbd_reader_converts_opengl_drops_nan_poses_and_reprojects(tmp_path):
    poses = write_nrgbd(tmp_path)
    src = NrgbdSource(tmp_path)
    assert src.sequences() == ["green_room"]
    assert src.num_frames("green_room") == 4  # frame 2 has a NaN pose
    clip = src.load("green_room", [0, 1, 2, 3])
    assert clip.meta["frame_ids"] == ["0", "1", "3", "4"]
    np.testing.assert_allclose(clip.cam2world.numpy(), poses[[0, 1, 3, 4]], atol=1e-9)
    torch.testing.assert_close(clip.intrinsics[0, 0, 0], torch.tensor(FOCAL, dtype=torch.float32))
    assert clip.intrinsics[0, 0, 2] == W / 2 and clip.intrinsics[0, 1, 2] == H / 2
    assert not clip.valid[0][holes((H, W), 0.1, 0)].any() and (clip.depth[~clip.valid] == 0).all()
    assert_reprojects(clip, [(0, 1), (1, 2), (3, 2)], median_tol=1e-3)


def test_nrgbd_default_focal_without_focal_txt(tmp_path):
    write_nrgbd(tmp_path, T=2, nan_frame=-1)
    (tmp_path / "green_room" / "focal.txt").unlink()
    clip = NrgbdSource(tmp_path / "green_room").load("green_room", [0])
    torch.testing.assert_close(clip.intrinsics[0, 1, 1], torch.tensor(554.2562584220408, dtype=torch.float32))
