"""Depth colouring and the streamed depth video.

`colorize_depth` maps z-depth to a colour map (``turbo`` by default, near = red, far = blue)
between two depths; invalid pixels (0 or non-finite) are black. `DepthRange` keeps a colour
range that follows a stream without flicker: the first frame's 2nd-98th percentiles, then an
exponential moving average of each frame's percentiles. `DepthVideoWriter` encodes frames to
H.264 mp4 one at a time through imageio-ffmpeg (nothing is held in memory).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

__all__ = ["colorize_depth", "DepthRange", "DepthVideoWriter", "colormap_lut"]


@functools.lru_cache(maxsize=8)
def colormap_lut(name: str = "turbo") -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colour map."""
    from matplotlib import colormaps

    if name not in colormaps:
        raise ValueError(f"unknown colour map {name!r}; e.g. turbo, viridis, magma, inferno")
    lut = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return (lut * 255.0 + 0.5).astype(np.uint8)


def colorize_depth(depth: np.ndarray, lo: float | None = None, hi: float | None = None, *,
                   cmap: str = "turbo", invalid_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """(H, W) z-depth -> (H, W, 3) uint8; near (``lo``) is the warm end, far (``hi``) the cold end.

    ``lo`` / ``hi`` default to the 2nd / 98th percentiles of the valid depths of this frame.
    """
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    if lo is None or hi is None:
        if valid.any():
            p_lo, p_hi = np.percentile(depth[valid], [2.0, 98.0])
        else:
            p_lo, p_hi = 0.0, 1.0
        lo = p_lo if lo is None else lo
        hi = p_hi if hi is None else hi
    span = max(float(hi) - float(lo), 1e-9)
    x = np.clip((np.where(valid, depth, lo) - lo) / span, 0.0, 1.0)
    idx = np.round((1.0 - x) * 255.0).astype(np.intp)  # near -> 255 (red end of turbo)
    rgb = colormap_lut(cmap)[idx]
    rgb[~valid] = np.asarray(invalid_color, dtype=np.uint8)
    return rgb


class DepthRange:
    """A colour range that follows a stream: 2nd-98th percentiles, smoothed over frames.

    ``update(depth)`` returns the ``(lo, hi)`` to colour that frame with: the first frame's own
    percentiles, later an exponential moving average (weight ``momentum`` for the past).
    """

    def __init__(self, momentum: float = 0.9, percentiles: tuple[float, float] = (2.0, 98.0)) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.percentiles = percentiles
        self.lo: float | None = None
        self.hi: float | None = None

    def update(self, depth: np.ndarray) -> tuple[float, float]:
        depth = np.asarray(depth)
        valid = np.isfinite(depth) & (depth > 0)
        if valid.any():
            lo, hi = (float(v) for v in np.percentile(depth[valid], self.percentiles))
            if self.lo is None or self.hi is None:
                self.lo, self.hi = lo, hi
            else:
                m = self.momentum
                self.lo = m * self.lo + (1 - m) * lo
                self.hi = m * self.hi + (1 - m) * hi
        if self.lo is None or self.hi is None:
            return 0.0, 1.0
        return self.lo, max(self.hi, self.lo + 1e-6)


class DepthVideoWriter:
    """Streams (H, W, 3) uint8 frames into an H.264 mp4 (imageio-ffmpeg); ``close`` finishes the file.

    H and W should be multiples of 16 (mem4d's processed frames are); ffmpeg runs as a
    subprocess, so memory does not grow with the number of frames.
    """

    def __init__(self, path: str | os.PathLike, size: tuple[int, int], fps: float = 10.0, quality: float = 7.0) -> None:
        try:
            import imageio_ffmpeg
        except ImportError as err:  # pragma: no cover - the video extra is a test dependency
            raise ValueError("the depth video needs imageio-ffmpeg: pip install 'mem4d[video]' (or pass --no-video)") from err
        H, W = int(size[0]), int(size[1])
        self.path = str(path)
        self.size = (H, W)
        self.frames = 0
        self._gen: Any = imageio_ffmpeg.write_frames(
            self.path, (W, H), fps=float(fps) if fps and fps > 0 else 10.0, quality=quality,
            macro_block_size=16, ffmpeg_log_level="error")
        self._gen.send(None)  # starts ffmpeg

    def write(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if frame.shape != (*self.size, 3):
            raise ValueError(f"depth video frame must be {(*self.size, 3)}, got {frame.shape}")
        self._gen.send(frame)
        self.frames += 1

    def close(self) -> None:
        """Flushes and closes the file (safe to call twice)."""
        if self._gen is not None:
            gen, self._gen = self._gen, None
            gen.close()

    abort = close
