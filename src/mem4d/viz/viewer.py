"""Interactive 3D viewer in the browser (viser): ``mem4d view DIR`` and ``mem4d reconstruct --view``.

Two classes, both serving a WebGL page (open the printed URL in a browser):

- :class:`ReconstructionViewer` browses a reconstruction folder (layout in
  :mod:`mem4d.viz.viewer_data`): a timeline slider with play/pause and fps, the current
  frame's world points coloured by the image, the fused static map (``static.ply``), camera
  frustums for all frames (the current one highlighted, with its image) and the trajectory,
  a confidence threshold and a point-size slider, static/moving pixel toggles (from
  ``dynamic/``, probability > 0.5 = moving) and, when the folder has ``scene_memory/``, its
  static layer and subject tracks as an extra layer. Frames load lazily through a bounded cache.
- :class:`LiveViewer` shows frames while they are reconstructed: the latest frame's points,
  a bounded, decimated accumulation of static points, frustums and the trajectory.

Coordinates are shown as stored: the world is the OpenCV camera of frame 0 (x right, y down,
z forward); the viewer's "up" is guessed from the cameras.

viser is optional (``pip install "mem4d[viewer]"``); importing this module does not need it,
constructing a viewer does.

Example::

    viewer = ReconstructionViewer("out/seq", port=8080)
    print(viewer.url)            # open in a browser
    ...
    viewer.close()

    live = LiveViewer(port=8080)
    for t, (rgb, out) in enumerate(stream):
        live.add_frame(t, rgb, out)
    live.close()
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .viewer_data import (
    Frame,
    FrameCache,
    ReconstructionFolder,
    decimate,
    read_ply_points,
    scene_scale,
    select_points,
    up_direction,
)

__all__ = [
    "LiveViewer",
    "ReconstructionViewer",
    "ReconstructionFolder",
    "FrameCache",
    "Frame",
    "read_ply_points",
    "require_viser",
    "select_points",
]

VISER_HINT = 'the viewer needs viser, which is not installed: pip install "mem4d[viewer]"'

CURRENT_COLOUR = (255, 120, 0)
CAMERA_COLOUR = (90, 90, 110)
TRAJECTORY_COLOUR = (30, 110, 230)
MAX_FRUSTUMS = 250
FRUSTUM_IMAGE_WIDTH = 160


def require_viser() -> Any:
    """Imports viser or raises ImportError with the install hint."""
    try:
        import viser
    except ImportError as err:
        raise ImportError(VISER_HINT) from err
    return viser


def _wxyz(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix (w >= 0)."""
    from viser import transforms as tf

    q = np.asarray(tf.SO3.from_matrix(np.asarray(R, dtype=np.float64)).wxyz, dtype=np.float64)
    return q if q[0] >= 0 else -q


def _fov_aspect(K: np.ndarray, H: int, W: int) -> tuple[float, float]:
    """Vertical field of view (radians) and aspect ratio of a pinhole camera."""
    fy = float(K[1, 1]) if K[1, 1] > 0 else float(max(H, W))
    return 2.0 * math.atan2(H / 2.0, fy), W / max(H, 1)


def _thumbnail(rgb: np.ndarray, width: int = FRUSTUM_IMAGE_WIDTH) -> np.ndarray:
    H, W = rgb.shape[:2]
    step = max(1, int(math.ceil(W / width)))
    return np.ascontiguousarray(rgb[::step, ::step])


def _to_numpy(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _rgb_u8(rgb: Any) -> np.ndarray:
    a = _to_numpy(rgb)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:  # (3, H, W)
        a = np.moveaxis(a, 0, -1)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float32)
    if a.size and float(np.nanmax(a)) > 1.5:
        return np.clip(a, 0, 255).astype(np.uint8)
    if a.size and float(np.nanmin(a)) < -0.01:  # [-1, 1] model input normalisation
        a = (a + 1.0) / 2.0
    return np.clip(a * 255.0 + 0.5, 0, 255).astype(np.uint8)


