"""`mem4d reconstruct`, run in-process through `mem4d.cli.main.main` with a tiny checkpoint.

Every output format is read back and checked against the model's own prediction; every bad
input fails with its message, a nonzero exit code and no output folder; Ctrl-C leaves a valid
partial result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mem4d.cli.main import main
from mem4d.config import Mem4DConfig
from mem4d.data.synthetic import make_scene
from mem4d.eval.trajectory_io import read_tum_trajectory
from mem4d.model.mem4d import Mem4D
from mem4d.viz.colmap import read_colmap_text
from mem4d.viz.ply import read_ply

H, W, T = 48, 64, 6


def _tiny_model() -> Mem4D:
    """The tiny preset nudged to plausible outputs: depth ~2.3 m, confidence ~3.7, a moving camera."""
    torch.manual_seed(0)
    model = Mem4D(Mem4DConfig.tiny()).eval()
    with torch.no_grad():
        for head in (model.head_cam, model.head_world):
            head.dpt.out_conv3.weight.mul_(0.1)
            head.dpt.out_conv3.bias.copy_(torch.tensor([0.0, 0.0, 1.2, 1.0]))
        last = model.camera_head.mlp[-1]
        last.weight.mul_(30.0)
        last.bias[2] = 0.15
        last.bias[5:8] = torch.tensor([0.2, -0.05, 0.1])
    return model


@pytest.fixture(scope="module")
def single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, single_thread):
    """A tiny checkpoint, a folder of PNGs (natural-sort names) and the same frames as an mp4."""
    import imageio_ffmpeg

    root = tmp_path_factory.mktemp("reconstruct_inputs")
    _tiny_model().save_pretrained(root / "ckpt")
    sample = make_scene(0, T, image_size=(H, W))
    frames = (sample.images.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    (root / "frames").mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(root / "frames" / f"frame{i}.png")  # frame10 would sort after frame9
    writer = imageio_ffmpeg.write_frames(str(root / "clip.mp4"), (W, H), fps=10, macro_block_size=16,
                                         ffmpeg_log_level="error")
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()
    return {"root": root, "ckpt": str(root / "ckpt"), "frames": root / "frames", "video": root / "clip.mp4",
            "rgb": frames}


def _run(inp, out: Path, ckpt: str, *extra: str) -> int:
    threads = [] if "--threads" in extra else ["--threads", "1"]
    return main(["reconstruct", str(inp), "--out", str(out), "--ckpt", ckpt, "--size", "64", "--no-progress", *threads,
                 *extra])


def _reference(ckpt: str, rgb: np.ndarray):
    """The model's own per-frame prediction for the processed frames."""
    model = Mem4D.from_pretrained(ckpt).eval()
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    state = model.init_state(1, tuple(x.shape[-2:]))
    outs = []
    with torch.inference_mode():
        for t in range(len(x)):
            out, state = model.step(x[t:t + 1], state)
            outs.append(out)
    return outs


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


@pytest.fixture(scope="module")
def folder_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("folder_run") / "recon"
    assert _run(inputs["frames"], out, inputs["ckpt"], "--scene-memory") == 0
    return out


def test_folder_input_writes_every_output(folder_run, inputs, capsys):
    out = folder_run
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True and meta["frames"] == T and meta["size"] == [H, W]
    assert meta["input_kind"] == "images" and meta["timestamps"] == "frame_index" and meta["motion_head"] is True
    for name in ("trajectory.txt", "trajectory_loop_corrected.txt", "intrinsics.txt", "frames.txt", "depth.mp4",
                 "static.ply", "scene.glb",
                 "transforms.json", "colmap/cameras.txt", "colmap/images.txt", "colmap/points3D.txt",
                 "scene_memory"):
        assert (out / name).exists(), name
    for sub, ext in (("rgb", "png"), ("depth", "png"), ("depth", "npy"), ("conf", "npy"), ("pts_world", "npy"),
                     ("pts_cam", "npy"), ("dynamic", "png"), ("dynamic", "npy"), ("moving", "ply")):
        names = sorted(p.name for p in (out / sub).glob(f"*.{ext}"))
        assert names == [f"{i:06d}.{ext}" for i in range(T)], (sub, ext)
    assert not _leftovers(out.parent)
    # frames.txt keeps the natural order of the source names
    rows = [ln.split() for ln in (out / "frames.txt").read_text().splitlines() if not ln.startswith("#")]
    assert [r[3] for r in rows] == [f"frame{i}.png" for i in range(T)]
    from mem4d.scene import SceneMemory

    assert SceneMemory.load(out / "scene_memory").stats().n_frames == T
    # the processed input is the input (64x48 needs no resize)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "rgb" / "000003.png")), inputs["rgb"][3])


