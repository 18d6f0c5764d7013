"""Streaming speed and memory of the Mem4D network (``mem4d bench``), PROTOCOLS.md §2.

What is timed: ``model.step`` only, one frame at a time (streaming, batch ``B`` streams in
lockstep, default 1), under ``torch.inference_mode()``; the host->device copy of the frame is
included, outputs stay on the device. CUDA: ``synchronize()`` before the clock starts and
after every frame. Before measuring, ``warmup`` frames run on a throw-away stream; the
measured stream then starts from an empty state at frame 0, so the report separates the
*ramp* (frames before the PSM queue and TCA window are full, whose shapes still change) from
the *steady* state.

Frames are synthetic (a fixed-seed pool of smooth random images, cycled); speed does not
depend on content. Peak memory: CUDA ``max_memory_allocated`` / ``max_memory_reserved``;
CPU the process's peak resident set size (``resource.getrusage``, includes Python and the
weights) and its current RSS. ``gemm_gflops`` is a plain matmul measurement of the same
machine with the same thread count, so numbers from different hosts can be normalised.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import resource
import time
from typing import Any

import torch
from torch import nn

from mem4d.config import Mem4DConfig
from mem4d.model.mem4d import Mem4D

__all__ = ["benchmark", "gemm_gflops", "DTYPES"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_CHECKPOINTS = (10, 100, 200, 1000, 10000)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None,
                seconds: float = 0.5) -> float:
    """Sustained GFLOP/s of an n x n matmul (n = 1024 on CPU, 8192 on CUDA)."""
    device = torch.device(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    with torch.inference_mode():
        for _ in range(3):
            a @ b
        _sync(device)
        reps, start = 0, time.perf_counter()
        while True:
            a @ b
            reps += 1
            _sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and reps >= 3:
                break
    return 2 * n**3 * reps / elapsed / 1e9


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _stats(times_s: list[float], batch: int) -> dict[str, float]:
    med = _percentile(times_s, 50)
    return {
        "frames": len(times_s),
        "median_ms": med * 1e3,
        "p90_ms": _percentile(times_s, 90) * 1e3,
        "p99_ms": _percentile(times_s, 99) * 1e3,
        "mean_ms": sum(times_s) / len(times_s) * 1e3 if times_s else float("nan"),
        "fps": batch / med if med > 0 else float("nan"),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return 0


def _memory(device: torch.device) -> dict[str, int]:
    if device.type == "cuda":
        return {"max_memory_allocated": torch.cuda.max_memory_allocated(device),
                "max_memory_reserved": torch.cuda.max_memory_reserved(device)}
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_rss": int(peak_kb) * 1024, "rss": _rss_bytes()}


def _frame_pool(batch: int, size: tuple[int, int], count: int = 8) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    H, W = size
    low = torch.rand(count, batch, 3, max(1, H // 16), max(1, W // 16), generator=g)
    frames = torch.nn.functional.interpolate(low.flatten(0, 1), size=(H, W), mode="bilinear", align_corners=False)
    return list(frames.clamp(0, 1).reshape(count, batch, 3, H, W).unbind(0))


def benchmark(
    config: Mem4DConfig,
    image_size: tuple[int, int],
    frames: int,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    threads: int | None = None,
    warmup: int | None = None,
    batch: int = 1,
    checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS,
    tf32: bool = False,
    count_flops: bool = True,
    profile_top: int = 0,
    gemm_seconds: float = 0.5,
    seed: int = 0,
) -> dict[str, Any]:
    """Runs the streaming benchmark and returns the report (a JSON-friendly dict).

    Args:
        config: model config (random weights: speed does not depend on them).
        image_size: (H, W), multiples of the patch size.
        frames: frames streamed in the measured run.
        device: "cpu" or "cuda[:i]".
        dtype: "fp32" (no autocast), "bf16" or "fp16" (autocast).
        threads: intra-op threads (``torch.set_num_threads``); default: leave as is.
        warmup: frames run on a throw-away stream first (default 3 on CPU, 20 on CUDA).
        batch: lockstep streams per step.
        checkpoints: frame counts at which latency (over the frames since the previous
            checkpoint) and memory are reported; ``frames`` itself is always one.
        tf32: allow TF32 matmuls/convs on CUDA (CUT3R's released setting).
        count_flops: count the FLOPs of one steady step with ``torch.utils.flop_counter``.
        profile_top: if > 0, profile a few steady steps and list the top ops by self time.
        gemm_seconds: duration of the GEMM measurement.
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch.cuda.is_available() is False; use --device cpu")
    if dev.type == "cpu" and dtype == "fp16":
        raise ValueError("fp16 autocast is for CUDA; use --dtype bf16 or fp32 on CPU")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    warmup = (20 if dev.type == "cuda" else 3) if warmup is None else warmup
    torch.manual_seed(seed)
    model = Mem4D(config).eval().to(dev)
    model.init_state(batch, image_size)  # validates the size early
    pool = _frame_pool(batch, image_size)
    autocast = (torch.autocast(dev.type, dtype=DTYPES[dtype]) if dtype != "fp32" else contextlib.nullcontext())
    # Shapes change until the TCA window and the PSM queue are full (paper preset: 5 + 100 = 105).
    ramp_end = config.history + (config.psm.capacity if config.use_psm else 0)

    report: dict[str, Any] = {
        "preset_dim": config.dim,
        "variant": config.variant,
        "image_size": list(image_size),
        "batch": batch,
        "frames": frames,
        "warmup_frames": warmup,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine()),
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if dev.type == "cuda" else None,
        "tf32": bool(tf32) if dev.type == "cuda" else None,
        "parameters": model.num_parameters(),
        "ramp_frames": ramp_end,
        "scope": "model.step only; H2D of the frame included, outputs left on device",
        # Other processes on the machine distort CPU timings; OpenMP's spin-waiting makes an
        # oversubscribed multi-thread run collapse (OMP_WAIT_POLICY=PASSIVE avoids it).
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_start": _loadavg(),
    }
    report["gemm_gflops"] = gemm_gflops(dev, DTYPES[dtype] if dev.type == "cuda" else torch.float32, seconds=gemm_seconds)

    with torch.inference_mode(), autocast:
        state = model.init_state(batch, image_size)
        for i in range(warmup):
            _, state = model.step(pool[i % len(pool)].to(dev), state)
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        marks = sorted({c for c in checkpoints if c < frames} | {frames})
        times: list[float] = []
        rows, prev = [], 0
        state = model.init_state(batch, image_size)
        for i in range(frames):
            frame = pool[i % len(pool)]
            _sync(dev)
            start = time.perf_counter()
            _, state = model.step(frame.to(dev, non_blocking=False), state)
            _sync(dev)
            times.append(time.perf_counter() - start)
            if i + 1 in marks:
                row = {"at_frame": i + 1, **_stats(times[prev:], batch), **_memory(dev), "state_bytes": state.nbytes()}
                rows.append(row)
                prev = i + 1
        report["checkpoints"] = rows
        report["all"] = _stats(times, batch)
        report["ramp"] = _stats(times[:ramp_end], batch)
        report["steady"] = _stats(times[ramp_end:], batch) if frames > ramp_end else None
        report["state_bytes"] = state.nbytes()
        report["load_average_end"] = _loadavg()

        if count_flops:
            from torch.utils.flop_counter import FlopCounterMode

            counter = FlopCounterMode(display=False)
            with counter:
                model.step(pool[0].to(dev), state)
            flops = counter.get_total_flops()
            report["gflop_per_step"] = flops / 1e9
            steady = report["steady"] or report["all"]
            achieved = flops / (steady["median_ms"] / 1e3) / 1e9
            report["achieved_gflops"] = achieved
            report["fraction_of_gemm"] = achieved / report["gemm_gflops"]
        if profile_top > 0:
            report["profile"] = _profile(model, state, pool, dev, profile_top)
    return report


