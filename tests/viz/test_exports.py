"""Export formats read back: PLY, COLMAP text, nerfstudio transforms.json, GLB, depth colouring/video, fusion."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from mem4d.geometry.rotation import quat_to_matrix
from mem4d.viz.colmap import ColmapTextWriter, read_colmap_text, world2cam_quat_trans
from mem4d.viz.colorize import DepthRange, DepthVideoWriter, colorize_depth, colormap_lut
from mem4d.viz.fusion import VoxelFusion
from mem4d.viz.glb import GLTF_FROM_WORLD, TrimeshMissing, frustum_segments, write_glb
from mem4d.viz.nerfstudio import TransformsJsonWriter, cam2world_opencv_to_opengl
from mem4d.viz.ply import read_ply, write_ply


def _random_cam2world(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    M = np.tile(np.eye(4), (n, 1, 1))
    M[:, :3, :3] = quat_to_matrix(q / q.norm(dim=-1, keepdim=True)).numpy()
    M[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64).numpy() * 3
    return M


# ----------------------------------------------------------------------------------------- PLY
@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    conf = rng.random(50).astype(np.float32)
    path = tmp_path / "c.ply"
    write_ply(path, xyz, rgb, extra={"confidence": conf}, binary=binary, comment="test")
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert ("binary_little_endian" if binary else "ascii") in header
    assert "element vertex 50" in header and "property uchar red" in header
    back = read_ply(path)
    np.testing.assert_allclose(back["xyz"], xyz, rtol=1e-6)
    np.testing.assert_array_equal(back["rgb"], rgb)
    np.testing.assert_allclose(back["confidence"], conf, rtol=1e-6)


def test_ply_empty_and_float_colours(tmp_path):
    write_ply(tmp_path / "e.ply", np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    assert read_ply(tmp_path / "e.ply")["xyz"].shape == (0, 3)
    write_ply(tmp_path / "f.ply", np.ones((2, 3)), np.array([[1.0, 0.5, 0.0], [0, 0, 0]]))
    np.testing.assert_array_equal(read_ply(tmp_path / "f.ply")["rgb"][0], [255, 128, 0])


def test_ply_readable_by_trimesh(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    xyz = np.random.default_rng(1).normal(size=(20, 3))
    write_ply(tmp_path / "t.ply", xyz, np.full((20, 3), 7, np.uint8))
    cloud = trimesh.load(tmp_path / "t.ply")
    np.testing.assert_allclose(np.asarray(cloud.vertices), xyz, rtol=1e-6, atol=1e-6)


def test_ply_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_ply(tmp_path / "x.ply", np.zeros((3, 2)))
    (tmp_path / "bad.ply").write_bytes(b"not a ply")
    with pytest.raises(ValueError, match="not a PLY"):
        read_ply(tmp_path / "bad.ply")


# --------------------------------------------------------------------------------------- COLMAP
def test_colmap_world_to_camera_round_trip(tmp_path):
    c2w = _random_cam2world(5)
    Ks = [np.array([[100.0 + i, 0, 31.5], [0, 99.0, 23.5], [0, 0, 1]]) for i in range(5)]
    w = ColmapTextWriter(tmp_path / "colmap")
    for i in range(5):
        w.add_image(f"{i:06d}.png", c2w[i], Ks[i], (48, 64))
    pts = np.random.default_rng(0).normal(size=(7, 3))
    w.write_points(pts, np.full((7, 3), 200, np.uint8))
    w.close()
    model = read_colmap_text(tmp_path / "colmap")
    for i in range(5):
        img = model["images"][f"{i:06d}.png"]
        np.testing.assert_allclose(img["cam2world"], c2w[i], atol=1e-9)
        # COLMAP's meaning: x_cam = R(q) x_world + t with the camera in OpenCV axes
        R = quat_to_matrix(torch.from_numpy(img["qvec"])).numpy()
        x_world = pts[i]
        x_cam = np.linalg.inv(c2w[i]) @ np.append(x_world, 1.0)
        np.testing.assert_allclose(R @ x_world + img["tvec"], x_cam[:3], atol=1e-9)
        cam = model["cameras"][img["camera_id"]]
        assert cam["model"] == "PINHOLE" and cam["params"][2] == pytest.approx(32.0)  # 31.5 + 0.5
        np.testing.assert_allclose(cam["K"], Ks[i])
    np.testing.assert_allclose(model["points"][0], pts, rtol=1e-6)
    lines = (tmp_path / "colmap" / "images.txt").read_text().splitlines()
    data = [ln for ln in lines if not ln.startswith("#")]
    assert data[1] == ""  # the (empty) POINTS2D line follows each image line


def test_colmap_shared_camera(tmp_path):
    K = np.array([[50.0, 0, 10.0], [0, 51.0, 12.0], [0, 0, 1]])
    w = ColmapTextWriter(tmp_path, shared_intrinsics=(K, (24, 32)))
    w.add_image("a.png", np.eye(4))
    w.add_image("b.png", _random_cam2world(1)[0])
    w.write_points(np.zeros((0, 3)))
    w.close()
    model = read_colmap_text(tmp_path)
    assert list(model["cameras"]) == [1] and {im["camera_id"] for im in model["images"].values()} == {1}
    q, t = world2cam_quat_trans(np.eye(4))
    np.testing.assert_allclose(q, [1, 0, 0, 0]) and np.testing.assert_allclose(t, 0)


# ------------------------------------------------------------------------------------ nerfstudio
def test_transforms_json_opengl_flip(tmp_path):
    c2w = _random_cam2world(3, seed=3)
    K = np.array([[80.0, 0, 31.5], [0, 82.0, 23.5], [0, 0, 1]])
    w = TransformsJsonWriter(tmp_path / "transforms.json")
    for i in range(3):
        w.add_frame(f"rgb/{i:06d}.png", c2w[i], K, (48, 64))
    w.close(ply_file_path="static.ply")
    tf = json.loads((tmp_path / "transforms.json").read_text())
    assert tf["camera_model"] == "OPENCV" and tf["fl_x"] == 80.0 and tf["cx"] == 32.0 and tf["w"] == 64
    for i, frame in enumerate(tf["frames"]):
        gl = np.array(frame["transform_matrix"])
        # OpenGL camera: +y up and the camera looks down -z; same centre, same world
        np.testing.assert_allclose(gl[:3, 3], c2w[i, :3, 3])
        np.testing.assert_allclose(gl[:3, 1], -c2w[i, :3, 1])
        np.testing.assert_allclose(-gl[:3, 2], c2w[i, :3, 2])
        np.testing.assert_allclose(gl @ np.diag([1, -1, -1, 1.0]), c2w[i], atol=1e-12)
    np.testing.assert_allclose(cam2world_opencv_to_opengl(np.eye(4)), np.diag([1, -1, -1, 1.0]))


def test_transforms_json_without_frames_is_valid(tmp_path):
    w = TransformsJsonWriter(tmp_path / "t.json")
    w.close()
    assert json.loads((tmp_path / "t.json").read_text())["frames"] == []


# ------------------------------------------------------------------------------------------ GLB
def test_glb_has_points_and_frustums(tmp_path):
    trimesh = pytest.importorskip("trimesh")
    xyz = np.random.default_rng(0).normal(size=(30, 3))
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    cams = [(c, K, (48, 64)) for c in _random_cam2world(3)]
    write_glb(tmp_path / "s.glb", xyz, np.zeros((30, 3), np.uint8), cams, frustum_depth=0.3)
    scene = trimesh.load(tmp_path / "s.glb")
    geoms = {type(g).__name__: g for g in scene.geometry.values()}
    assert set(geoms) == {"PointCloud", "Path3D"}
    np.testing.assert_allclose(np.sort(geoms["PointCloud"].vertices, axis=0),
                               np.sort(xyz @ GLTF_FROM_WORLD.T, axis=0), atol=1e-5)
    seg = frustum_segments(np.eye(4), K, (48, 64), 2.0)
    assert seg.shape == (8, 2, 3)
    np.testing.assert_allclose(seg[0, 1], [(-0.5 - 31.5) / 50 * 2, (-0.5 - 23.5) / 50 * 2, 2.0])


def test_glb_without_trimesh_is_skipped_with_a_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "trimesh", None)
    with pytest.raises(TrimeshMissing, match=r"pip install 'mem4d\[export\]'"):
        write_glb(tmp_path / "s.glb", np.zeros((1, 3)), None, [], 1.0)


# ----------------------------------------------------------------------------- colour / video
def test_colorize_depth_near_warm_far_cold_invalid_black():
    depth = np.array([[1.0, 2.0, 3.0, 0.0, np.nan]])
    rgb = colorize_depth(depth, 1.0, 3.0)
    lut = colormap_lut("turbo")
    np.testing.assert_array_equal(rgb[0, 0], lut[255])
    np.testing.assert_array_equal(rgb[0, 2], lut[0])
    assert (rgb[0, 3:] == 0).all()
    assert colorize_depth(np.full((4, 4), 2.0)).shape == (4, 4, 3)


def test_depth_range_smooths():
    r = DepthRange(momentum=0.5)
    assert r.update(np.full((4, 4), 1.0))[0] == pytest.approx(1.0)
    lo, _ = r.update(np.full((4, 4), 3.0))
    assert lo == pytest.approx(2.0)
    assert r.update(np.zeros((4, 4)))[0] == pytest.approx(2.0)  # no valid pixels: unchanged


def test_depth_video_writer(tmp_path):
    import imageio_ffmpeg

    w = DepthVideoWriter(tmp_path / "d.mp4", (32, 48), fps=5)
    for v in (1.0, 2.0, 3.0):
        w.write(colorize_depth(np.full((32, 48), v), 1.0, 3.0))
    w.close()
    w.close()
    gen = imageio_ffmpeg.read_frames(str(tmp_path / "d.mp4"))
    assert tuple(next(gen)["size"]) == (48, 32)
    assert sum(1 for _ in gen) == 3
    with pytest.raises(ValueError, match="must be"):
        DepthVideoWriter(tmp_path / "e.mp4", (32, 48)).write(np.zeros((16, 16, 3), np.uint8))


# --------------------------------------------------------------------------------------- fusion
def test_fusion_filters_confidence_motion_and_invalid():
    pts = np.zeros((2, 3, 3))
    pts[..., 2] = 1.0
    pts[0, :, 0] = [0.0, 1.0, 2.0]
    pts[1, :, 0] = [3.0, 4.0, 5.0]
    conf = np.full((2, 3), 3.0)
    conf[0, 1] = 1.2  # not confident
    dyn = np.zeros((2, 3))
    dyn[1, 0] = 0.8  # moving
    pts[1, 1] = np.nan  # invalid
    f = VoxelFusion(voxel_size=0.1, conf_threshold=1.5)
    assert f.add(pts, np.full((2, 3, 3), 9, np.uint8), conf=conf, dynamic_prob=dyn) == 3
    xyz, rgb, count = f.points()
    np.testing.assert_allclose(np.sort(xyz[:, 0]), [0.0, 2.0, 5.0], atol=1e-6)
    assert (rgb == 9).all() and (count == 1).all()


def test_fusion_averages_within_a_voxel_across_frames():
    f = VoxelFusion(voxel_size=1.0, conf_threshold=1.0)
    f.add(np.array([[[0.2, 0.2, 0.2]]]), np.array([[[0, 0, 0]]], np.uint8))
    f.add(np.array([[[0.4, 0.6, 0.8], [5.5, 0.5, 0.5]]]), np.array([[[200, 100, 50], [1, 2, 3]]], np.uint8))
    xyz, rgb, count = f.points()
    order = np.argsort(xyz[:, 0])
    np.testing.assert_allclose(xyz[order[0]], [0.3, 0.4, 0.5], atol=1e-6)
    np.testing.assert_array_equal(rgb[order[0]], [100, 50, 25])
    np.testing.assert_array_equal(count[order], [2, 1])
    assert len(f) == 2


def test_fusion_is_bounded_by_its_cap():
    rng = np.random.default_rng(0)
    f = VoxelFusion(voxel_size=0.01, max_voxels=1000, conf_threshold=1.0)
    for _ in range(10):
        f.add(rng.uniform(-5, 5, size=(32, 32, 3)))
        assert len(f) <= 1000
    assert f.coarsenings >= 1 and f.voxel_size > 0.01
    assert f.points_in == 10 * 32 * 32
    _, _, count = f.points()
    assert count.sum() == 10 * 32 * 32  # no point lost when voxels merge


def test_fusion_automatic_voxel_size():
    f = VoxelFusion(voxel_size=None, auto_pixels=2.0)
    depth = np.full((4, 4), 3.0)
    pts = np.concatenate([np.zeros((4, 4, 2)), depth[..., None]], -1)
    f.add(pts, conf=np.full((4, 4), 5.0), depth=depth, fx=300.0)
    assert f.voxel_size == pytest.approx(2 * 3.0 / 300.0)
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelFusion(voxel_size=-1.0)
