"""`mem4d view` and the viewer library: folder reader, PLY reader, frame cache, CLI, and a real
browser test (headless Chromium screenshot of the served page, marker ``browser``).

Every test builds its own small synthetic reconstruction folder (the layout `mem4d reconstruct`
writes), so nothing here depends on the model.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from mem4d.cli.main import main
from mem4d.eval.trajectory_io import write_tum_trajectory
from mem4d.viz.viewer_data import (
    FrameCache,
    ReconstructionFolder,
    read_ply_points,
    scene_scale,
    select_points,
    up_direction,
)

REPO = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------------------------
# A synthetic reconstruction: a checkered back wall and a floor (static), a red ball moving
# across (dynamic), a camera sliding to the right. OpenCV axes, world = camera 0.
# ---------------------------------------------------------------------------------------------

H, W, T = 48, 64, 8
FOCAL = 50.0
BALL_RADIUS = 0.35


def _c2w(t: int) -> np.ndarray:
    yaw = np.deg2rad(2.0 * t)
    M = np.eye(4)
    M[:3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
    M[:3, 3] = [0.06 * t, 0.0, 0.0]
    return M


def _ball_centre(t: int) -> np.ndarray:
    return np.array([-0.6 + 0.18 * t, 0.25, 2.2])


def _render(t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """rgb (H,W,3) uint8, pts_world (H,W,3), conf (H,W), dynamic (H,W) by exact ray casting."""
    c2w = _c2w(t)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d_cam = np.stack([(u - (W - 1) / 2) / FOCAL, (v - (H - 1) / 2) / FOCAL, np.ones_like(u)], -1)
    d = d_cam @ c2w[:3, :3].T
    o = c2w[:3, 3]
    s_wall = (3.0 - o[2]) / d[..., 2]
    s_floor = np.where(d[..., 1] > 1e-6, (1.0 - o[1]) / np.maximum(d[..., 1], 1e-6), np.inf)
    s = np.minimum(s_wall, s_floor)
    # ball
    c = _ball_centre(t)
    oc = o - c
    b = (d * oc).sum(-1)
    a = (d * d).sum(-1)
    disc = b * b - a * ((oc * oc).sum() - BALL_RADIUS**2)
    s_ball = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    on_ball = s_ball < s
    s = np.where(on_ball, s_ball, s)
    pts = o + d * s[..., None]
    checker = (np.floor(pts[..., 0] * 2.5) + np.floor(pts[..., 1] * 2.5)) % 2 == 0
    rgb = np.where(checker[..., None], [40, 170, 60], [240, 200, 30]).astype(np.float64)
    rgb = np.where((s_floor < s_wall)[..., None], [60, 90, 200], rgb)
    rgb = np.where(on_ball[..., None], [230, 30, 30], rgb)
    conf = np.full((H, W), 4.0)
    conf[:, :4] = 1.2  # a low-confidence strip on the left
    return rgb.astype(np.uint8), pts.astype(np.float32), conf.astype(np.float32), on_ball.astype(np.float32)


def _write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, *, fmt: str = "binary_little_endian",
               extra_double: bool = False) -> None:
    """A PLY writer for the tests (x y z float, red green blue uchar, optional double property)."""
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if extra_double:
        fields.insert(3, ("confidence", "f8"))
    order = ">" if fmt == "binary_big_endian" else "<"
    table = np.zeros(len(xyz), dtype=[(n, order + c) for n, c in fields])
    for i, n in enumerate("xyz"):
        table[n] = xyz[:, i]
    for i, n in enumerate(("red", "green", "blue")):
        table[n] = rgb[:, i]
    if extra_double:
        table["confidence"] = 7.5
    ply_names = {"f4": "float", "u1": "uchar", "f8": "double"}
    header = ["ply", f"format {fmt} 1.0", "comment mem4d test", f"element vertex {len(xyz)}"]
    header += [f"property {ply_names[c]} {n}" for n, c in fields]
    header += ["element face 0", "property list uchar int vertex_indices", "end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        if fmt == "ascii":
            for row in table:
                f.write((" ".join(str(v) for v in row.tolist()) + "\n").encode())
        else:
            f.write(table.tobytes())


def make_reconstruction(root: Path, *, num_frames: int = T, dynamic: bool = True, static_ply: bool = True,
                        scene_memory: bool = False) -> Path:
    """Writes the `mem4d reconstruct` folder layout with the synthetic scene."""
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("rgb", "pts_world", "conf") + (("dynamic",) if dynamic else ()):
        (root / sub).mkdir(exist_ok=True)
    static_xyz, static_rgb, frames = [], [], []
    for t in range(num_frames):
        rgb, pts, conf, dyn = _render(t)
        Image.fromarray(rgb).save(root / "rgb" / f"{t:06d}.png")
        np.save(root / "pts_world" / f"{t:06d}.npy", pts)
        np.save(root / "conf" / f"{t:06d}.npy", conf)
        if dynamic:
            np.save(root / "dynamic" / f"{t:06d}.npy", dyn)
        keep = dyn.reshape(-1) < 0.5
        static_xyz.append(pts.reshape(-1, 3)[keep][::5])
        static_rgb.append(rgb.reshape(-1, 3)[keep][::5])
        frames.append((rgb, pts, conf, dyn))
    poses = np.stack([_c2w(t) for t in range(num_frames)])
    write_tum_trajectory(root / "trajectory.txt", np.arange(num_frames) / 10.0, torch.from_numpy(poses))
    with open(root / "intrinsics.txt", "w") as f:
        for _ in range(num_frames):
            f.write(f"{FOCAL} {FOCAL} {(W - 1) / 2} {(H - 1) / 2}\n")
    if static_ply:
        _write_ply(root / "static.ply", np.concatenate(static_xyz), np.concatenate(static_rgb))
    if scene_memory:
        from mem4d.scene import Observation, SceneMemory

        K = np.array([[FOCAL, 0, (W - 1) / 2], [0, FOCAL, (H - 1) / 2], [0, 0, 1]])
        mem = SceneMemory()
        for t, (rgb, pts, conf, dyn) in enumerate(frames):
            mem.write(Observation(t=t, rgb=rgb, K=K, c2w=poses[t], points_world=pts, conf=conf,
                                  dynamic_mask=dyn > 0.5))
        mem.save(root / "scene_memory")
    meta = {"num_frames": num_frames, "height": H, "width": W, "complete": True, "fps": 10}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def recon(tmp_path_factory) -> Path:
    return make_reconstruction(tmp_path_factory.mktemp("recon") / "seq", scene_memory=True)


def _need_viser() -> None:
    """The viewer tests fail (never skip) without viser: it is part of the dev install."""
    try:
        import viser  # noqa: F401
    except ImportError:
        pytest.fail('viser is not installed: pip install "mem4d[viewer]" (the dev extra includes it)')


# ---------------------------------------------------------------------------------------------
# Reader, PLY, cache, point selection
# ---------------------------------------------------------------------------------------------


def test_folder_reader_reads_poses_intrinsics_and_frames(recon):
    rec = ReconstructionFolder(recon, cache_frames=3)
    assert (rec.num_frames, rec.height, rec.width, rec.complete) == (T, H, W, True)
    np.testing.assert_allclose(rec.cam2world, np.stack([_c2w(t) for t in range(T)]), atol=1e-6)
    np.testing.assert_allclose(rec.timestamps, np.arange(T) / 10.0)
    assert rec.K.shape == (T, 3, 3) and rec.K[5, 0, 0] == FOCAL and rec.K[5, 1, 2] == (H - 1) / 2
    f = rec.frame(3)
    rgb, pts, conf, dyn = _render(3)
    assert f.index == 3 and f.rgb.dtype == np.uint8 and f.pts.dtype == np.float32
    np.testing.assert_array_equal(f.rgb, rgb)
    np.testing.assert_allclose(f.pts, pts)
    np.testing.assert_allclose(f.conf, conf)
    np.testing.assert_allclose(f.dynamic, dyn)
    assert rec.has_dynamic and rec.static_ply is not None and rec.scene_memory_dir is not None
    xyz, col = rec.static_cloud()
    assert xyz.shape[1] == 3 and len(xyz) == len(col) > 100 and col.dtype == np.uint8
    with pytest.raises(IndexError):
        rec.load_frame(T)


def test_folder_reader_optional_parts_and_trajectory_bounds(tmp_path):
    root = make_reconstruction(tmp_path / "r", num_frames=3, dynamic=False, static_ply=False)
    (root / "intrinsics.txt").unlink()
    meta = json.loads((root / "meta.json").read_text())
    meta.update(num_frames=10, complete=False)  # still being written: only 3 poses so far
    (root / "meta.json").write_text(json.dumps(meta))
    rec = ReconstructionFolder(root)
    assert rec.num_frames == 3 and not rec.complete and not rec.has_dynamic
    assert rec.static_cloud() is None and rec.scene_memory_dir is None
    assert rec.K[0, 0, 0] > 0 and rec.K[0, 0, 2] == (W - 1) / 2  # a guess from the image size
    assert rec.frame(1).dynamic is None


def test_folder_reader_unprojects_depth_when_pointmaps_were_not_saved(tmp_path):
    root = make_reconstruction(tmp_path / "r", num_frames=3, static_ply=False)
    (root / "depth").mkdir()
    for t in range(3):
        pts = np.load(root / "pts_world" / f"{t:06d}.npy")
        c2w = _c2w(t)
        depth = ((pts - c2w[:3, 3]) @ c2w[:3, :3])[..., 2]  # z in camera t
        np.save(root / "depth" / f"{t:06d}.npy", depth.astype(np.float32))
        (root / "pts_world" / f"{t:06d}.npy").unlink()
        dyn = np.load(root / "dynamic" / f"{t:06d}.npy")
        Image.fromarray((dyn * 255).astype(np.uint8)).save(root / "dynamic" / f"{t:06d}.png")
        (root / "dynamic" / f"{t:06d}.npy").unlink()
    f = ReconstructionFolder(root).frame(2)
    np.testing.assert_allclose(f.pts, _render(2)[1], atol=1e-4)
    np.testing.assert_allclose(f.dynamic, _render(2)[3])


@pytest.mark.parametrize("missing", ["meta.json", "trajectory.txt"])
def test_folder_reader_rejects_a_folder_that_is_not_a_reconstruction(tmp_path, missing):
    root = make_reconstruction(tmp_path / "r", num_frames=2, static_ply=False)
    (root / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"not a reconstruction folder.*{missing}"):
        ReconstructionFolder(root)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ReconstructionFolder(tmp_path / "nope")


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_ply_reader_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, size=(50, 3)).astype(np.uint8)
    path = tmp_path / "c.ply"
    _write_ply(path, xyz, rgb, fmt=fmt, extra_double=True)
    got_xyz, got_rgb = read_ply_points(path)
    assert got_xyz.dtype == np.float32 and got_rgb.dtype == np.uint8
    np.testing.assert_allclose(got_xyz, xyz, rtol=1e-6)
    np.testing.assert_array_equal(got_rgb, rgb)


def test_ply_reader_errors(tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply\n")
    with pytest.raises(ValueError, match="not a PLY"):
        read_ply_points(bad)
    good = tmp_path / "good.ply"
    _write_ply(good, np.zeros((10, 3), np.float32), np.zeros((10, 3), np.uint8))
    trunc = tmp_path / "trunc.ply"
    trunc.write_bytes(good.read_bytes()[:-20])
    with pytest.raises(ValueError, match="truncated"):
        read_ply_points(trunc)
    nocol = tmp_path / "nocol.ply"
    nocol.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\n"
                      b"property float y\nproperty float z\nend_header\n" + np.arange(6, dtype="<f4").tobytes())
    xyz, rgb = read_ply_points(nocol)
    assert rgb is None and xyz.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_frame_cache_is_bounded_lru():
    loaded = []

    def loader(i):
        loaded.append(i)
        return SimpleNamespace(index=i)

    cache = FrameCache(loader, capacity=3)
    for i in [0, 1, 2, 0, 3, 4, 0, 5, 6, 7, 8, 9]:
        assert cache.get(i).index == i
        assert len(cache) <= 3
    assert loaded == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]  # 0 stayed hot (recently used), nothing reloaded
    assert 9 in cache and 0 not in cache and cache.loads == 10
    with pytest.raises(ValueError):
        FrameCache(loader, capacity=0)


def test_folder_frames_go_through_the_bounded_cache(recon):
    rec = ReconstructionFolder(recon, cache_frames=2)
    for t in range(T):
        rec.frame(t)
    assert len(rec.cache) == 2 and rec.cache.loads == T
    rec.frame(T - 1)
    assert rec.cache.loads == T


def test_select_points_confidence_motion_and_budget(recon):
    f = ReconstructionFolder(recon).frame(2)
    n_moving = int((f.dynamic > 0.5).sum())
    n_low = int((f.conf < 1.5).sum())
    assert n_moving > 20
    xyz, rgb = select_points(f, 1.0)
    assert len(xyz) == H * W and xyz.dtype == np.float32 and rgb.dtype == np.uint8
    assert len(select_points(f, 1.5)[0]) == H * W - n_low
    moving, _ = select_points(f, 1.0, show_static=False)
    static, _ = select_points(f, 1.0, show_moving=False)
    assert len(moving) == n_moving and len(static) == H * W - n_moving
    ball_dist = np.linalg.norm(moving - _ball_centre(2), axis=1)
    np.testing.assert_allclose(ball_dist, BALL_RADIUS, atol=1e-4)
    _, tinted = select_points(f, 1.0, show_static=False, tint_moving=True)
    assert (tinted[:, 0] > 200).all()
    assert len(select_points(f, 1.0, max_points=100)[0]) == 100
    assert len(select_points(f, 1.0, show_static=False, show_moving=False)[0]) == 0


def test_scene_scale_and_up_direction(recon):
    rec = ReconstructionFolder(recon)
    f = rec.frame(0)
    assert 1.5 < scene_scale(f.pts, rec.cam2world[0, :3, 3], f.conf) < 4.0
    np.testing.assert_allclose(up_direction(rec.cam2world), [0, -1, 0], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli_help_lists_view_without_importing_viser():
    code = ("import sys; from mem4d.cli.main import build_parser; h = build_parser().format_help(); "
            "assert 'view' in h, h; assert 'viser' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_cli_rejects_a_folder_that_is_not_a_reconstruction(tmp_path, capsys):
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a reconstruction folder" in err and "meta.json" in err
    assert main(["view", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--max-points", "0"]) == 2
    assert "--max-points" in capsys.readouterr().err


def test_cli_says_how_to_install_viser(recon, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "viser", None)  # import viser -> ImportError
    assert main(["view", str(recon), "--port", "0"]) == 2
    assert 'pip install "mem4d[viewer]"' in capsys.readouterr().err


def test_cli_serves_the_page_until_ctrl_c(recon):
    _need_viser()
    # Ctrl-C as a user's shell delivers it, even when the tests themselves run with SIGINT ignored (nohup, &)
    proc = subprocess.Popen([sys.executable, "-m", "mem4d.cli.main", "view", str(recon), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert line.startswith("mem4d view: ") and " at http://127.0.0.1:" in line, \
            (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split(" at ")[1].split()[0]
        html = urllib.request.urlopen(url, timeout=20).read().decode()
        assert "<html" in html.lower()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------
# Viewer objects (viser server, no browser)
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def viewer(recon):
    _need_viser()
    from mem4d.viz.viewer import ReconstructionViewer

    v = ReconstructionViewer(recon, port=0, max_points=1000, cache_frames=3)
    yield v
    v.close()


def test_viewer_timeline_filters_and_playback(viewer):
    g = viewer.gui
    assert viewer.url.startswith("http://127.0.0.1:") and viewer.port > 0
    assert viewer.frame_index == 0 and viewer.num_points_shown == 1000  # max_points
    g["frame"].value = 5  # as if the slider was dragged
    assert viewer.frame_index == 5 and len(viewer.folder.cache) <= 3
    g["min_conf"].value = 1.0
    g["show_static"].value = False
    assert viewer.num_points_shown == int((viewer.folder.frame(5).dynamic > 0.5).sum())
    g["show_static"].value = True
    g["point_size"].value = 0.02
    assert viewer.points_node.point_size == pytest.approx(0.02)
    g["cameras"].value = False
    assert not any(n.visible for n in viewer.frustum_nodes) and not viewer.current_frustum.visible
    g["fps"].value = 30
    viewer.set_playing(True)
    assert g["play"].label == "Pause"
    deadline = time.time() + 10
    seen = {viewer.frame_index}
    while time.time() < deadline and len(seen) < 4:
        seen.add(viewer.frame_index)
        time.sleep(0.02)
    viewer.set_playing(False)
    assert len(seen) >= 4 and g["play"].label == "Play"
    assert len(viewer.folder.cache) <= 3


def test_viewer_scene_memory_layer(viewer):
    viewer.gui["scene_memory"].value = True
    assert viewer._memory_error is None, viewer._memory_error
    assert viewer._memory is not None and len(viewer._memory_nodes) >= 1
    assert len(viewer._memory_nodes[0].points) > 0
    assert len(viewer._memory_markers) == 1  # the ball, tracked as one subject
    marker, track_t, centroid = next(iter(viewer._memory_markers.values()))
    viewer.gui["frame"].value = 2
    np.testing.assert_allclose(marker.position, centroid[np.flatnonzero(track_t <= 2)[-1]], atol=1e-5)
    assert np.linalg.norm(marker.position - _ball_centre(2)) < 0.3
    viewer.gui["scene_memory"].value = False
    assert not marker.visible and not viewer._memory_nodes[0].visible


def test_viewer_survives_a_broken_scene_memory_and_missing_frames(tmp_path):
    _need_viser()
    from mem4d.viz.viewer import ReconstructionViewer

    root = make_reconstruction(tmp_path / "r", num_frames=4, static_ply=False)
    (root / "scene_memory").mkdir()  # not a saved SceneMemory
    (root / "pts_world" / "000002.npy").unlink()  # e.g. still being written
    with ReconstructionViewer(root, port=0) as v:
        v.gui["scene_memory"].value = True
        assert v._memory is None and "could not load scene_memory" in v._memory_status.content
        v.gui["frame"].value = 2
        assert "cannot load" in v._info.content and not v.points_node.visible
        v.gui["frame"].value = 3
        assert v.points_node.visible and v.frame_index == 3


def test_live_viewer_streams_with_bounded_memory():
    _need_viser()
    from mem4d.viz.viewer import LiveViewer

    live = LiveViewer(port=0, max_points=500, max_static_points=1500, static_points_per_frame=400,
                      max_frustums=4)
    try:
        for t in range(T):
            rgb, pts, conf, dyn = _render(t)
            out = SimpleNamespace(
                pts_world=torch.from_numpy(pts)[None], conf_world=torch.from_numpy(conf)[None],
                cam2world=torch.from_numpy(_c2w(t))[None].float(),
                intrinsics=torch.tensor([[[FOCAL, 0, (W - 1) / 2], [0, FOCAL, (H - 1) / 2], [0, 0, 1]]]),
                dynamic_prob=torch.from_numpy(dyn)[None] if t % 2 else None)
            live.add_frame(t, rgb.astype(np.float32) / 255.0 if t % 2 else rgb, out)
            assert len(live.accumulator) <= 1500
            assert len(live.frustum_nodes) <= 4
        assert live.num_frames == T and len(live.points_node.points) == 500
        assert 0 < len(live.accumulator) <= 1500
        live.flush()
        assert len(live.static_node.points) == len(live.accumulator)
    finally:
        live.close()


# ---------------------------------------------------------------------------------------------
# In a real browser: headless Chromium driven over the DevTools protocol (no downloads, no extra
# packages: `websockets` comes with viser). The test waits in real time like a person would,
# looks at screenshots, and clicks the GUI's checkboxes with the mouse.
# ---------------------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--hide-scrollbars", "--mute-audio",
]
VIEW_W, VIEW_H = 1024, 768


def _chromium() -> str:
    for cand in (os.environ.get("MEM4D_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                 shutil.which("chromium-browser")):
        if cand and Path(cand).is_file():
            return cand
    pytest.fail("headless Chromium not found (/usr/bin/chromium): run `bash scripts/install_browser.sh` "
                "(or set MEM4D_CHROMIUM to a Chromium binary)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HeadlessChromium:
    """Just enough of the DevTools protocol: open a URL, screenshot, evaluate JS, click."""

    def __init__(self, exe: str, width: int = VIEW_W, height: int = VIEW_H, timeout: float = 30.0) -> None:
        from websockets.sync.client import connect

        self.tmp = Path(tempfile.mkdtemp(prefix="mem4d-chromium-"))
        self.log = open(self.tmp / "chromium.log", "w")
        port = _free_port()
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--window-size={width},{height}", f"--user-data-dir={self.tmp / 'profile'}",
             f"--remote-debugging-port={port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        self._id = 0
        self.events: list[dict] = []
        deadline = time.time() + timeout
        page = None
        while page is None:
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                pytest.fail(f"chromium did not start a DevTools endpoint: {self.log_tail()}")
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2))
                page = next((t for t in targets if t.get("type") == "page"), None)
            except OSError:
                pass
            if page is None:
                time.sleep(0.2)
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=timeout)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def log_tail(self) -> str:
        self.log.flush()
        return (self.tmp / "chromium.log").read_text(errors="replace")[-3000:]

    def call(self, method: str, timeout: float = 30.0, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.time())))
            if "method" in msg:
                self.events.append(msg)
            elif msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.time() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.time())))
            if "method" in msg:
                self.events.append(msg)

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Opens ``url`` and waits for its load event."""
        self.call("Page.enable")
        self.events.clear()
        result = self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"cannot open {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired", timeout)

    def screenshot(self, path: Path | None = None) -> np.ndarray:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        if path is not None:
            path.write_bytes(png)
        return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def click(self, x: float, y: float) -> None:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def checkbox_centre(self, label: str) -> tuple[float, float] | None:
        """Centre of the checkbox whose GUI label reads ``label`` (scrolled into view), or None."""
        js = """(() => {
            const lab = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === LABEL);
            const box = lab && document.getElementById(lab.htmlFor);
            if (!box) return null;
            box.scrollIntoView({block: 'center'});
            const r = box.getBoundingClientRect();
            return [r.x + r.width / 2, r.y + r.height / 2];
        })()""".replace("LABEL", json.dumps(label))
        return self.evaluate(js)

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _wait_for(cond, timeout: float, what: str, interval: float = 0.3):
    deadline = time.time() + timeout
    while True:
        value = cond()
        if value or time.time() > deadline:
            return value
        time.sleep(interval)