def default_point_size(scale: float, K: np.ndarray, num_pixels: int, max_points: int | None) -> float:
    """Point size (world units) that closes the gaps between neighbouring pixels at depth ``scale``.

    One pixel covers ``scale / fx`` at that depth; decimation to ``max_points`` widens the gaps
    by ``sqrt(num_pixels / max_points)``.
    """
    fx = float(K[0, 0]) if K[0, 0] > 0 else 500.0
    spread = math.sqrt(max(1.0, num_pixels / max(1, max_points or num_pixels)))
    return 1.5 * scale / fx * spread


def _trajectory_segments(centres: np.ndarray) -> np.ndarray:
    if len(centres) < 2:
        return np.zeros((0, 2, 3), np.float32)
    return np.stack([centres[:-1], centres[1:]], axis=1).astype(np.float32)


class _Scene:
    """Shared drawing helpers on a viser server (point clouds, frustums, trajectory)."""

    def __init__(self, server: Any, scale: float) -> None:
        self.server = server
        self.scale = scale

    def points(self, name: str, xyz: np.ndarray, rgb: np.ndarray, size: float, visible: bool = True) -> Any:
        return self.server.scene.add_point_cloud(
            name, np.ascontiguousarray(xyz, dtype=np.float32), np.ascontiguousarray(rgb, dtype=np.uint8),
            point_size=float(size), point_shape="square", precision="float32", point_shading="flat",
            visible=visible)

    def frustum(self, name: str, c2w: np.ndarray, K: np.ndarray, H: int, W: int, *, colour=CAMERA_COLOUR,
                size: float = 1.0, image: np.ndarray | None = None, thickness: float = 1.5,
                visible: bool = True) -> Any:
        fov, aspect = _fov_aspect(K, H, W)
        return self.server.scene.add_camera_frustum(
            name, fov=fov, aspect=aspect, scale=0.08 * self.scale * size, thickness=thickness,
            thickness_units="screen", color=colour, image=image, format="jpeg" if image is not None else "auto",
            wxyz=_wxyz(c2w[:3, :3]), position=np.asarray(c2w[:3, 3], dtype=np.float64), visible=visible,
            cast_shadow=False, receive_shadow=False)

    def trajectory(self, name: str, centres: np.ndarray, visible: bool = True) -> Any:
        return self.server.scene.add_line_segments(
            name, _trajectory_segments(centres), TRAJECTORY_COLOUR, thickness=2.0, thickness_units="screen",
            visible=visible)

    def set_view(self, c2w: np.ndarray, look_at: np.ndarray, up: np.ndarray) -> None:
        """Up direction and the initial camera: behind and above the given camera."""
        self.server.scene.set_up_direction(tuple(float(v) for v in up))
        centre = c2w[:3, 3]
        forward = c2w[:3, 2]
        pos = centre - 0.6 * self.scale * forward + 0.35 * self.scale * up
        cam = self.server.initial_camera
        cam.position = tuple(float(v) for v in pos)
        cam.look_at = tuple(float(v) for v in look_at)
        cam.up = tuple(float(v) for v in up)
        cam.near = 0.01 * self.scale
        cam.far = 1000.0 * self.scale
        for client in self.server.get_clients().values():  # pages opened before the first frame
            client.camera.up_direction = cam.up
            client.camera.position = cam.position
            client.camera.look_at = cam.look_at


def _start_server(host: str, port: int, verbose: bool) -> Any:
    viser = require_viser()
    if verbose:
        return viser.ViserServer(host=host, port=port, verbose=True)
    with contextlib.redirect_stdout(io.StringIO()):  # viser prints its URL banner unconditionally
        return viser.ViserServer(host=host, port=port, verbose=False)


