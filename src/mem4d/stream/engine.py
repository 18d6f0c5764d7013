"""The streaming loop: decoded frames -> ``Mem4D.step`` -> a sink that writes each frame to disk.

`run_stream` holds one frame at a time: the model's `StreamState` (bounded by the model), the
current frame and its output, and running sums for the summary (`RunningStats`); no list grows
with the number of frames. Outputs go to ``sink.write_frame`` as they are produced.

Ctrl-C: a ``KeyboardInterrupt`` while a frame is read or predicted ends the loop cleanly
(``StreamSummary.interrupted``); while a frame is being written (``sink.write_frame``) it is
deferred until that frame is complete (`defer_interrupts`), so the sink never holds half a
frame. The caller then finalises what exists.

Known intrinsics (`apply_known_intrinsics`): the model always predicts its own camera; with
given intrinsics K the frame's ``intrinsics`` become K, ``pts_cam`` is re-derived from the
predicted depth with K and ``pts_world = cam2world . pts_cam`` with the predicted pose, and
``fov_x`` follows K. Depth, confidence, pose and motion stay the model's.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch

from mem4d.geometry.camera import depth_to_pts_cam, focal_to_fov
from mem4d.geometry.se3 import transform_points
from mem4d.model.outputs import FrameOutput
from mem4d.stream.preprocess import Preprocessor
from mem4d.stream.sources import RawFrame

__all__ = ["DTYPES", "FrameRecord", "FrameSink", "RunningStats", "StreamSummary", "apply_known_intrinsics",
           "defer_interrupts", "run_stream"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FrameRecord:
    """One processed frame as handed to a sink.

    Attributes:
        index: output index (0, 1, 2, ... after stride).
        source_index: the frame's index in the input.
        timestamp: seconds (``source_index / fps``) when the input has a frame rate, else ``source_index``.
        name: source file name for image inputs, else None.
        rgb: (H, W, 3) uint8, the processed input frame.
        out: the model's `FrameOutput` for it (batch 1, float32, on the CPU).
    """

    index: int
    source_index: int
    timestamp: float
    name: str | None
    rgb: np.ndarray
    out: FrameOutput


class FrameSink(Protocol):
    def write_frame(self, record: FrameRecord) -> None: ...


@dataclass
class RunningStats:
    """Summary statistics kept as running sums (constant memory)."""

    frames: int = 0
    depth_sum: float = 0.0
    depth_count: int = 0
    path_length: float = 0.0
    last_centre: np.ndarray | None = None

    def update(self, out: FrameOutput) -> None:
        self.frames += 1
        d = out.depth[0].numpy()
        valid = np.isfinite(d) & (d > 0)
        self.depth_sum += float(d[valid].sum(dtype=np.float64))
        self.depth_count += int(valid.sum())
        centre = out.cam2world[0, :3, 3].double().numpy()
        if self.last_centre is not None:
            self.path_length += float(np.linalg.norm(centre - self.last_centre))
        self.last_centre = centre

    @property
    def mean_depth(self) -> float:
        return self.depth_sum / self.depth_count if self.depth_count else float("nan")


@dataclass
class StreamSummary:
    frames: int
    elapsed_s: float
    interrupted: bool
    mean_depth: float
    path_length: float
    size: tuple[int, int] | None
    first_source_index: int | None = None
    last_source_index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else float("nan")


@contextlib.contextmanager
def defer_interrupts() -> Iterator[None]:
    """Holds back SIGINT inside the block and raises ``KeyboardInterrupt`` after it (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(True)

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # not allowed here (embedded interpreters)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def apply_known_intrinsics(out: FrameOutput, K: torch.Tensor) -> FrameOutput:
    """``out`` with intrinsics ``K`` (3, 3): pts_cam from its depth and K, pts_world through its cam2world."""
    B, _, W = out.depth.shape
    K = K.to(out.depth.dtype).reshape(1, 3, 3).expand(B, 3, 3)
    pts_cam = depth_to_pts_cam(out.depth, K)
    pts_world = transform_points(out.cam2world, pts_cam)
    fov_x = focal_to_fov(K[:, 0, 0], W)
    return replace(out, intrinsics=K.clone(), pts_cam=pts_cam, pts_world=pts_world, fov_x=fov_x)


def _check_output(out: FrameOutput, index: int) -> None:
    for name in ("cam2world", "intrinsics"):
        if not torch.isfinite(getattr(out, name)).all():
            raise ValueError(f"the model produced a non-finite {name} at frame {index} (with --dtype fp16/bf16, try "
                             "--dtype fp32); the input may be corrupt")


def _stderr_warning(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def run_stream(model: Any, frames: Iterable[RawFrame], preprocessor: Preprocessor, sink: FrameSink, *,
               device: torch.device | str = "cpu", dtype: str = "fp32", fps: float | None = None,
               total: int | None = None, progress: bool = True, viewer: Any = None,
               on_frame: Callable[[FrameRecord], None] | None = None,
               warn: Callable[[str], None] | None = None) -> StreamSummary:
    """Streams ``frames`` through ``model`` and hands every frame to ``sink.write_frame``.

    Args:
        model: a `Mem4D` in eval mode on ``device``.
        frames: `RawFrame`s (e.g. ``FrameSource.frames(stride, max_frames)``).
        preprocessor: turns each into the model's input size (its ``intrinsics``, if given,
            replace the predicted ones, see `apply_known_intrinsics`).
        sink: receives `FrameRecord`s in order.
        device, dtype: where to run; ``"bf16"`` / ``"fp16"`` run the model under autocast.
        fps: the input's frame rate for timestamps (None: timestamps are frame indices).
        total: frames expected, for the progress bar (None: unknown).
        progress: show a tqdm bar (frames/s) on stderr.
        viewer: optional object with ``add_frame(index, rgb, out)``, called after each frame; if
            it raises, the viewer is dropped with a warning and the reconstruction goes on.
        on_frame: optional callback after each frame (tests, hooks).
        warn: where warnings go (default: stderr).

    Returns:
        `StreamSummary`; ``interrupted`` is True when Ctrl-C ended the stream early.
    """
    from tqdm.auto import tqdm

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    dev = torch.device(device)
    autocast = (torch.autocast(dev.type, dtype=DTYPES[dtype]) if dtype != "fp32" else contextlib.nullcontext())
    stats = RunningStats()
    state = None
    K_given: torch.Tensor | None = None
    interrupted = False
    first_src = last_src = None
    bar = tqdm(total=total, unit="frame", desc="reconstruct", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=True)
    start = time.perf_counter()
    iterator = iter(frames)
    try:
        for raw in iterator:
            index = stats.frames
            label = raw.name or f"frame {raw.index}"
            x = preprocessor(raw.image, label)  # (3, H, W)
            if state is None:
                state = model.init_state(batch_size=1, image_size=tuple(x.shape[-2:]))
                if preprocessor.intrinsics is not None:
                    K_given = torch.from_numpy(preprocessor.intrinsics)
            frame = x.unsqueeze(0).to(dev, non_blocking=True)
            with torch.inference_mode(), autocast:
                out, state = model.step(frame, state)
            out = out._map(lambda t: t.detach().float().cpu())  # type: ignore[assignment]
            if K_given is not None:
                out = apply_known_intrinsics(out, K_given)
            _check_output(out, index)
            rgb = (x.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
            ts = raw.index / fps if fps else float(raw.index)
            record = FrameRecord(index=index, source_index=raw.index, timestamp=ts, name=raw.name, rgb=rgb, out=out)
            with defer_interrupts():
                sink.write_frame(record)
                stats.update(out)
                first_src = raw.index if first_src is None else first_src
                last_src = raw.index
                bar.update(1)
            if viewer is not None:
                try:
                    viewer.add_frame(index, rgb, out)
                except Exception as err:  # a display problem must not cost the reconstruction
                    (warn or _stderr_warning)(f"the live viewer failed ({type(err).__name__}: {err}); "
                                              "continuing without it")
                    viewer = None
            if on_frame is not None:
                on_frame(record)
            if progress and math.isfinite(stats.mean_depth):
                bar.set_postfix_str(f"mean depth {stats.mean_depth:.2f} m", refresh=False)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        bar.close()
    elapsed = time.perf_counter() - start
    return StreamSummary(frames=stats.frames, elapsed_s=elapsed, interrupted=interrupted, mean_depth=stats.mean_depth,
                         path_length=stats.path_length, size=preprocessor.size, first_source_index=first_src,
                         last_source_index=last_src)