def _canvas_mask(shape: tuple[int, ...]) -> np.ndarray:
    """The 3D canvas without the GUI panel (right), the software-WebGL toast (top left), the axes gizmo."""
    mask = np.ones(shape[:2], bool)
    mask[:, 670:] = False
    mask[:170, :330] = False
    mask[shape[0] - 90:, :90] = False
    return mask


def _drawn_fraction(img: np.ndarray) -> float:
    """Fraction of the canvas that is not the viewer's white background."""
    mask = _canvas_mask(img.shape)
    return float(((np.abs(img - 255).max(axis=-1) > 12) & mask).sum() / mask.sum())


@pytest.mark.browser
def test_browser_shows_points_and_the_gui_toggles_them(recon, tmp_path):
    _need_viser()
    exe = _chromium()  # fails (never skips) without a browser
    from mem4d.viz.viewer import ReconstructionViewer

    viewer = ReconstructionViewer(recon, port=0)
    browser = None
    try:
        viewer.gui["frame"].value = 3
        browser = HeadlessChromium(exe)
        browser.goto(viewer.url)
        shots: dict[str, np.ndarray] = {}

        def settled(name, above=None, below=None):
            """Screenshot; True once the canvas stopped changing (the scene fades in) and the drawn
            fraction is above / below the bounds."""
            prev = shots.get(name)
            shots[name] = browser.screenshot(tmp_path / f"{name}.png")
            if prev is None:
                return False
            mask = _canvas_mask(prev.shape)
            moving = ((np.abs(shots[name] - prev).max(axis=-1) > 8) & mask).sum() / mask.sum()
            f = _drawn_fraction(shots[name])
            return moving < 0.002 and (above is None or f > above) and (below is None or f < below)

        loaded = _wait_for(lambda: settled("points", above=0.10) and browser.checkbox_centre("Current frame"),
                           40, "points on screen")
        f_points = _drawn_fraction(shots["points"])
        assert loaded, (f"no points on screen after 40 s ({f_points:.1%} of the canvas drawn); "
                        f"see {tmp_path}/points.png; chromium log:\n{browser.log_tail()}")
        # a person unticks both point layers in the GUI panel
        for label, key in (("Current frame", "current_points"), ("Static map (static.ply)", "static_map")):
            xy = browser.checkbox_centre(label)
            assert xy is not None, f"no checkbox {label!r} in the page"
            browser.click(*xy)
            received = _wait_for(lambda key=key: viewer.gui[key].value is False, 10, label)
            assert received, f"click on {label!r} not received"
        _wait_for(lambda: settled("no_points", below=f_points - 0.05), 20, "points removed")
    finally:
        if browser is not None:
            browser.close()
        viewer.close()
    mask = _canvas_mask(shots["points"].shape)
    f_empty = _drawn_fraction(shots["no_points"])
    changed = (np.abs(shots["points"] - shots["no_points"]).max(axis=-1) > 40) & mask
    colours = shots["points"][changed]
    saturated = (colours.max(axis=-1) - colours.min(axis=-1)) > 60  # the scene's checker/floor/ball colours
    msg = (f"{f_points:.1%} of the canvas drawn with points, {f_empty:.1%} without, {changed.sum() / mask.sum():.1%} "
           f"changed, {saturated.mean():.0%} of those saturated; screenshots in {tmp_path}")
    assert f_points > 0.10, msg
    assert 0.001 < f_empty < f_points - 0.05, msg  # frustums and trajectory remain: the page still renders
    assert changed.sum() / mask.sum() > 0.08 and saturated.mean() > 0.5, msg