class ReconstructionViewer:
    """Serves a reconstruction folder as an interactive 3D page.

    Args:
        folder: a :class:`ReconstructionFolder` or its path.
        host, port: where to listen (port 0: any free port; a busy port moves to the next free
            one, see :attr:`url`).
        max_points: at most this many points per drawn cloud (current frame, static map).
        cache_frames: frames kept in memory (when ``folder`` is a path).
        fps: initial playback speed.
        verbose: let viser print its banner.

    Attributes:
        server: the ``viser.ViserServer``.
        gui: the GUI handles by name (``frame``, ``play``, ``fps``, ``loop``, ``min_conf``,
            ``point_size``, ``show_static``, ``show_moving``, ``tint_moving``, ``current_points``,
            ``static_map``, ``cameras``, ``trajectory``, ``scene_memory`` when present).
        frame_index: the frame shown.
    """

    def __init__(self, folder: ReconstructionFolder | str | Path, *, host: str = "127.0.0.1", port: int = 8080,
                 max_points: int = 150_000, cache_frames: int = 16, fps: float = 10.0,
                 verbose: bool = False) -> None:
        self.folder = folder if isinstance(folder, ReconstructionFolder) else ReconstructionFolder(folder, cache_frames)
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        self.max_points = int(max_points)
        self.server = _start_server(host, port, verbose)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._playing = threading.Event()
        self.frame_index = -1
        self.gui: dict[str, Any] = {}
        self._memory: Any = None
        self._memory_error: str | None = None
        self._memory_nodes: list[Any] = []
        self._memory_markers: dict[int, tuple[Any, np.ndarray, np.ndarray]] = {}
        try:
            self._build(fps)
        except BaseException:
            self.server.stop()
            raise
        self._thread = threading.Thread(target=self._play_loop, name="mem4d-view-play", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ properties
    @property
    def port(self) -> int:
        return int(self.server.get_port())

    @property
    def url(self) -> str:
        host = self.server.get_host()
        host = "localhost" if host in ("0.0.0.0", "::", "") else host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ building
    def _build(self, fps: float) -> None:
        rec = self.folder
        T, H, W = rec.num_frames, rec.height, rec.width
        f0 = rec.frame(0)
        self.scale = scene_scale(f0.pts, rec.cam2world[0, :3, 3], f0.conf)
        self.draw = _Scene(self.server, self.scale)
        up = up_direction(rec.cam2world)
        ok = np.isfinite(f0.pts).all(axis=-1)
        look_at = np.median(f0.pts[ok], axis=0) if ok.any() else rec.cam2world[0, :3, 3] + rec.cam2world[0, :3, 2]
        self.draw.set_view(rec.cam2world[0], look_at, up)
        conf_hi = float(np.nanpercentile(f0.conf, 99)) if np.isfinite(f0.conf).any() else 2.0
        conf_hi = max(2.0, round(conf_hi, 1))
        point_size = default_point_size(self.scale, rec.K[0], H * W, self.max_points)

        # static scene: static map, frustums, trajectory
        self._static = rec.static_cloud()
        if self._static is not None:
            sel = decimate(len(self._static[0]), self.max_points)
            self._static = (self._static[0][sel], self._static[1][sel])
            self.static_node = self.draw.points("/static_map", *self._static, point_size)
        stride = max(1, math.ceil(T / MAX_FRUSTUMS))
        self.frustum_nodes = [
            self.draw.frustum(f"/cameras/frame_{i:06d}", rec.cam2world[i], rec.K[i], H, W)
            for i in range(0, T, stride)
        ]
        self.trajectory_node = self.draw.trajectory("/trajectory", rec.camera_centres())

        # GUI
        gui = self.server.gui
        gui.configure_theme(control_layout="floating", control_width="medium", show_share_button=False)
        status = "" if rec.complete else " (incomplete: still being written?)"
        gui.add_markdown(f"**mem4d** · `{rec.name}` · {T} frame{'' if T == 1 else 's'}, {H}×{W} (H×W){status}")
        g = self.gui
        with gui.add_folder("Timeline"):
            g["frame"] = gui.add_slider("Frame", min=0, max=max(T - 1, 0), step=1, initial_value=0,
                                        disabled=T == 1)
            g["play"] = gui.add_button("Play", disabled=T == 1, hint="play / pause the sequence")
            g["fps"] = gui.add_slider("FPS", min=1, max=30, step=1, initial_value=int(min(max(fps, 1), 30)))
            g["loop"] = gui.add_checkbox("Loop", True)
        with gui.add_folder("Points"):
            g["min_conf"] = gui.add_slider("Min confidence", min=1.0, max=conf_hi, step=0.1,
                                           initial_value=min(1.5, conf_hi),
                                           hint="hide current-frame points with confidence below this")
            g["point_size"] = gui.add_slider("Point size", min=round(point_size / 10, 6), max=round(point_size * 5, 6),
                                             step=round(point_size / 10, 6), initial_value=round(point_size, 6),
                                             hint=f"world units (scene scale: {self.scale:.3g})")
            g["show_static"] = gui.add_checkbox("Static pixels", True, hint="pixels with motion probability <= 0.5")
            g["show_moving"] = gui.add_checkbox("Moving pixels", True, disabled=not rec.has_dynamic,
                                                hint="pixels with motion probability > 0.5 (needs dynamic/)")
            g["tint_moving"] = gui.add_checkbox("Tint moving red", False, disabled=not rec.has_dynamic)
            g["current_points"] = gui.add_checkbox("Current frame", True)
            g["static_map"] = gui.add_checkbox("Static map (static.ply)", self._static is not None,
                                               disabled=self._static is None)
        with gui.add_folder("Cameras"):
            g["cameras"] = gui.add_checkbox("Frustums", True)
            g["trajectory"] = gui.add_checkbox("Trajectory", True)
        if rec.scene_memory_dir is not None:
            with gui.add_folder("Scene memory"):
                g["scene_memory"] = gui.add_checkbox("Show", False,
                                                     hint="static layer points and subject tracks")
                self._memory_status = gui.add_markdown("not loaded")
            g["scene_memory"].on_update(lambda _: self._toggle_memory())
        self._info = gui.add_markdown("")

        g["frame"].on_update(lambda _: self.show_frame(int(g["frame"].value)))
        g["play"].on_click(lambda _: self.set_playing(not self._playing.is_set()))
        for key in ("min_conf", "show_static", "show_moving", "tint_moving", "current_points"):
            g[key].on_update(lambda _: self.refresh())
        g["point_size"].on_update(lambda _: self._set_point_size())
        g["static_map"].on_update(lambda _: self._set_visible(getattr(self, "static_node", None),
                                                              g["static_map"].value))
        g["cameras"].on_update(lambda _: self._set_cameras_visible())
        g["trajectory"].on_update(lambda _: self._set_visible(self.trajectory_node, g["trajectory"].value))
        self.show_frame(0)

    # ------------------------------------------------------------------ updates
    @staticmethod
    def _set_visible(node: Any, visible: bool) -> None:
        if node is not None:
            node.visible = bool(visible)

    def _set_cameras_visible(self) -> None:
        vis = bool(self.gui["cameras"].value)
        for node in self.frustum_nodes:
            node.visible = vis
        self._set_visible(getattr(self, "current_frustum", None), vis)

    def _set_point_size(self) -> None:
        size = float(self.gui["point_size"].value)
        for name in ("points_node", "static_node"):
            node = getattr(self, name, None)
            if node is not None:
                node.point_size = size
        if self._memory is not None and self._memory_nodes:
            self._memory_nodes[0].point_size = size

    def show_frame(self, index: int) -> None:
        """Draws frame ``index`` (current points, highlighted frustum, info line)."""
        rec = self.folder
        index = int(min(max(index, 0), rec.num_frames - 1))
        with self._lock:
            self.frame_index = index
            if int(self.gui["frame"].value) != index:
                self.gui["frame"].value = index  # re-enters show_frame through the callback; cheap
                return
            try:
                frame = rec.frame(index)
            except (OSError, ValueError) as err:  # e.g. a folder still being written
                self._info.content = f"frame {index}: cannot load ({err})"
                if getattr(self, "points_node", None) is not None:
                    self.points_node.visible = False
                return
            self._draw_points(frame)
            self.current_frustum = self.draw.frustum(
                "/cameras/current", rec.cam2world[index], rec.K[index], rec.height, rec.width,
                colour=CURRENT_COLOUR, size=1.25, image=_thumbnail(frame.rgb), thickness=3.0,
                visible=bool(self.gui["cameras"].value))
            self._update_memory_markers(index)

    def refresh(self) -> None:
        """Redraws the current frame's points after a display setting changed."""
        with self._lock:
            if self.frame_index >= 0:
                self._draw_points(self.folder.frame(self.frame_index))

    def _draw_points(self, frame: Frame) -> None:
        g = self.gui
        xyz, rgb = select_points(frame, float(g["min_conf"].value), show_static=bool(g["show_static"].value),
                                 show_moving=bool(g["show_moving"].value), max_points=self.max_points,
                                 tint_moving=bool(g["tint_moving"].value))
        self.points_node = self.draw.points("/frame_points", xyz, rgb, float(g["point_size"].value),
                                            visible=bool(g["current_points"].value))
        self.num_points_shown = len(xyz)
        t = float(self.folder.timestamps[frame.index])
        self._info.content = (f"frame **{frame.index}** / {self.folder.num_frames - 1} · t = {t:.3f} s · "
                              f"{len(xyz):,} points")

    # ------------------------------------------------------------------ playback
    def set_playing(self, playing: bool) -> None:
        if playing and self.folder.num_frames > 1:
            self._playing.set()
            self.gui["play"].label = "Pause"
        else:
            self._playing.clear()
            self.gui["play"].label = "Play"

    @property
    def playing(self) -> bool:
        return self._playing.is_set()

    def _play_loop(self) -> None:
        while not self._stop.is_set():
            if not self._playing.wait(timeout=0.2):
                continue
            start = time.perf_counter()
            nxt = self.frame_index + 1
            if nxt >= self.folder.num_frames:
                if bool(self.gui["loop"].value):
                    nxt = 0
                else:
                    self.set_playing(False)
                    continue
            try:
                self.show_frame(nxt)
            except Exception as err:  # a broken frame file stops playback, not the server
                self.set_playing(False)
                self._info.content = f"frame {nxt}: {err}"
                continue
            period = 1.0 / max(float(self.gui["fps"].value), 1e-3)
            self._stop.wait(max(0.0, period - (time.perf_counter() - start)))

    # ------------------------------------------------------------------ scene memory
    def _toggle_memory(self) -> None:
        on = bool(self.gui["scene_memory"].value)
        with self._lock:
            if on and self._memory is None and self._memory_error is None:
                self._load_memory()
            for node in self._memory_nodes:
                node.visible = on
            for node, _, _ in self._memory_markers.values():
                node.visible = on
            if on:
                self._update_memory_markers(self.frame_index)

    def _load_memory(self) -> None:
        """Best effort: the memory's renderable static voxels and each subject's track."""
        try:
            from mem4d.scene import SceneMemory

            mem = SceneMemory.load(self.folder.scene_memory_dir)
            layer = mem.static
            slots = np.arange(int(layer.n))
            slots = slots[layer.renderable(slots)] if len(slots) else slots
            xyz = np.asarray(layer.render_positions(slots), dtype=np.float32)
            rgb = (np.clip(np.asarray(layer.col[slots], dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
            sel = decimate(len(xyz), self.max_points)
            nodes = [self.draw.points("/scene_memory/static", xyz[sel], rgb[sel],
                                      float(self.gui["point_size"].value))]
            subjects = mem.subjects()
            for s in subjects:
                colour = tuple(int(c) for c in _id_colour(s.id))
                track_t = np.asarray(s.track["t"]).reshape(-1)
                centroid = np.asarray(s.track["centroid"], dtype=np.float32).reshape(-1, 3)
                if len(centroid) >= 2:
                    nodes.append(self.server.scene.add_line_segments(
                        f"/scene_memory/subject_{s.id}/track", _trajectory_segments(centroid), colour,
                        thickness=3.0, thickness_units="screen"))
                if len(centroid):
                    radius = float(np.clip(np.mean(np.asarray(s.extent)), 0.005 * self.scale, 0.2 * self.scale))
                    marker = self.server.scene.add_icosphere(
                        f"/scene_memory/subject_{s.id}/now", radius=radius, color=colour, subdivisions=2,
                        position=tuple(float(v) for v in centroid[-1]), cast_shadow=False, receive_shadow=False)
                    self._memory_markers[int(s.id)] = (marker, track_t, centroid)
            self._memory_nodes = nodes
            self._memory = mem
            self._memory_status.content = (f"{len(xyz):,} static points, {len(subjects)} subject(s) "
                                           "(sphere: latest position up to the current frame)")
        except Exception as err:  # an old or foreign format must not take the viewer down
            self._memory_error = f"{type(err).__name__}: {err}"
            self._memory_status.content = f"could not load scene_memory/: {self._memory_error}"

    def _update_memory_markers(self, index: int) -> None:
        if self._memory is None or not bool(self.gui.get("scene_memory") and self.gui["scene_memory"].value):
            return
        for marker, track_t, centroid in self._memory_markers.values():
            seen = np.flatnonzero(track_t <= index)
            marker.visible = bool(len(seen))
            if len(seen):
                marker.position = tuple(float(v) for v in centroid[seen[-1]])

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stops playback and the server."""
        self._stop.set()
        self._playing.clear()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)
        self.server.stop()

    def __enter__(self) -> ReconstructionViewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _id_colour(i: int) -> np.ndarray:
    """A distinct saturated colour per integer id (golden-ratio hues)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((0.13 + 0.618034 * int(i)) % 1.0, 0.85, 0.95)
    return (np.array([r, g, b]) * 255).astype(np.uint8)


class _StaticAccumulator:
    """A bounded sample of static points over a stream.

    Each frame contributes at most ``per_frame`` points; when the buffer exceeds ``capacity``
    every second point is dropped and the per-frame intake halves, so the kept sample stays
    spread evenly over the whole stream and never grows past ``capacity``.
    """

    def __init__(self, capacity: int, per_frame: int) -> None:
        self.capacity = int(capacity)
        self.per_frame = max(1, int(per_frame))
        self.xyz = np.zeros((0, 3), np.float32)
        self.rgb = np.zeros((0, 3), np.uint8)

    def add(self, xyz: np.ndarray, rgb: np.ndarray) -> None:
        sel = decimate(len(xyz), self.per_frame)
        self.xyz = np.concatenate([self.xyz, xyz[sel]])
        self.rgb = np.concatenate([self.rgb, rgb[sel]])
        while len(self.xyz) > self.capacity:
            self.xyz, self.rgb = self.xyz[::2].copy(), self.rgb[::2].copy()
            self.per_frame = max(1, self.per_frame // 2)

    def __len__(self) -> int:
        return len(self.xyz)


class LiveViewer:
    """Shows a reconstruction while it streams (used by ``mem4d reconstruct --view``).

    Args:
        port, host: where to listen (port 0: any free port); see :attr:`url`.
        max_points: points drawn for the latest frame.
        max_static_points: bound of the accumulated static sample.
        static_points_per_frame: initial intake of the accumulation per frame.
        max_frustums: frustums kept on screen (older ones are thinned out).
        announce: print one line with the URL when the server is up (``mem4d reconstruct``
            prints :attr:`url` itself).
        verbose: let viser print its banner.

    Memory stays bounded: only the latest frame, the static sample and one pose per frame are
    kept. ``add_frame`` is cheap enough to call every frame; the static map is re-sent at most
    every ``static_every_s`` seconds.
    """

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", *, max_points: int = 60_000,
                 max_static_points: int = 300_000, static_points_per_frame: int = 4_000,
                 max_frustums: int = 200, static_every_s: float = 1.0, announce: bool = False,
                 verbose: bool = False) -> None:
        self.server = _start_server(host, port, verbose)
        if announce:
            print(f"mem4d: live 3D viewer at {self.url} (open it in a browser)", flush=True)
        self.max_points = int(max_points)
        self.max_frustums = int(max_frustums)
        self.static_every_s = float(static_every_s)
        self.accumulator = _StaticAccumulator(max_static_points, static_points_per_frame)
        self.centres: list[np.ndarray] = []
        self.frustum_nodes: dict[int, Any] = {}
        self.num_frames = 0
        self.draw: _Scene | None = None
        self._last_static_send = -math.inf
        self._lock = threading.RLock()
        self._latest: tuple[Frame, np.ndarray, np.ndarray] | None = None  # (frame, c2w, K)
        gui = self.server.gui
        gui.configure_theme(control_layout="floating", control_width="medium", show_share_button=False)
        gui.add_markdown("**mem4d** · live reconstruction")
        self._info = gui.add_markdown("waiting for the first frame…")
        self.gui: dict[str, Any] = {
            "min_conf": gui.add_slider("Min confidence", min=1.0, max=10.0, step=0.1, initial_value=1.5),
            "point_size": gui.add_slider("Point size", min=0.0005, max=0.05, step=0.0005, initial_value=0.01),
            "current_points": gui.add_checkbox("Current frame", True),
            "static_map": gui.add_checkbox("Static map", True),
            "cameras": gui.add_checkbox("Frustums", True),
            "trajectory": gui.add_checkbox("Trajectory", True),
        }
        self.gui["min_conf"].on_update(lambda _: self._redraw_latest())
        self.gui["point_size"].on_update(lambda _: self._set_point_size())
        for key in ("current_points", "static_map", "trajectory"):
            self.gui[key].on_update(lambda _: self._apply_visibility())
        self.gui["cameras"].on_update(lambda _: self._apply_visibility())

    @property
    def port(self) -> int:
        return int(self.server.get_port())

    @property
    def url(self) -> str:
        host = self.server.get_host()
        host = "localhost" if host in ("0.0.0.0", "::", "") else host
        return f"http://{host}:{self.port}"

    def add_frame(self, index: int, rgb: Any, out: Any) -> None:
        """Shows frame ``index`` of a stream.

        Args:
            index: frame number.
            rgb: (H, W, 3) image, uint8 or float in [0, 1] (a (1, H, W, 3) / (3, H, W) tensor works too).
            out: a ``FrameOutput``-like object with ``pts_world`` (1, H, W, 3), ``conf_world``
                (1, H, W), ``cam2world`` (1, 4, 4), ``intrinsics`` (1, 3, 3) and ``dynamic_prob``
                (1, H, W) or None.
        """
        pts = _to_numpy(out.pts_world)
        pts = pts.reshape(-1, *pts.shape[-3:])[0].astype(np.float32)
        H, W = pts.shape[:2]
        conf = _to_numpy(out.conf_world).reshape(-1, H, W)[0].astype(np.float32)
        c2w = _to_numpy(out.cam2world).reshape(-1, 4, 4)[0].astype(np.float64)
        K = _to_numpy(out.intrinsics).reshape(-1, 3, 3)[0].astype(np.float64)
        dyn = getattr(out, "dynamic_prob", None)
        dyn = None if dyn is None else _to_numpy(dyn).reshape(-1, H, W)[0].astype(np.float32)
        img = _rgb_u8(rgb)
        if img.shape[:2] != (H, W):
            ys = (np.arange(H) * img.shape[0] / H).astype(int)
            xs = (np.arange(W) * img.shape[1] / W).astype(int)
            img = img[ys][:, xs]
        frame = Frame(index=int(index), rgb=np.ascontiguousarray(img[..., :3]), pts=pts, conf=conf, dynamic=dyn)
        with self._lock:
            if self.draw is None:
                scale = scene_scale(pts, c2w[:3, 3], conf)
                self.draw = _Scene(self.server, scale)
                ok = np.isfinite(pts).all(axis=-1)
                look_at = np.median(pts[ok], axis=0) if ok.any() else c2w[:3, 3] + c2w[:3, 2]
                self.draw.set_view(c2w, look_at, up_direction(c2w[None]))
                size = default_point_size(scale, K, H * W, self.max_points)
                conf_hi = float(np.nanpercentile(conf, 99)) if np.isfinite(conf).any() else 2.0
                self.gui["min_conf"].max = max(2.0, round(conf_hi, 1))
                ps = self.gui["point_size"]
                ps.min, ps.max, ps.step = round(size / 10, 6), round(size * 5, 6), round(size / 10, 6)
                ps.value = round(size, 6)
            self.num_frames += 1
            self.centres.append(c2w[:3, 3].copy())
            self._latest = (frame, c2w, K)
            # static accumulation from the confident, non-moving pixels
            xyz, col = select_points(frame, float(self.gui["min_conf"].value), show_moving=False)
            self.accumulator.add(xyz, col)
            self._draw_latest()
            self._add_frustum(int(index), c2w, K, H, W)
            self.trajectory_node = self.draw.trajectory("/trajectory", np.asarray(self.centres),
                                                        visible=bool(self.gui["trajectory"].value))
            now = time.perf_counter()
            if now - self._last_static_send >= self.static_every_s:
                self._send_static()
                self._last_static_send = now
            frames = f"{self.num_frames} frame{'' if self.num_frames == 1 else 's'}"
            self._info.content = (f"frame **{index}** · {frames} · "
                                  f"{len(self.accumulator):,} static points")

    def _draw_latest(self) -> None:
        if self._latest is None or self.draw is None:
            return
        frame, c2w, K = self._latest
        xyz, col = select_points(frame, float(self.gui["min_conf"].value), max_points=self.max_points)
        self.points_node = self.draw.points("/frame_points", xyz, col, float(self.gui["point_size"].value),
                                            visible=bool(self.gui["current_points"].value))
        self.current_frustum = self.draw.frustum(
            "/cameras/current", c2w, K, *frame.pts.shape[:2], colour=CURRENT_COLOUR, size=1.25,
            image=_thumbnail(frame.rgb), thickness=3.0, visible=bool(self.gui["cameras"].value))

    def _redraw_latest(self) -> None:
        with self._lock:
            self._draw_latest()

    def _send_static(self) -> None:
        if self.draw is None:
            return
        self.static_node = self.draw.points("/static_map", self.accumulator.xyz, self.accumulator.rgb,
                                            float(self.gui["point_size"].value),
                                            visible=bool(self.gui["static_map"].value))

    def _add_frustum(self, index: int, c2w: np.ndarray, K: np.ndarray, H: int, W: int) -> None:
        assert self.draw is not None
        self.frustum_nodes[index] = self.draw.frustum(f"/cameras/frame_{index:06d}", c2w, K, H, W,
                                                      visible=bool(self.gui["cameras"].value))
        if len(self.frustum_nodes) > self.max_frustums:  # thin out: drop every second old frustum
            keys = sorted(self.frustum_nodes)[:-1]
            for k in keys[1::2]:
                self.frustum_nodes.pop(k).remove()

    def _set_point_size(self) -> None:
        size = float(self.gui["point_size"].value)
        for name in ("points_node", "static_node"):
            node = getattr(self, name, None)
            if node is not None:
                node.point_size = size

    def _apply_visibility(self) -> None:
        with self._lock:
            pairs = [("points_node", "current_points"), ("static_node", "static_map"),
                     ("trajectory_node", "trajectory"), ("current_frustum", "cameras")]
            for attr, key in pairs:
                node = getattr(self, attr, None)
                if node is not None:
                    node.visible = bool(self.gui[key].value)
            for node in self.frustum_nodes.values():
                node.visible = bool(self.gui["cameras"].value)

    def flush(self) -> None:
        """Sends the static map now (call at the end of a stream)."""
        with self._lock:
            self._send_static()

    def close(self) -> None:
        """Sends the final static map and stops the server."""
        try:
            self.flush()
        finally:
            self.server.stop()

    def __enter__(self) -> LiveViewer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