def test_outputs_match_the_model(folder_run, inputs):
    out = folder_run
    ref = _reference(inputs["ckpt"], inputs["rgb"])
    traj = read_tum_trajectory(out / "trajectory.txt")
    np.testing.assert_allclose(traj.timestamps, np.arange(T))
    c2w_ref = torch.stack([o.cam2world[0] for o in ref]).double()
    torch.testing.assert_close(traj.cam2world, c2w_ref, atol=1e-5, rtol=0)
    assert torch.linalg.norm(c2w_ref[1:, :3, 3], dim=-1).min() > 0.1  # the camera really moves
    K = np.loadtxt(out / "intrinsics.txt", comments="#", ndmin=2)
    assert K.shape == (T, 4)
    K_ref = np.array([[o.intrinsics[0, 0, 0], o.intrinsics[0, 1, 1], o.intrinsics[0, 0, 2], o.intrinsics[0, 1, 2]]
                      for o in ref], dtype=np.float64)
    np.testing.assert_allclose(K, K_ref, rtol=1e-6)
    for t in (0, T - 1):
        stem = f"{t:06d}"
        depth = np.load(out / "depth" / f"{stem}.npy")
        assert depth.dtype == np.float32 and depth.shape == (H, W)
        np.testing.assert_allclose(depth, ref[t].depth[0].numpy(), rtol=1e-5)
        png = np.asarray(Image.open(out / "depth" / f"{stem}.png"))
        assert png.dtype == np.uint16
        np.testing.assert_allclose(png / 1000.0, depth, atol=0.5e-3 + 1e-7)
        pts = np.load(out / "pts_world" / f"{stem}.npy")
        assert pts.dtype == np.float32 and pts.shape == (H, W, 3)
        np.testing.assert_allclose(pts, ref[t].pts_world[0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.load(out / "pts_cam" / f"{stem}.npy"), ref[t].pts_cam[0].numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(np.load(out / "conf" / f"{stem}.npy"), ref[t].conf_world[0].numpy(), rtol=1e-5)
        dyn = np.load(out / "dynamic" / f"{stem}.npy")
        np.testing.assert_allclose(dyn, ref[t].dynamic_prob[0].numpy(), atol=1e-6)
        dyn_png = np.asarray(Image.open(out / "dynamic" / f"{stem}.png"))
        assert dyn_png.dtype == np.uint8 and np.abs(dyn_png / 255.0 - dyn).max() <= 0.5 / 255 + 1e-6
        moving = read_ply(out / "moving" / f"{stem}.ply")
        conf, valid = np.load(out / "conf" / f"{stem}.npy"), depth > 0
        threshold = float(np.quantile(conf[valid].astype(np.float64), 0.1))  # the default: the least confident 10 % out
        assert len(moving["xyz"]) == int(((dyn > 0.5) & (conf >= threshold) & valid).sum())
    static = read_ply(out / "static.ply")
    assert len(static["xyz"]) >= 1 and static["rgb"].dtype == np.uint8
    assert np.isfinite(static["xyz"]).all()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["static_points"] == len(static["xyz"]) and meta["voxel_size"] > 0


def test_colmap_and_nerfstudio_reproduce_cam2world(folder_run):
    out = folder_run
    traj = read_tum_trajectory(out / "trajectory.txt").cam2world.numpy()
    K = np.loadtxt(out / "intrinsics.txt", comments="#", ndmin=2)
    model = read_colmap_text(out / "colmap")
    assert len(model["images"]) == T and len(model["cameras"]) == T
    for t in range(T):
        img = model["images"][f"{t:06d}.png"]
        np.testing.assert_allclose(img["cam2world"], traj[t], atol=1e-6)
        # world-to-camera as COLMAP stores it: x_cam = R(q) x_world + t
        cam = model["cameras"][img["camera_id"]]
        assert cam["model"] == "PINHOLE" and (cam["width"], cam["height"]) == (W, H)
        fx, fy, cx, cy = cam["params"]
        np.testing.assert_allclose([fx, fy, cx - 0.5, cy - 0.5], K[t], rtol=1e-6)
        assert img["qvec"][0] >= 0
    xyz, _ = model["points"]
    assert len(xyz) == len(read_ply(out / "static.ply")["xyz"])
    tf = json.loads((out / "transforms.json").read_text())
    assert tf["camera_model"] == "OPENCV" and tf["ply_file_path"] == "static.ply"
    assert len(tf["frames"]) == T
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    for t, frame in enumerate(tf["frames"]):
        assert frame["file_path"] == f"rgb/{t:06d}.png" and (out / frame["file_path"]).is_file()
        assert (out / frame["depth_file_path"]).is_file()
        np.testing.assert_allclose(np.array(frame["transform_matrix"]) @ flip, traj[t], atol=1e-6)
        np.testing.assert_allclose([frame["fl_x"], frame["fl_y"], frame["cx"] - 0.5, frame["cy"] - 0.5], K[t],
                                   rtol=1e-6)
        assert (frame["w"], frame["h"]) == (W, H)


def test_glb_and_depth_video_are_readable(folder_run):
    import imageio_ffmpeg

    trimesh = pytest.importorskip("trimesh")
    scene = trimesh.load(folder_run / "scene.glb")
    kinds = {type(g).__name__ for g in scene.geometry.values()}
    assert "Path3D" in kinds  # the camera frustums
    gen = imageio_ffmpeg.read_frames(str(folder_run / "depth.mp4"))
    meta = next(gen)
    assert tuple(meta["size"]) == (W, H)
    assert sum(1 for _ in gen) == T


def test_video_input_and_given_intrinsics(inputs, tmp_path):
    out = tmp_path / "recon"
    fx, fy, cx, cy = 60.0, 58.0, 31.0, 24.5
    rc = _run(inputs["video"], out, inputs["ckpt"], "--intrinsics", f"{fx},{fy},{cx},{cy}", "--no-glb",
              "--pointmap-dtype", "float16", "--stride", "2")
    assert rc == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["input_kind"] == "video" and meta["fps"] == pytest.approx(10.0) and meta["frames"] == T // 2
    assert meta["timestamps"] == "seconds" and not (out / "scene.glb").exists()
    traj = read_tum_trajectory(out / "trajectory.txt")
    np.testing.assert_allclose(traj.timestamps, np.arange(0, T, 2) / 10.0)  # source index / fps
    K = np.loadtxt(out / "intrinsics.txt", comments="#", ndmin=2)
    np.testing.assert_allclose(K, np.tile([fx, fy, cx, cy], (T // 2, 1)))  # 64x48 in and out: unchanged
    cams = read_colmap_text(out / "colmap")["cameras"]
    assert len(cams) == 1  # one shared camera for fixed intrinsics
    # pointmaps re-derived from the predicted depth with the given intrinsics
    depth = np.load(out / "depth" / "000001.npy")
    pts_cam = np.load(out / "pts_cam" / "000001.npy")
    assert pts_cam.dtype == np.float16
    u, v = 10, 40
    np.testing.assert_allclose(pts_cam[v, u].astype(np.float64),
                               depth[v, u] * np.array([(u - cx) / fx, (v - cy) / fy, 1.0]), rtol=2e-3)
    pts_world = np.load(out / "pts_world" / "000001.npy").astype(np.float64)
    c2w = traj.cam2world[1].numpy()
    np.testing.assert_allclose(pts_world, pts_cam.astype(np.float64) @ c2w[:3, :3].T + c2w[:3, 3], atol=5e-3)


def test_resize_crop_and_intrinsics_follow_the_input(inputs, tmp_path):
    """A 100x70 input at --size 64: processed 64x48 (cover + centre crop), intrinsics mapped."""
    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(2):
        img = Image.fromarray(inputs["rgb"][i]).resize((100, 70))
        img.save(folder / f"{i}.png")
    out = tmp_path / "recon"
    assert _run(folder, out, inputs["ckpt"], "--intrinsics", "80,80,49.5,34.5", "--no-video") == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["size"] == [48, 64] and meta["source_size"] == [70, 100]
    s = 64 / 100  # cover: width 100 -> 64, height 70 -> 45 < 48, so scale = 48/70
    s = max(48 / 70, 64 / 100)
    Hr, Wr = max(48, round(70 * s)), max(64, round(100 * s))
    top, left = (Hr - 48) // 2, (Wr - 64) // 2
    fx = 80 * Wr / 100
    cx = (49.5 + 0.5) * Wr / 100 - 0.5 - left
    cy = (34.5 + 0.5) * Hr / 70 - 0.5 - top
    K = np.loadtxt(out / "intrinsics.txt", comments="#", ndmin=2)
    np.testing.assert_allclose(K[0], [fx, 80 * Hr / 70, cx, cy], rtol=1e-6)
    assert np.asarray(Image.open(out / "rgb" / "000001.png")).shape == (48, 64, 3)


def test_image_kinds_are_converted_and_mixed_sizes_resized(inputs, tmp_path, capsys):
    folder = tmp_path / "kinds"
    folder.mkdir()
    rgb = inputs["rgb"]
    Image.fromarray(rgb[0]).convert("L").save(folder / "a1.png")  # greyscale
    Image.fromarray(rgb[1]).convert("RGBA").save(folder / "a2.png")  # RGBA
    grey16 = (rgb[2].mean(-1) * 257).astype(np.uint16)
    Image.fromarray(grey16).save(folder / "a3.png")  # 16-bit
    Image.fromarray(rgb[3]).resize((80, 60)).save(folder / "a10.png")  # other size, natural sort: last
    out = tmp_path / "recon"
    assert _run(folder, out, inputs["ckpt"], "--no-video", "--no-glb") == 0
    err = capsys.readouterr().err
    assert "warning" in err and "resizing" in err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == 4 and meta["mixed_size_frames"] == 1
    names = [ln.split()[3] for ln in (out / "frames.txt").read_text().splitlines() if not ln.startswith("#")]
    assert names == ["a1.png", "a2.png", "a3.png", "a10.png"]
    grey = np.asarray(Image.open(out / "rgb" / "000000.png"))
    assert grey.shape == (H, W, 3) and (grey[..., 0] == grey[..., 1]).all()
    g16 = np.asarray(Image.open(out / "rgb" / "000002.png")).astype(int)
    assert np.abs(g16[..., 0] - rgb[2].mean(-1)).max() <= 1.01


def test_keyboard_interrupt_leaves_a_partial_result(inputs, tmp_path, monkeypatch, capsys):
    from mem4d.stream import sources

    real_iter = sources.ImageSource._iter

    def interrupted_iter(self, stride):
        for k, frame in enumerate(real_iter(self, stride)):
            if k == 3:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(sources.ImageSource, "_iter", interrupted_iter)
    out = tmp_path / "recon"
    assert _run(inputs["frames"], out, inputs["ckpt"]) == 130
    assert "interrupted after 3 frames" in capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is False and meta["frames"] == 3
    traj = read_tum_trajectory(out / "trajectory.txt")
    assert len(traj) == 3
    assert len(np.loadtxt(out / "intrinsics.txt", comments="#", ndmin=2)) == 3
    assert sorted(p.name for p in (out / "depth").glob("*.npy")) == [f"{i:06d}.npy" for i in range(3)]
    assert len(read_ply(out / "static.ply")["xyz"]) >= 1
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 3
    assert len(read_colmap_text(out / "colmap")["images"]) == 3
    assert not _leftovers(tmp_path)


def test_interrupt_while_writing_finishes_the_frame(inputs, tmp_path, monkeypatch):
    """A real SIGINT during a frame's writes is held until that frame is complete."""
    import signal

    from mem4d.stream.sinks import ReconstructionWriter

    real_write = ReconstructionWriter.write_frame

    def write_then_signal(self, rec):
        if rec.index == 1:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-frame
        real_write(self, rec)

    monkeypatch.setattr(ReconstructionWriter, "write_frame", write_then_signal)
    out = tmp_path / "recon"
    assert _run(inputs["frames"], out, inputs["ckpt"], "--no-video", "--no-glb") == 130
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is False and meta["frames"] == 2
    assert sorted(p.name for p in (out / "pts_world").iterdir()) == ["000000.npy", "000001.npy"]


def test_camera_stopped_with_ctrl_c_is_a_complete_result(inputs, tmp_path, monkeypatch):
    from mem4d.stream import sources

    class FakeCamera(sources.FrameSource):
        kind = "camera"

        def __init__(self, index):
            super().__init__()
            self.description, self.fps = f"camera {index}", 30.0

        def _iter(self, stride):
            for i in range(100):
                if i == 3:
                    raise KeyboardInterrupt  # the user stops the live stream
                yield sources.RawFrame(i, inputs["rgb"][i % T])

    monkeypatch.setattr(sources, "CameraSource", FakeCamera)
    out = tmp_path / "live"
    rc = main(["reconstruct", "--camera", "0", "--out", str(out), "--ckpt", inputs["ckpt"], "--size", "64",
               "--no-progress", "--no-video"])
    assert rc == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["complete"] is True and meta["stopped_by_user"] is True and meta["frames"] == 3
    assert meta["input"] == "camera 0" and meta["input_kind"] == "camera"
    np.testing.assert_allclose(read_tum_trajectory(out / "trajectory.txt").timestamps, [0, 1 / 30, 2 / 30], atol=1e-6)


def test_overwrite_replaces_only_an_earlier_reconstruction(inputs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    for extra in ([], ["--overwrite"]):  # the user's own files are never replaced, not even with --overwrite
        assert _run(inputs["frames"], mine, inputs["ckpt"], "--max-frames", "2", *extra) == 2
        assert "not a mem4d reconstruction" in capsys.readouterr().err
        assert (mine / "thesis.tex").read_text() == "precious" and len(list(mine.iterdir())) == 1
    recon = tmp_path / "recon"
    assert _run(inputs["frames"], recon, inputs["ckpt"], "--max-frames", "1", "--no-video") == 0
    assert "1 frame (48x64 HxW)" in capsys.readouterr().out  # one frame, not "1 frames"
    assert _run(inputs["frames"], recon, inputs["ckpt"], "--max-frames", "2", "--no-video") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _run(inputs["frames"], recon, inputs["ckpt"], "--max-frames", "2", "--overwrite", "--no-video") == 0
    assert json.loads((recon / "meta.json").read_text())["frames"] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(inputs["frames"], empty, inputs["ckpt"], "--max-frames", "1", "--no-video") == 0
    assert json.loads((empty / "meta.json").read_text())["complete"] is True
    assert not _leftovers(tmp_path)


def test_an_unwritable_output_is_an_input_error_naming_out(inputs, tmp_path, monkeypatch, capsys):
    import tempfile

    out = tmp_path / "ro" / "recon"
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # a read-only place (root ignores chmod)
    assert _run(inputs["frames"], out, inputs["ckpt"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "permission denied" in err and ".partial-" not in err
    monkeypatch.undo()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".recon.partial-abc"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)  # the check passes but the folder cannot be made
    assert _run(inputs["frames"], out, inputs["ckpt"]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "Permission denied" in err and ".partial-" not in err
    assert not out.exists()


def _garbage_ckpt(root: Path) -> str:
    d = root / "garbage_ckpt"
    d.mkdir()
    Mem4DConfig.tiny()
    (d / "config.json").write_text(json.dumps({"mem4d_config": Mem4DConfig.tiny().to_dict()}))
    (d / "model.safetensors").write_bytes(os.urandom(2048))
    return str(d)


def _foreign_ckpt(root: Path) -> str:
    d = root / "foreign_ckpt"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "hidden_size": 768}))
    (d / "model.safetensors").write_bytes(b"")
    return str(d)


def _mismatched_ckpt(root: Path) -> str:
    d = root / "mismatched_ckpt"
    torch.manual_seed(0)
    Mem4D(Mem4DConfig.tiny()).save_pretrained(d)
    cfg = Mem4DConfig.tiny().to_dict()
    cfg["dim"] = 64
    (d / "config.json").write_text(json.dumps({"mem4d_config": cfg}))
    return str(d)


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("corrupt_video", "cannot read video"),
    ("empty_folder", "no images"),
    ("tiny_image", "at least 32 pixels"),
    ("nan_image", "NaN"),
    ("corrupt_image", "cannot read image"),
    ("garbage_ckpt", "corrupt or not a safetensors"),
    ("foreign_ckpt", "not a mem4d config"),
    ("mismatched_ckpt", "does not match"),
    ("missing_ckpt", "--ckpt"),
    ("bad_intrinsics", "--intrinsics must be four numbers"),
    ("negative_focal", "focal lengths must be > 0"),
    ("bad_size", "multiple of 16"),
    ("size_hxw", "long side only"),
    ("bad_conf_threshold", "--conf-threshold takes auto"),
    ("bad_stride", "--stride"),
    ("no_glob_match", "matches no images"),
    ("fp16_cpu", "fp16"),
])
def test_bad_inputs_fail_cleanly(case, message, inputs, tmp_path, capsys):
    ckpt = inputs["ckpt"]
    inp: object = inputs["frames"]
    extra: list[str] = []
    if case == "missing":
        inp = tmp_path / "nope.mp4"
    elif case == "corrupt_video":
        inp = tmp_path / "x.mp4"
        inp.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "empty_folder":
        inp = tmp_path / "empty"
        inp.mkdir()
        (inp / "notes.txt").write_text("no images here")
    elif case == "tiny_image":
        inp = tmp_path / "tiny"
        inp.mkdir()
        Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(inp / "0.png")
    elif case == "nan_image":
        inp = tmp_path / "nan"
        inp.mkdir()
        a = np.full((48, 64), 0.5, np.float32)
        a[3, 4] = np.nan
        Image.fromarray(a).save(inp / "0.tiff")
    elif case == "corrupt_image":
        inp = tmp_path / "corrupt"
        inp.mkdir()
        Image.fromarray(inputs["rgb"][0]).save(inp / "0.png")
        (inp / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(100))
    elif case == "garbage_ckpt":
        ckpt = _garbage_ckpt(tmp_path)
    elif case == "foreign_ckpt":
        ckpt = _foreign_ckpt(tmp_path)
    elif case == "mismatched_ckpt":
        ckpt = _mismatched_ckpt(tmp_path)
    elif case == "missing_ckpt":
        ckpt = str(tmp_path / "no_such_ckpt")
    elif case == "bad_intrinsics":
        extra = ["--intrinsics", "500,500,320"]
    elif case == "negative_focal":
        extra = ["--intrinsics=-5,500,320,240"]
    elif case == "bad_size":
        extra = ["--size", "100"]
    elif case == "size_hxw":
        extra = ["--size", "48x64"]
    elif case == "bad_conf_threshold":
        extra = ["--conf-threshold", "high"]
    elif case == "bad_stride":
        extra = ["--stride", "0"]
    elif case == "no_glob_match":
        inp = str(tmp_path / "*.png")
    elif case == "fp16_cpu":
        extra = ["--dtype", "fp16", "--device", "cpu"]
    out = tmp_path / "recon"
    argv = ["reconstruct", str(inp), "--out", str(out), "--ckpt", ckpt, "--no-progress"]
    argv += extra if "--size" in extra else ["--size", "64", *extra]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err, err
    assert "Traceback" not in err
    assert not out.exists()
    assert not _leftovers(tmp_path)


def test_failure_mid_stream_removes_everything(inputs, tmp_path, monkeypatch, capsys):
    from mem4d.stream.sinks import ReconstructionWriter

    real_write = ReconstructionWriter.write_frame

    def failing_write(self, rec):
        if rec.index == 2:
            raise OSError("disk full (simulated)")
        real_write(self, rec)

    monkeypatch.setattr(ReconstructionWriter, "write_frame", failing_write)
    out = tmp_path / "recon"
    assert _run(inputs["frames"], out, inputs["ckpt"]) == 2
    assert "disk full" in capsys.readouterr().err
    assert not out.exists() and not _leftovers(tmp_path)


def test_pose_refinement_option_matches_the_refined_model(inputs, tmp_path):
    import dataclasses

    from mem4d.eval.trajectory_io import read_tum_trajectory

    out = tmp_path / "refined"
    assert _run(inputs["frames"], out, inputs["ckpt"], "--pose-refinement", "photometric", "--no-video", "--no-glb") == 0
    model = Mem4D.from_pretrained(inputs["ckpt"]).eval()
    model.config = dataclasses.replace(model.config, heads=dataclasses.replace(model.config.heads,
                                                                               pose_refinement="photometric"))
    x = torch.from_numpy(inputs["rgb"]).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        refined = model(x[None]).cam2world[0]
    plain = torch.stack([o.cam2world[0] for o in _reference(inputs["ckpt"], inputs["rgb"])])
    written = torch.as_tensor(read_tum_trajectory(out / "trajectory.txt").cam2world, dtype=torch.float32)
    torch.testing.assert_close(written[:, :3, 3], refined[:, :3, 3], atol=1e-4, rtol=1e-3)
    assert (refined[:, :3, 3] - plain[:, :3, 3]).norm(dim=-1).max() > 1e-3  # the option changed the poses
    model_meta = json.loads((out / "meta.json").read_text())["model"]
    assert (model_meta["pose_refinement"], model_meta["loop_closure"]) == ("photometric", False)


def test_loop_closure_option_is_recorded_and_off_keeps_the_chained_poses(inputs, tmp_path):
    from mem4d.eval.trajectory_io import read_tum_trajectory

    args = ("--pose-refinement", "photometric", "--no-video", "--no-glb")
    assert _run(inputs["frames"], tmp_path / "on", inputs["ckpt"], *args, "--loop-closure", "on") == 0
    assert _run(inputs["frames"], tmp_path / "off", inputs["ckpt"], *args, "--loop-closure", "off") == 0
    on, off = (json.loads((tmp_path / n / "meta.json").read_text())["model"]["loop_closure"] for n in ("on", "off"))
    assert (on, off) == (True, False)
    # a clip shorter than the closure's 10-frame gap cannot close a loop: both give the chained poses
    poses = [read_tum_trajectory(tmp_path / n / "trajectory.txt").cam2world for n in ("on", "off")]
    torch.testing.assert_close(torch.as_tensor(poses[0]), torch.as_tensor(poses[1]))


def test_glob_input_and_max_frames(inputs, tmp_path):
    out = tmp_path / "recon"
    pattern = str(inputs["frames"] / "frame*.png")
    assert _run(pattern, out, inputs["ckpt"], "--max-frames", "3", "--no-video", "--no-pointmaps",
                "--no-colmap", "--no-nerfstudio", "--no-glb") == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == 3 and meta["pointmap_dtype"] is None
    assert not (out / "pts_world").exists() and not (out / "colmap").exists()
    assert not (out / "transforms.json").exists()


def test_view_without_viewer_is_a_clear_error(inputs, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "mem4d.viz.viewer", None)  # import fails
    out = tmp_path / "recon"
    assert _run(inputs["frames"], out, inputs["ckpt"], "--view") == 2
    assert "--view" in capsys.readouterr().err
    assert not out.exists()


def test_view_hook_gets_every_frame(inputs, tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakeViewer:
        def add_frame(self, index, rgb, out):
            calls.append((index, rgb.shape, tuple(out.depth.shape)))

        def close(self):
            calls.append("closed")

    monkeypatch.setitem(sys.modules, "mem4d.viz.viewer", types.SimpleNamespace(LiveViewer=FakeViewer))
    out = tmp_path / "recon"
    assert _run(inputs["frames"], out, inputs["ckpt"], "--view", "--max-frames", "2", "--no-video") == 0
    assert calls == [(0, (H, W, 3), (1, H, W)), (1, (H, W, 3), (1, H, W)), "closed"]


def test_help_lists_reconstruct(capsys):
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--intrinsics" in text and "--threads" in text
    assert "128 for the shipped model" in text and "512" not in text  # the default --size is the model's


def _low_confidence_ckpt(root: Path) -> str:
    """The test model with a world confidence of ~1.05 everywhere, as the shipped model's on real video."""
    model = _tiny_model()
    with torch.no_grad():
        for head in (model.head_cam, model.head_world):
            head.dpt.out_conv3.bias[3] = -3.0  # confidence 1 + exp(-3)
    model.save_pretrained(root / "low_conf_ckpt")
    return str(root / "low_conf_ckpt")


def test_the_default_confidence_threshold_adapts_to_the_model(inputs, tmp_path, capsys):
    """A fixed 1.5 keeps nothing of a model whose confidence is ~1.05 (and says so); the default keeps
    each frame but its least confident 10 % (tests/scene/test_cli_scene.py renders what it keeps)."""
    ckpt = _low_confidence_ckpt(tmp_path)
    out = tmp_path / "auto"
    assert _run(inputs["frames"], out, ckpt, "--scene-memory", "--no-video") == 0
    assert "warning" not in capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["conf_threshold"] == "auto:0.1" and meta["median_confidence"] < 1.1
    assert 0.85 <= meta["confident_fraction"] <= 0.95
    assert meta["static_points"] > 0

    fixed = tmp_path / "fixed"
    assert _run(inputs["frames"], fixed, ckpt, "--scene-memory", "--no-video", "--conf-threshold", "1.5") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: static.ply is empty" in err and "--conf-threshold auto" in err and "scene_memory/" in err
    meta = json.loads((fixed / "meta.json").read_text())
    assert meta["static_points"] == 0 and meta["confident_fraction"] == 0


def test_threads_auto_and_n_are_applied_and_recorded(inputs, tmp_path, capsys):
    from mem4d.cli.threads import default_threads

    before = torch.get_num_threads()
    try:
        out = tmp_path / "auto"
        assert _run(inputs["frames"], out, inputs["ckpt"], "--max-frames", "1", "--no-video", "--threads", "auto") == 0
        assert json.loads((out / "meta.json").read_text())["threads"] == default_threads()
        out = tmp_path / "two"
        assert _run(inputs["frames"], out, inputs["ckpt"], "--max-frames", "1", "--no-video", "--threads", "2") == 0
        assert json.loads((out / "meta.json").read_text())["threads"] == 2 and torch.get_num_threads() == 2
        assert "2 threads" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_size_is_printed_as_hxw_and_a_crop_is_announced(inputs, tmp_path, capsys):
    folder = tmp_path / "wide"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(inputs["rgb"][i]).resize((120, 48)).save(folder / f"{i}.png")  # 48x120: 2.5:1
    assert _run(folder, tmp_path / "recon", inputs["ckpt"], "--no-video") == 0
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "(32x64 HxW" in err
    assert "frames of 48x120 (HxW) are resized to 32x80 and centre-cropped to 32x64" in err
    assert "cutting 20.0 % of the width" in err
    assert "2 frames (32x64 HxW)" in captured.out
    assert _run(inputs["frames"], tmp_path / "plain", inputs["ckpt"], "--max-frames", "1", "--no-video") == 0
    assert "centre-cropped" not in capsys.readouterr().err  # 48x64 needs no crop


def test_untrained_model_with_no_valid_depth_still_writes_a_result(inputs, tmp_path):
    """A (badly trained) model that predicts depth <= 0 everywhere: every file is still written and readable."""
    model = _tiny_model()
    with torch.no_grad():
        for head in (model.head_cam, model.head_world):
            head.dpt.out_conv3.bias[2] = -1.2  # every point behind the camera
    model.save_pretrained(tmp_path / "raw_ckpt")
    out = tmp_path / "recon"
    assert _run(inputs["frames"], out, str(tmp_path / "raw_ckpt"), "--max-frames", "2", "--scene-memory") == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == 2 and meta["mean_depth"] is None and meta["static_points"] == 0
    assert len(read_ply(out / "static.ply")["xyz"]) == 0
    assert (np.asarray(Image.open(out / "depth" / "000001.png")) == 0).all()
    assert (out / "scene.glb").is_file() and (out / "scene_memory").is_dir()


def test_sigint_mid_stream_leaves_a_readable_partial_result(inputs, tmp_path):
    """Ctrl-C as a terminal sends it: a real SIGINT to a `mem4d reconstruct` process while it streams."""
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "long"
    folder.mkdir()
    for i in range(300):  # long enough to be still streaming when the signal comes
        Image.fromarray(inputs["rgb"][i % T]).save(folder / f"{i:04d}.png")
    out = tmp_path / "recon"
    proc = subprocess.Popen([sys.executable, "-m", "mem4d.cli.main", "reconstruct", str(folder), "--out", str(out),
                             "--ckpt", inputs["ckpt"], "--size", "64", "--threads", "1", "--no-progress",
                             "--no-video"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        give_up = time.monotonic() + 300  # a guard against a hang, not a speed requirement
        written = 0
        while written < 3 and proc.poll() is None and time.monotonic() < give_up:
            time.sleep(0.05)
            for traj in tmp_path.glob(".recon.partial-*/trajectory.txt"):
                written = sum(1 for line in traj.read_text().splitlines() if line and not line.startswith("#"))
        assert proc.poll() is None, "the reconstruction ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert 'meta.json "complete": false' in stderr and "Traceback" not in stderr
    meta = json.loads((out / "meta.json").read_text())
    n = meta["frames"]
    assert meta["complete"] is False and 3 <= n < 300
    assert len(read_tum_trajectory(out / "trajectory.txt")) == n
    assert len(read_tum_trajectory(out / "trajectory_loop_corrected.txt")) == n
    assert sorted(p.name for p in (out / "depth").glob("*.npy")) == [f"{i:06d}.npy" for i in range(n)]
    assert all(np.isfinite(np.load(out / "pts_world" / f"{i:06d}.npy")).all() for i in (0, n - 1))
    assert len(read_ply(out / "static.ply")["xyz"]) == meta["static_points"]
    assert len(read_colmap_text(out / "colmap")["images"]) == n
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == n
    assert not _leftovers(tmp_path)