@pytest.mark.browser
def test_browser_follows_a_live_stream(tmp_path):
    _need_viser()
    exe = _chromium()
    from mem4d.viz.viewer import LiveViewer

    live = LiveViewer(port=0, static_every_s=0.0, announce=False)
    browser = None
    try:
        browser = HeadlessChromium(exe)
        browser.goto(live.url)  # the page is open before the first frame, as with `reconstruct --view`
        for t in range(T):
            rgb, pts, conf, dyn = _render(t)
            out = SimpleNamespace(
                pts_world=torch.from_numpy(pts)[None], conf_world=torch.from_numpy(conf)[None],
                cam2world=torch.from_numpy(_c2w(t))[None], dynamic_prob=torch.from_numpy(dyn)[None],
                intrinsics=torch.tensor([[[FOCAL, 0, (W - 1) / 2], [0, FOCAL, (H - 1) / 2], [0, 0, 1]]]))
            live.add_frame(t, rgb, out)
        shot = {}

        def drawn():
            shot["img"] = browser.screenshot(tmp_path / "live.png")
            return _drawn_fraction(shot["img"]) > 0.10

        ok = _wait_for(drawn, 40, "live points")
        assert ok, f"{_drawn_fraction(shot['img']):.1%} of the canvas drawn; see {tmp_path}/live.png"
        assert browser.evaluate("document.body.innerText").count(f"frame {T - 1}") == 1
    finally:
        if browser is not None:
            browser.close()
        live.close()
