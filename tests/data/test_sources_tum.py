"""TUM RGB-D / Bonn reader on a fixture in the exact TUM on-disk format, and on the real fr1/xyz
ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mem4d.data.sources import BonnSource, TumSource
from mem4d.data.sources.tum import associate_timestamps, read_tum_trajectory
from test_sources_common import (
    assert_reprojects,
    holes,
    render_room_depth,
    room_image,
    write_png16,
    write_rgb,
)

H, W = 48, 64
FPS_T0 = 1305031100.0
FRAME_TIMES = FPS_T0 + 0.1 * np.arange(5)  # colour timestamps; the last one has no depth
OMEGA = np.array([0.3, 1.0, 0.4])  # rad/s, constant axis: slerp reproduces R(t) exactly


def pose_at(t: np.ndarray) -> np.ndarray:
    """OpenCV cam2world with linear translation and constant-axis rotation in time."""
    dt = np.atleast_1d(t) - FPS_T0
    R = (Rotation.from_rotvec([0.0, -0.05, 0.0]) * Rotation.from_rotvec(dt[:, None] * OMEGA)).as_matrix()
    c = np.array([-0.2, 0.0, 0.3]) + dt[:, None] * np.array([1.5, 0.5, -1.0])
    P = np.tile(np.eye(4), (len(dt), 1, 1))
    P[:, :3, :3], P[:, :3, 3] = R, c
    return P


def write_tum_sequence(folder, K, *, bonn=False):
    """rgb.txt/depth.txt/groundtruth.txt + PNGs exactly as TUM ships them."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rgb_lines = ["# color images", "# file: 'fixture.bag'", "# timestamp filename"]
    depth_lines = ["# depth maps", "# file: 'fixture.bag'", "# timestamp filename"]
    for k, t in enumerate(FRAME_TIMES):
        cam2world = pose_at(t)[0]
        depth = render_room_depth(K, cam2world, H, W)
        depth_raw = depth * 5000.0
        depth_raw[holes((H, W), 0.1, k)] = 0
        name = f"{t:.6f}.png"
        write_rgb(folder / "rgb" / name, room_image(depth, k))
        rgb_lines.append(f"{t:.6f} rgb/{name}")
        if k < len(FRAME_TIMES) - 1:  # the last colour frame has no depth: dropped
            td = t + 0.011  # depth stamps are a little later, as in TUM
            write_png16(folder / "depth" / f"{td:.6f}.png", depth_raw)
            depth_lines.append(f"{td:.6f} depth/{td:.6f}.png")
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (folder / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    # Ground truth at 100 Hz, offset from the frames, from 5 ms before frame 1 (frame 0 has none).
    gt_t = np.arange(FRAME_TIMES[1] - 0.005, FRAME_TIMES[-1] + 0.05, 0.01)
    P = pose_at(gt_t)
    q = Rotation.from_matrix(P[:, :3, :3]).as_quat()  # x, y, z, w
    lines = ["# ground truth trajectory", "# file: 'fixture.bag'", "# timestamp tx ty tz qx qy qz qw"]
    for t, p, qq in zip(gt_t, P, q):
        lines.append(f"{t:.4f} " + " ".join(f"{x:.9f}" for x in [*p[:3, 3], *qq]))
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")


def fixture_K():
    return np.array([[52.0, 0, 31.5], [0, 52.0, 23.5], [0, 0, 1]])


@pytest.fixture(scope="module")
def tum_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tum")
    write_tum_sequence(root / "rgbd_dataset_freiburg3_fixture", fixture_K())
    write_tum_sequence(root / "rgbd_bonn_fixture", fixture_K())
    return root


def test_tum_reader_associates_interpolates_and_converts(tum_root):
    src = TumSource(tum_root, intrinsics=(52.0, 52.0, 31.5, 23.5), sequences=["rgbd_dataset_*"])
    assert src.sequences() == ["rgbd_dataset_freiburg3_fixture"]
    seq = src.sequences()[0]
    # frame 0: no ground truth; frame 4: no depth -> frames 1, 2, 3 remain
    assert src.num_frames(seq) == 3
    np.testing.assert_allclose(src.timestamps(seq), FRAME_TIMES[1:4])
    clip = src.load(seq, [0, 1, 2])
    assert clip.images.shape == (3, 3, H, W) and clip.depth.shape == (3, H, W)
    # poses interpolated at the colour timestamps equal the true ones
    np.testing.assert_allclose(clip.cam2world.numpy(), pose_at(FRAME_TIMES[1:4]), atol=2e-6)
    # depth / 5000 with 0 invalid
    assert not clip.valid[0][holes((H, W), 0.1, 1)].any()
    assert (clip.depth[~clip.valid] == 0).all()
    assert_reprojects(clip, [(0, 1), (0, 2), (2, 1)], median_tol=1e-3)
    assert clip.meta["timestamps"][0] == pytest.approx(FRAME_TIMES[1])
    # frame_range slices the associated frames (e.g. MonST3R's Bonn frames 30-139)
    sub = TumSource(tum_root, sequences=["rgbd_dataset_*"], frame_range=(1, 3))
    np.testing.assert_allclose(sub.timestamps(seq), FRAME_TIMES[2:4])


def test_tum_default_intrinsics_come_from_the_sensor_name(tum_root):
    src = TumSource(tum_root, sequences=["rgbd_dataset_*"])
    K = src.load(src.sequences()[0], [0]).intrinsics[0]
    torch.testing.assert_close(K[0, 0], torch.tensor(535.4))  # freiburg3
    bonn = BonnSource(tum_root, sequences=["rgbd_bonn_*"])
    clip = bonn.load("rgbd_bonn_fixture", [0, 1])
    torch.testing.assert_close(clip.intrinsics[0, 0, 0], torch.tensor(542.822841))
    assert clip.meta["pose_frame"] == "mocap_marker" and clip.name.startswith("bonn/")


def test_association_is_one_to_one_and_bounded():
    a = np.array([0.0, 0.033, 0.066, 0.5])
    b = np.array([0.01, 0.02, 0.07, 0.9])
    assert associate_timestamps(a, b, 0.02) == [(0, 0), (1, 1), (2, 2)]


def test_real_tum_groundtruth_parses_as_cam2world_wxyz(shared_data):
    path = shared_data / "tum_fr1_xyz_trajectories" / "freiburg1_xyz-groundtruth.txt"
    times, cam2world = read_tum_trajectory(path)
    assert cam2world.shape == (3000, 4, 4) and times[0] == pytest.approx(1305031098.6659)
    # first line: 1.3563 0.6305 1.6380 0.6132 0.5962 -0.3311 -0.3986 (tx ty tz qx qy qz qw)
    R = Rotation.from_quat([0.6132, 0.5962, -0.3311, -0.3986]).as_matrix()
    np.testing.assert_allclose(cam2world[0, :3, :3].numpy(), R, atol=1e-6)
    np.testing.assert_allclose(cam2world[0, :3, 3].numpy(), [1.3563, 0.6305, 1.6380])
    R_all = cam2world[:, :3, :3]
    eye = torch.eye(3, dtype=R_all.dtype).expand_as(R_all)
    assert (R_all @ R_all.transpose(-1, -2) - eye).abs().max() < 1e-9