def _profile(model: Mem4D, state, pool, dev: torch.device, top: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Top ops by self time over 5 steady steps, plus time per top-level module."""
    from torch.profiler import ProfilerActivity, profile, record_function

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    hooks = []
    # Components and their direct children (e.g. psm.encoder, whose parent is never called as a
    # whole); times are inclusive, so nested entries overlap their parent's.
    for name, module in model.named_modules():
        if not name or name.count(".") > 1 or isinstance(module, (nn.ModuleList, nn.ModuleDict)):
            continue
        ctx: dict[str, Any] = {}

        def pre(_m, _i, name=name, ctx=ctx):  # type: ignore[no-untyped-def]
            ctx["rf"] = record_function(f"module::{name}")
            ctx["rf"].__enter__()

        def post(_m, _i, _o, ctx=ctx):  # type: ignore[no-untyped-def]
            ctx["rf"].__exit__(None, None, None)

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with profile(activities=acts) as prof:
            for i in range(5):
                _, state = model.step(pool[i % len(pool)].to(dev), state)
            _sync(dev)
    finally:
        for h in hooks:
            h.remove()
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    events = prof.key_averages()
    modules = [e for e in events if e.key.startswith("module::")]
    ops = sorted((e for e in events if not e.key.startswith("module::")), key=lambda e: getattr(e, key), reverse=True)
    out = [{"name": e.key, "total_ms_per_step": e.cpu_time_total / 5e3, "calls_per_step": e.count / 5}
           for e in sorted(modules, key=lambda e: e.cpu_time_total, reverse=True)]
    out += [{"name": e.key, "self_ms_per_step": getattr(e, key) / 5e3, "calls_per_step": e.count / 5} for e in ops[:top]]
    return out
