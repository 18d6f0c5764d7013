"""CPU milliseconds per frame of several models, measured so that load hits them all alike.

On a shared machine a benchmark run at one moment and another one a minute later see different
loads. Here the models take turns: each round streams ``frames`` frames through every model
(a fresh stream each time, ``model.step`` under inference mode, one thread), in an order rotated
from round to round, so a burst of load falls on all of them. Per frame both the process's CPU
time (``time.process_time``: what the frame cost this process, little disturbed by other
processes) and the wall-clock time are recorded; the figures are medians over the steady frames
of all rounds: the first ``skip`` frames of each stream (default: until the longest TCA window
and PSM queue of the models are full, when shapes stop changing) are left out.

Frames are a fixed pool of smooth random images: the cost does not depend on the content.

Example::

    models = {"full": Mem4D.from_pretrained("runs/full/final"), "unified": Mem4D.from_pretrained(...)}
    report = interleaved_speed(models, (96, 128), frames=40, rounds=3)
    report["models"]["full"]["cpu_ms"]
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

__all__ = ["interleaved_speed", "ramp_frames"]


def ramp_frames(config) -> int:
    """Frames before a stream's state stops growing: the TCA/TDM history and the PSM queue."""
    return config.history + (config.psm.capacity if config.use_psm else 0)


def _frame_pool(size: tuple[int, int], count: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    H, W = size
    low = torch.rand(count, 3, max(1, H // 16), max(1, W // 16), generator=g)
    frames = torch.nn.functional.interpolate(low, size=(H, W), mode="bilinear", align_corners=False).clamp(0, 1)
    return [f[None] for f in frames]


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


@torch.inference_mode()
def interleaved_speed(
    models: dict[str, torch.nn.Module],
    image_size: tuple[int, int],
    frames: int = 40,
    rounds: int = 3,
    skip: int | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Per model: median CPU and wall milliseconds per steady frame (see the module docstring).

    Args:
        models: name -> Mem4D (eval mode is set here).
        image_size: (H, W) of the frames.
        frames: frames per stream; must exceed ``skip``.
        rounds: streams per model.
        skip: leading frames of each stream not timed (default: the largest `ramp_frames`).
        threads: ``torch.set_num_threads`` during the measurement (restored afterwards).
    """
    if not models:
        raise ValueError("interleaved_speed needs at least one model")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    skip = max(ramp_frames(m.config) for m in models.values()) if skip is None else skip
    if frames <= skip:
        raise ValueError(f"frames ({frames}) must exceed the untimed ramp of {skip} frames")
    pool = _frame_pool(image_size)
    names = list(models)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_start = _loadavg()
    try:
        for model in models.values():
            model.eval()
        for r in range(rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                model = models[name]
                state = model.init_state(1, tuple(image_size))
                for i in range(frames):
                    c0, w0 = time.process_time(), time.perf_counter()
                    _, state = model.step(pool[i % len(pool)], state)
                    c1, w1 = time.process_time(), time.perf_counter()
                    if i >= skip:
                        cpu[name].append(c1 - c0)
                        wall[name].append(w1 - w0)
    finally:
        torch.set_num_threads(previous)
    return {
        "image_size": list(image_size),
        "frames_per_stream": frames,
        "untimed_frames": skip,
        "rounds": rounds,
        "threads": threads,
        "torch": torch.__version__,
        "load_average_start": load_start,
        "load_average_end": _loadavg(),
        "models": {n: {"cpu_ms": 1e3 * float(np.median(cpu[n])), "wall_ms": 1e3 * float(np.median(wall[n])),
                       "timed_frames": len(cpu[n])} for n in names},
    }
