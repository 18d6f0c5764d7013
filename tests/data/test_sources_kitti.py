"""KITTI reader: a raw-layout fixture (calibration files, OXTS packets, depth PNGs / 256), the
MonST3R gathered layout, and the real Metric3D KITTI demo frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from mem4d.data.sources import KittiSource
from test_sources_common import (
    assert_reprojects,
    holes,
    render_room_depth,
    room_image,
    room_poses,
    write_png16,
    write_rgb,
)

H, W = 30, 100  # KITTI's wide aspect, small
DRIVE = "2011_09_26_drive_0001_sync"
K2 = np.array([[70.0, 0, 49.3], [0, 70.0, 14.8], [0, 0, 1]])


def rigid(rotvec, t):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


# calibration of the fixture: imu -> velo -> cam0 -> rectified cam0 -> rectified cam2
IMU_TO_VELO = rigid([0.01, -0.02, 0.03], [-0.81, 0.32, -0.8])
VELO_TO_CAM = rigid([0.0, 0.0, 0.0], [0.0, -0.07, -0.27])
VELO_TO_CAM[:3, :3] = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]]) @ Rotation.from_rotvec([0.01, 0.0, -0.01]).as_matrix()
R_RECT = Rotation.from_rotvec([0.005, -0.003, 0.002]).as_matrix()
B2 = np.array([0.06, -0.001, 0.003])  # rectified cam0 -> cam2 offset (baseline)
P_RECT_02 = K2 @ np.concatenate([np.eye(3), B2[:, None]], 1)


def fmt(values):
    return " ".join(f"{x:.12e}" for x in np.ravel(values))


def write_kitti_raw(root, T=5):
    """KITTI raw under root/raw, the depth benchmark's annotations under root/depth."""
    date = root / "raw" / "2011_09_26"
    drive = date / DRIVE
    drive.mkdir(parents=True)
    (date / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        f"R_rect_00: {fmt(R_RECT)}\nP_rect_00: {fmt(K2 @ np.eye(3, 4))}\nP_rect_02: {fmt(P_RECT_02)}\n"
    )
    (date / "calib_velo_to_cam.txt").write_text(
        f"calib_time: 15-Mar-2012 11:37:16\nR: {fmt(VELO_TO_CAM[:3, :3])}\nT: {fmt(VELO_TO_CAM[:3, 3])}\n"
        "delta_f: 0 0\ndelta_c: 0 0\n"
    )
    (date / "calib_imu_to_velo.txt").write_text(
        f"calib_time: 25-May-2012 16:47:16\nR: {fmt(IMU_TO_VELO[:3, :3])}\nT: {fmt(IMU_TO_VELO[:3, 3])}\n"
    )
    rect = np.eye(4)
    rect[:3, :3] = R_RECT
    cam2_from_rect0 = np.eye(4)
    cam2_from_rect0[:3, 3] = B2
    imu_to_cam2 = cam2_from_rect0 @ rect @ VELO_TO_CAM @ IMU_TO_VELO
    cam2world = room_poses(T, seed=5)
    imu2world = cam2world @ imu_to_cam2
    imu2world[:, :3, 3] -= imu2world[0, :3, 3]  # first packet at lat = lon = alt = 0
    r = 6378137.0
    for t in range(T):
        x, y, z = imu2world[t, :3, 3]
        lat = math.degrees(2 * math.atan(math.exp(y / r)) - math.pi / 2)
        lon = math.degrees(x / r)  # scale = cos(lat_0) = 1
        yaw, pitch, roll = Rotation.from_matrix(imu2world[t, :3, :3]).as_euler("ZYX")
        packet = [lat, lon, z, roll, pitch, yaw] + [0.0] * 24
        (drive / "oxts" / "data").mkdir(parents=True, exist_ok=True)
        (drive / "oxts" / "data" / f"{t:010d}.txt").write_text(" ".join(f"{v:.15g}" for v in packet) + "\n")
        depth = render_room_depth(K2, cam2world[t], H, W)
        write_rgb(drive / "image_02" / "data" / f"{t:010d}.png", room_image(depth, t))
        if t > 0:  # like the benchmark, the first frame has no ground truth
            raw = depth * 256.0
            raw[holes((H, W), 0.3, t)] = 0  # sparse LiDAR
            write_png16(root / "depth" / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02" / f"{t:010d}.png", raw)
    return cam2world


def test_kitti_raw_reader_composes_calibration_and_oxts_poses(tmp_path):
    cam2world = write_kitti_raw(tmp_path)
    src = KittiSource(tmp_path / "raw", depth_root=tmp_path / "depth")
    assert src.layout == "raw" and src.sequences() == [DRIVE]
    assert src.num_frames(DRIVE) == 4  # frames 1..4 have ground truth
    clip = src.load(DRIVE, [0, 1, 2, 3])
    assert clip.meta["has_poses"] and clip.meta["frame_ids"][0] == "0000000001"
    np.testing.assert_allclose(clip.intrinsics[0].double().numpy(), K2, atol=1e-5)
    # relative poses equal the true camera-2 poses
    rel = np.linalg.inv(clip.cam2world[0].numpy()) @ clip.cam2world.numpy()
    rel_true = np.linalg.inv(cam2world[1]) @ cam2world[1:]
    np.testing.assert_allclose(rel, rel_true, atol=1e-6)
    assert not clip.valid[0][holes((H, W), 0.3, 1)].any()
    assert_reprojects(clip, [(0, 1), (0, 2), (3, 2)], median_tol=3e-3, min_fraction=0.1)  # sparse: 4 valid neighbours needed


def test_kitti_gathered_layout_takes_intrinsics_from_raw_calibration(tmp_path):
    write_kitti_raw(tmp_path, T=3)
    seq = f"{DRIVE}_02"
    for t in (1, 2):
        for sub, src_path in (
            ("image_gathered", tmp_path / "raw" / "2011_09_26" / DRIVE / "image_02" / "data"),
            ("groundtruth_depth_gathered", tmp_path / "depth" / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02"),
        ):
            (tmp_path / "sel" / sub / seq).mkdir(parents=True, exist_ok=True)
            (tmp_path / "sel" / sub / seq / f"{t:010d}.png").write_bytes((src_path / f"{t:010d}.png").read_bytes())
    with pytest.raises(ValueError, match="no intrinsics"):
        KittiSource(tmp_path / "sel").load(seq, [0])
    src = KittiSource(tmp_path / "sel", raw_root=tmp_path / "raw")
    assert src.layout == "gathered" and src.sequences() == [seq] and src.num_frames(seq) == 2
    clip = src.load(seq, [0, 1])
    assert not clip.meta["has_poses"] and (clip.cam2world == torch.eye(4, dtype=clip.cam2world.dtype)).all()
    np.testing.assert_allclose(clip.intrinsics[1].double().numpy(), K2, atol=1e-5)


def test_kitti_real_metric3d_demo_frames(shared_data):
    src = KittiSource(shared_data / "kitti_depth_metric3d_demo")
    assert src.layout == "flat"
    (seq,) = src.sequences()
    assert src.num_frames(seq) == 3
    clip = src.load(seq, [0, 1, 2])
    assert clip.images.shape == (3, 3, 375, 1242)
    torch.testing.assert_close(
        clip.intrinsics[0], torch.tensor([[707.0493, 0, 604.0814], [0, 707.0493, 180.5066], [0, 0, 1]])
    )
    frac = clip.valid.float().mean(dim=(1, 2))
    assert ((frac > 0.15) & (frac < 0.25)).all()  # README: 18-21 % valid
    d = clip.depth[clip.valid]
    assert 1.0 < float(d.min()) and float(d.max()) < 90.0  # README: about 5-85 m
    assert float(d.median()) > 5.0
    assert not clip.meta["has_poses"]
