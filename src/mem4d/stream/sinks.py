"""Per-frame writers: everything `mem4d reconstruct` puts in its output folder (docs/OUTPUTS.md).

`ReconstructionWriter.write_frame` writes one frame's files and appends one line / entry to
each streamed text file (trajectory, intrinsics, frame list, COLMAP, transforms.json), fuses
the frame into the bounded static cloud (`mem4d.viz.fusion.VoxelFusion`) and the optional
scene memory, and feeds the depth video encoder. Nothing per frame is kept in memory.
`finalize` then writes what needs the whole stream (static.ply, COLMAP points, scene.glb,
transforms.json's tail, meta.json); it works the same after a complete run and after Ctrl-C.
`abort` closes open files and the video encoder (the caller deletes the folder).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from mem4d.geometry.rotation import matrix_to_quat, quat_to_matrix, quat_wxyz_to_xyzw, quat_xyzw_to_wxyz
from mem4d.stream.confidence import DEFAULT_QUANTILE, ConfidenceStats, ConfidenceThreshold
from mem4d.stream.engine import FrameRecord
from mem4d.viz.colmap import ColmapTextWriter
from mem4d.viz.colorize import DepthRange, DepthVideoWriter, colorize_depth
from mem4d.viz.fusion import VoxelFusion
from mem4d.viz.nerfstudio import TransformsJsonWriter
from mem4d.viz.ply import write_ply

__all__ = ["WriterOptions", "ReconstructionWriter", "tum_line", "DEPTH_PNG_SCALE", "PER_FRAME_DIRS"]

DEPTH_PNG_SCALE = 1000.0  # depth/*.png: uint16 millimetres
PER_FRAME_DIRS = ("rgb", "depth", "conf", "conf_cam", "pts_world", "pts_cam", "dynamic", "moving")
_MAX_FRUSTUMS = 200


@dataclass
class WriterOptions:
    """What `ReconstructionWriter` writes.

    Attributes:
        pointmaps: write ``pts_world/`` and ``pts_cam/`` (the largest outputs).
        pointmap_dtype: ``"float32"`` or ``"float16"`` for the pointmaps.
        video: write ``depth.mp4``.
        video_fps: its frame rate.
        conf_threshold: confidence needed for static.ply / moving/*.ply / COLMAP points and the
            scene memory: a `ConfidenceThreshold` (default: per frame, its 10 % least confident
            pixels are dropped) or a number (fixed threshold).
        voxel_size: static cloud voxel (metres), None for automatic.
        max_points: cap on static cloud voxels (the voxel size doubles beyond it).
        dynamic_threshold: ``dynamic_prob`` above which a point is moving.
        glb, colmap, nerfstudio: write those exports.
        scene_memory: also fuse into a `mem4d.scene.SceneMemory` saved as ``scene_memory/``.
    """

    pointmaps: bool = True
    pointmap_dtype: str = "float32"
    video: bool = True
    video_fps: float = 10.0
    conf_threshold: ConfidenceThreshold | float = ConfidenceThreshold(quantile=DEFAULT_QUANTILE)
    voxel_size: float | None = None
    max_points: int = 2_000_000
    dynamic_threshold: float = 0.5
    glb: bool = True
    colmap: bool = True
    nerfstudio: bool = True
    scene_memory: bool = False

    def __post_init__(self) -> None:
        if self.pointmap_dtype not in ("float32", "float16"):
            raise ValueError(f"pointmap dtype must be float32 or float16, got {self.pointmap_dtype!r}")
        if not isinstance(self.conf_threshold, ConfidenceThreshold):
            self.conf_threshold = ConfidenceThreshold(value=float(self.conf_threshold))


def tum_line(timestamp: float, cam2world: np.ndarray) -> str:
    """One TUM trajectory line ``timestamp tx ty tz qx qy qz qw`` (as `write_tum_trajectory` formats it)."""
    M = np.asarray(cam2world, dtype=np.float64)
    q = quat_wxyz_to_xyzw(matrix_to_quat(torch.from_numpy(np.ascontiguousarray(M[:3, :3])))).numpy()
    vals = " ".join(f"{v:.9f}" for v in (*M[:3, 3], *q))
    return f"{timestamp:.6f} {vals}\n"


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, compress_level=3)


class ReconstructionWriter:
    """Writes a reconstruction into ``root`` frame by frame (see module docstring and docs/OUTPUTS.md).

    Args:
        root: the (temporary) output folder; created.
        options: `WriterOptions`.
        fixed_intrinsics: ``(K (3, 3), (H, W))`` when the intrinsics were given (one shared
            COLMAP camera), else None.
        timestamps_in_seconds: for the trajectory header.
        warn: called with warnings (e.g. trimesh missing).
    """

    def __init__(self, root: str | os.PathLike, options: WriterOptions | None = None, *,
                 fixed_intrinsics: tuple[np.ndarray, tuple[int, int]] | None = None,
                 timestamps_in_seconds: bool = True, warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.opt = options or WriterOptions()
        self.warn = warn or (lambda msg: warnings.warn(msg, stacklevel=2))
        self.root.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.has_motion: bool | None = None
        self._pending: int | None = None
        self._video: DepthVideoWriter | None = None
        self._range = DepthRange()
        self.fusion = VoxelFusion(self.opt.voxel_size, max_voxels=self.opt.max_points,
                                  dynamic_threshold=self.opt.dynamic_threshold)
        self.confidence = ConfidenceStats()
        self.loop_closures: list[tuple[int, int, np.ndarray]] = []  # (frame, the earlier frame it closed a
        # loop onto, the world-side correction (4, 4)): trajectory_loop_corrected.txt spreads them
        self.scene_memory: Any = None
        if self.opt.scene_memory:
            from mem4d.scene import SceneMemory

            self.scene_memory = SceneMemory()
        unit = "seconds (frame index / fps)" if timestamps_in_seconds else "frame index (the input has no frame rate)"
        self._traj = self._open_text("trajectory.txt",
                                     "# mem4d reconstruct: camera-to-world poses, TUM format (OpenCV camera axes, "
                                     "world = first camera, metres)\n"
                                     f"# timestamp tx ty tz qx qy qz qw; timestamp in {unit}\n")
        self._intr = self._open_text("intrinsics.txt", "# fx fy cx cy per frame (pixels of the processed frames, "
                                                       "pixel centre at 0 as in OpenCV)\n")
        self._list = self._open_text("frames.txt", "# index source_index timestamp source_name\n")
        self._colmap = (ColmapTextWriter(self.root / "colmap", fixed_intrinsics) if self.opt.colmap else None)
        self._transforms = TransformsJsonWriter(self.root / "transforms.json") if self.opt.nerfstudio else None
        self._frustum_depth_sum = 0.0

    def _open_text(self, name: str, header: str) -> IO[str]:
        f = open(self.root / name, "w")
        f.write(header)
        return f

    # ------------------------------------------------------------------ per frame
    def write_frame(self, rec: FrameRecord) -> None:
        i = rec.index
        if i != self.frames:
            raise ValueError(f"frames must arrive in order: expected {self.frames}, got {i}")
        self._pending = i
        out = rec.out
        depth = out.depth[0].numpy().astype(np.float32)
        conf = out.conf_world[0].numpy().astype(np.float32)
        conf_cam = out.conf_cam[0].numpy().astype(np.float32)
        pts_world = out.pts_world[0].numpy()
        K = out.intrinsics[0].double().numpy()
        c2w = out.cam2world[0].double().numpy()
        dyn = None if out.dynamic_prob is None else out.dynamic_prob[0].numpy().astype(np.float32)
        closed_onto = -1 if out.loop_keyframe is None else int(out.loop_keyframe[0])
        H, W = depth.shape
        if self.size is None:
            self.size = (H, W)
            self.has_motion = dyn is not None
            for sub in PER_FRAME_DIRS:
                if sub in ("pts_world", "pts_cam") and not self.opt.pointmaps:
                    continue
                if sub in ("dynamic", "moving") and dyn is None:
                    continue
                (self.root / sub).mkdir(exist_ok=True)
            if self.opt.video:
                fps = self.opt.video_fps if self.opt.video_fps and self.opt.video_fps > 0 else 10.0
                self._video = DepthVideoWriter(self.root / "depth.mp4", (H, W), fps=fps)
        stem = f"{i:06d}"
        valid = np.isfinite(depth) & (depth > 0)
        threshold = self.opt.conf_threshold.for_frame(conf, valid)
        self.confidence.update(conf, valid, threshold)
        _save_png(self.root / "rgb" / f"{stem}.png", rec.rgb)
        np.save(self.root / "depth" / f"{stem}.npy", np.where(valid, depth, 0.0).astype(np.float32))
        mm = np.round(np.where(valid, depth, 0.0).astype(np.float64) * DEPTH_PNG_SCALE)
        mm[(mm > 65535) | (mm < 0)] = 0  # beyond 65.535 m: stored as invalid (the .npy has the value)
        _save_png(self.root / "depth" / f"{stem}.png", mm.astype(np.uint16))
        np.save(self.root / "conf" / f"{stem}.npy", conf)
        np.save(self.root / "conf_cam" / f"{stem}.npy", conf_cam)
        if self.opt.pointmaps:
            dt = np.float16 if self.opt.pointmap_dtype == "float16" else np.float32
            np.save(self.root / "pts_world" / f"{stem}.npy", pts_world.astype(dt))
            np.save(self.root / "pts_cam" / f"{stem}.npy", out.pts_cam[0].numpy().astype(dt))
        if dyn is not None:
            np.save(self.root / "dynamic" / f"{stem}.npy", dyn)
            _save_png(self.root / "dynamic" / f"{stem}.png", np.round(np.clip(dyn, 0, 1) * 255).astype(np.uint8))
            moving = (dyn > self.opt.dynamic_threshold) & (conf >= threshold) & \
                np.isfinite(pts_world).all(-1) & valid
            write_ply(self.root / "moving" / f"{stem}.ply", pts_world[moving], rec.rgb[moving],
                      comment=f"mem4d moving points of frame {i} (world frame)")
        if self._video is not None:
            lo, hi = self._range.update(depth)
            self._video.write(colorize_depth(depth, lo, hi))
        self.fusion.add(pts_world, rec.rgb, conf=conf, dynamic_prob=dyn, depth=depth, fx=float(K[0, 0]),
                        conf_threshold=threshold)
        if self.scene_memory is not None:
            from mem4d.scene import write_frame_output

            valid_t = torch.from_numpy(valid)[None]
            clean = replace(out, depth=torch.where(valid_t, out.depth, torch.zeros_like(out.depth)),
                            pts_world=torch.where(valid_t[..., None], out.pts_world, torch.nan))
            # a loop the model closed on this frame re-poses what was written since the keyframe first
            write_frame_output(self.scene_memory, clean, t=i, rgb=rec.rgb, conf_threshold=threshold)
        if valid.any():
            self._frustum_depth_sum += float(np.median(depth[valid]))
        # streamed text files last, in one write each, then flushed
        self._traj.write(tum_line(rec.timestamp, c2w))
        self._intr.write(f"{K[0, 0]:.9g} {K[1, 1]:.9g} {K[0, 2]:.9g} {K[1, 2]:.9g}\n")
        self._list.write(f"{i} {rec.source_index} {rec.timestamp:.6f} {rec.name or '-'}\n")
        name = f"{stem}.png"
        if self._colmap is not None:
            self._colmap.add_image(name, c2w, K, (H, W))
        if self._transforms is not None:
            self._transforms.add_frame(f"rgb/{name}", c2w, K, (H, W), depth_file_path=f"depth/{name}")
        for f in (self._traj, self._intr, self._list, self._colmap, self._transforms):
            if f is not None:
                f.flush()
        if closed_onto >= 0:
            self.loop_closures.append((i, closed_onto, out.loop_correction[0].double().numpy()))
        self.frames = i + 1
        self._pending = None

    # ------------------------------------------------------------------ end
    def _discard_pending(self) -> None:
        """Removes the files of a frame that was not completely written (only after an abrupt stop)."""
        if self._pending is None:
            return
        stem = f"{self._pending:06d}"
        for sub in PER_FRAME_DIRS:
            for p in (self.root / sub).glob(f"{stem}.*"):
                p.unlink(missing_ok=True)
        self._pending = None

    def _close_streams(self) -> None:
        for f in (self._traj, self._intr, self._list):
            if not f.closed:
                f.close()
        if self._video is not None:
            self._video.close()
            self._video = None

    def finalize(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Writes static.ply, COLMAP points, scene.glb, transforms.json's tail, scene_memory/, meta.json.

        ``meta`` is merged into meta.json (with ``complete`` it says whether the stream ended).
        Returns the meta written.
        """
        self._discard_pending()
        self._close_streams()
        self._write_loop_corrected_trajectory()
        xyz, rgb, counts = self.fusion.points()
        assert isinstance(self.opt.conf_threshold, ConfidenceThreshold)
        message = self.confidence.warning(self.opt.conf_threshold, len(xyz), scene_memory=self.opt.scene_memory)
        if message is not None:
            self.warn(message)
        write_ply(self.root / "static.ply", xyz, rgb, extra={"count": counts},
                  comment="mem4d static cloud (world = first camera, OpenCV axes, metres)")
        if self._colmap is not None:
            self._colmap.write_points(xyz, rgb)
            self._colmap.close()
        if self._transforms is not None:
            self._transforms.close(ply_file_path="static.ply")
        glb_written = False
        if self.opt.glb:
            glb_written = self._write_glb(xyz, rgb)
        if self.scene_memory is not None and self.frames:
            self.scene_memory.save(self.root / "scene_memory")
        meta = dict(meta)
        meta.update({
            "frames": self.frames,
            "num_frames": self.frames,
            "size": list(self.size) if self.size else None,
            "height": self.size[0] if self.size else None,
            "width": self.size[1] if self.size else None,
            "motion_head": bool(self.has_motion),
            "depth_png_scale": DEPTH_PNG_SCALE,
            "pointmap_dtype": self.opt.pointmap_dtype if self.opt.pointmaps else None,
            "conf_threshold": self.opt.conf_threshold.describe(),
            **self.confidence.summary(),
            "dynamic_threshold": self.opt.dynamic_threshold,
            "static_points": int(len(xyz)),
            "voxel_size": self.fusion.voxel_size,
            "voxel_coarsenings": self.fusion.coarsenings,
            "glb": glb_written,
            "loop_closures": [{"frame": t, "onto": k} for t, k, _ in self.loop_closures],
        })
        meta["files"] = sorted(p.name + ("/" if p.is_dir() else "") for p in self.root.iterdir()
                               if not p.name.startswith(".") and p.name != "meta.json") + ["meta.json"]
        meta["files"].sort()
        with open(self.root / "meta.json", "w") as f:
            json.dump(_finite_or_none(meta), f, indent=2, default=_json_default)
            f.write("\n")
        return meta

    def _write_loop_corrected_trajectory(self) -> None:
        """trajectory_loop_corrected.txt: trajectory.txt with each loop closure spread over the frames
        since its keyframe (`mem4d.scene.loop_correction.correct_trajectory`; the same as the
        streamed poses where no loop closed)."""
        from mem4d.scene.loop_correction import correct_trajectory

        with open(self.root / "trajectory.txt") as f:
            lines = list(_data_lines(f))
        header = ("# mem4d reconstruct: camera-to-world poses with each loop closure (meta.json) spread over the frames "
                  "since its keyframe, after the stream (trajectory.txt: as streamed), TUM format (OpenCV camera axes, "
                  "world = first camera, metres)\n# timestamp tx ty tz qx qy qz qw\n")
        closures = [c for c in self.loop_closures if c[0] < len(lines)]
        poses = correct_trajectory(np.stack([_cam2world_from_tum(line) for line in lines]) if lines
                                   else np.zeros((0, 4, 4)), closures)
        tmp = self.root / ".trajectory_loop_corrected.txt.tmp"
        with open(tmp, "w") as f:
            f.write(header + "".join(tum_line(float(line.split()[0]), P) for line, P in zip(lines, poses)))
        os.replace(tmp, self.root / "trajectory_loop_corrected.txt")

    def _write_glb(self, xyz: np.ndarray, rgb: np.ndarray) -> bool:
        from mem4d.viz.glb import TrimeshMissing, write_glb

        if self.frames == 0:
            return False
        step = max(1, math.ceil(self.frames / _MAX_FRUSTUMS))
        cameras = []
        H, W = self.size or (0, 0)
        with open(self.root / "intrinsics.txt") as fi, open(self.root / "trajectory.txt") as ft:
            pairs = zip(_data_lines(fi), _data_lines(ft))
            for k, (intr, traj) in enumerate(pairs):
                if k % step:
                    continue
                fx, fy, cx, cy = (float(v) for v in intr.split())
                K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)
                cameras.append((_cam2world_from_tum(traj), K, (H, W)))
        depth = self._frustum_depth_sum / max(self.frames, 1)
        depth = 0.15 * depth if depth > 0 else 0.1
        try:
            write_glb(self.root / "scene.glb", xyz, rgb, cameras, frustum_depth=depth)
        except TrimeshMissing as err:
            self.warn(f"{err}; skipping scene.glb")
            return False
        return True

    def abort(self) -> None:
        """Closes everything without finishing (the caller removes the folder)."""
        for f in (self._traj, self._intr, self._list):
            try:
                f.close()
            except Exception:
                pass
        for w in (self._colmap, self._transforms, self._video):
            if w is not None:
                try:
                    w.abort()
                except Exception:
                    pass
        self._video = None


def _data_lines(lines: Iterable[str]) -> Iterator[str]:
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def _cam2world_from_tum(line: str) -> np.ndarray:
    v = [float(x) for x in line.split()]
    q_wxyz = quat_xyzw_to_wxyz(torch.tensor(v[4:8], dtype=torch.float64))
    M = np.eye(4)
    M[:3, :3] = quat_to_matrix(q_wxyz).numpy()
    M[:3, 3] = v[1:4]
    return M


def _finite_or_none(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite_or_none(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite_or_none(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)
