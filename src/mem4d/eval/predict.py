"""Stage 1 of the evaluation harness: stream a checkpoint over a benchmark, write predictions.

``predict(benchmark, ckpt, out)`` feeds every sequence of the benchmark to the model one
frame at a time (``model.step``, one fresh stream per sequence, fp32, inference mode) and
writes into ``out``:

- one ``<sequence>.npz`` per sequence (``np.load(..., allow_pickle=False)`` reads it):

  ==================  ====================  ==============================================
  key                 shape / dtype         meaning
  ==================  ====================  ==============================================
  ``depth``           (T, h, w) float32     z-depth at the model resolution (metres)
  ``conf``            (T, h, w) float32     self-view confidence (``conf_cam``)
  ``cam2world``       (T, 4, 4) float64     camera t -> world (camera 0)
  ``intrinsics``      (T, 3, 3) float32     predicted pinhole intrinsics (pixels)
  ``frame_ids``       (T,) str              the benchmark's frame names (checked by score)
  ``frame_time_s``    (T,) float64          wall time of each ``step``
  ``pts_world``       (T, h, w, 3) float32  global pointmap (benchmarks with ``recon``)
  ``conf_world``      (T, h, w) float32     its confidence (idem)
  ``dynamic_prob``    (T, h, w) float16     motion-head output, when the model has one
  ==================  ====================  ==============================================

- ``manifest.json``: benchmark settings and limits, the checkpoint (path, sha256 of weights
  and config, model-config hash), git revision, device, torch version, threads, date, the
  per-frame timing summary and the list of sequences with their files and GT fingerprints.

The output folder is written atomically: everything goes into a hidden temporary folder
beside ``out`` which is renamed to ``out`` at the end, so a failure (or Ctrl-C) leaves
nothing behind. An existing ``out`` is refused unless ``overwrite=True``.

Timing follows PROTOCOLS section 2.3 in spirit: the step alone, the host-to-device copy of
the frame included, device-to-host conversion of the outputs excluded, with
``torch.cuda.synchronize()`` around each frame on CUDA. These are not the protocol's speed
numbers (no warm-up, frames 0-104 included); see ``bench/`` for those.

Checkpoints (``ckpt``): a folder written by ``Mem4D.save_pretrained``, ``"default"`` (the
shipped model) or ``"baseline:NAME"`` (:mod:`mem4d.eval.baselines`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mem4d.data.sample import Sample
from mem4d.eval.benchmarks import Benchmark, get_benchmark, gt_fingerprint, sequence_file_stem

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ModelPredictor",
    "Predictor",
    "atomic_output_dir",
    "file_sha256",
    "git_revision",
    "load_predictor",
    "predict",
    "timing_summary",
]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------
# Small utilities (shared with score)
# ----------------------------------------------------------------------------------------


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git_revision() -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the checkout this package runs from, or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=here, capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False, cwd=here,
                                capture_output=True, text=True, timeout=30)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return {"commit": commit.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return None


class atomic_output_dir:
    """Context manager: a temporary folder beside ``out``, renamed to ``out`` on success.

    On any exception the temporary folder (and any parent folder this created) is removed.
    With ``overwrite`` an existing ``out`` is replaced only once the new one is complete.
    """

    def __init__(self, out: str | os.PathLike, overwrite: bool = False) -> None:
        self.out = Path(out).expanduser()
        self.overwrite = overwrite
        check_output_dir(self.out, overwrite)
        self.tmp: Path | None = None
        self._made: list[Path] = []

    def __enter__(self) -> Path:
        parent = self.out.absolute().parent
        missing = []
        p = parent
        while not p.exists():
            missing.append(p)
            p = p.parent
        parent.mkdir(parents=True, exist_ok=True)
        self._made = missing  # deepest first
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=parent))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            for p in self._made:
                try:
                    p.rmdir()
                except OSError:
                    break
            return False
        old = None
        if self.out.exists():
            if not self.overwrite:  # appeared while we were working
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise FileExistsError(f"{self.out} appeared while writing; nothing was written (use --overwrite)")
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False


def check_output_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise ValueError(f"output folder {out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {out} exists and is not a folder")


def timing_summary(times: list[float] | np.ndarray) -> dict[str, float]:
    """Median / p90 / p99 / mean per-frame time (s), FPS = 1/median and frames/total time."""
    t = np.asarray(times, dtype=np.float64)
    if t.size == 0:
        return {"frames": 0}
    total = float(t.sum())
    med = float(np.median(t))
    return {
        "frames": int(t.size),
        "median_s": med,
        "p90_s": float(np.percentile(t, 90)),
        "p99_s": float(np.percentile(t, 99)),
        "mean_s": float(t.mean()),
        "total_s": total,
        "fps_median": (1.0 / med) if med > 0 else None,
        "fps_throughput": (t.size / total) if total > 0 else None,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------
# Predictors: a model or a baseline, same output
# ----------------------------------------------------------------------------------------


class Predictor:
    """What ``predict`` runs on each sequence.

    ``run(frames, gt)`` gets the model-resolution clip ``frames`` (images (T, 3, h, w)) and the
    native ground truth ``gt`` (only baselines may look at it) and returns the arrays of the
    npz (at least ``depth``, ``conf``, ``cam2world``, ``intrinsics``, ``frame_time_s``, and
    ``pts_world``/``conf_world`` when ``want_points``).
    """

    label: str = "predictor"
    uses_gt: bool = False

    def describe(self) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, frames: Sample, gt: Sample, benchmark: Benchmark, want_points: bool) -> dict[str, np.ndarray]:
        raise NotImplementedError


class ModelPredictor(Predictor):
    """A Mem4D checkpoint streamed with ``step``."""

    def __init__(self, ckpt: str, device: str | torch.device = "cpu") -> None:
        from mem4d.model.mem4d import Mem4D
        from mem4d.model.pretrained import CONFIG_NAME, DEFAULT_DIR, WEIGHTS_NAME

        self.device = torch.device(device)
        directory = DEFAULT_DIR if ckpt == "default" else Path(ckpt).expanduser()
        if ckpt != "default" and not directory.is_dir():
            raise FileNotFoundError(
                f"checkpoint folder {directory} not found; --ckpt takes a folder written by Mem4D.save_pretrained "
                "(config.json + model.safetensors), 'default', or baseline:NAME"
            )
        self.model = Mem4D.from_pretrained(str(ckpt) if ckpt == "default" else directory, map_location=self.device)
        self.model.eval()
        self.directory = directory
        self.label = directory.name if ckpt != "default" else "mem4d-default"
        cfg = self.model.config.to_dict()
        self._info = {
            "kind": "model",
            "path": str(directory.resolve()),
            "weights_sha256": file_sha256(directory / WEIGHTS_NAME),
            "config_sha256": file_sha256(directory / CONFIG_NAME),
            "model_config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest(),
            "model_config": cfg,
            "variant": cfg.get("variant"),
            "num_parameters": self.model.num_parameters(),
        }

    def describe(self) -> dict[str, Any]:
        return dict(self._info)

    @torch.inference_mode()
    def run(self, frames: Sample, gt: Sample, benchmark: Benchmark, want_points: bool) -> dict[str, np.ndarray]:
        images = frames.images  # (T, 3, h, w) on the host
        T, _, h, w = images.shape
        state = self.model.init_state(batch_size=1, image_size=(h, w))
        keys = ["depth", "conf_cam", "cam2world", "intrinsics"] + (["pts_world", "conf_world"] if want_points else [])
        outs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        dyn: list[np.ndarray] = []
        times = np.zeros(T, dtype=np.float64)
        for t in range(T):
            frame = images[t : t + 1]
            _sync(self.device)
            start = time.perf_counter()
            out, state = self.model.step(frame.to(self.device, non_blocking=False), state)
            _sync(self.device)
            times[t] = time.perf_counter() - start
            for k in keys:
                outs[k].append(getattr(out, k)[0].float().cpu().numpy())
            if out.dynamic_prob is not None:
                dyn.append(out.dynamic_prob[0].float().cpu().numpy())
        result = {
            "depth": np.stack(outs["depth"]).astype(np.float32),
            "conf": np.stack(outs["conf_cam"]).astype(np.float32),
            "cam2world": np.stack(outs["cam2world"]).astype(np.float64),
            "intrinsics": np.stack(outs["intrinsics"]).astype(np.float32),
            "frame_time_s": times,
        }
        if want_points:
            result["pts_world"] = np.stack(outs["pts_world"]).astype(np.float32)
            result["conf_world"] = np.stack(outs["conf_world"]).astype(np.float32)
        if len(dyn) == T:
            result["dynamic_prob"] = np.stack(dyn).astype(np.float16)
        return result


def load_predictor(ckpt: str, device: str | torch.device = "cpu") -> Predictor:
    """``--ckpt`` -> a :class:`Predictor` (model folder, ``default`` or ``baseline:NAME``)."""
    if not ckpt:
        raise ValueError("--ckpt is empty; pass a checkpoint folder, 'default' or baseline:NAME")
    if ckpt.startswith("baseline:"):
        from mem4d.eval.baselines import make_baseline

        return make_baseline(ckpt.split(":", 1)[1])
    return ModelPredictor(ckpt, device)


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return dev


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


# ----------------------------------------------------------------------------------------
# Stage 1
# ----------------------------------------------------------------------------------------


def predict(
    benchmark: str,
    ckpt: str,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    size: int | None = None,
    device: str = "cpu",
    limit_seqs: int | None = None,
    max_frames: int | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    label: str | None = None,
    save_points: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Runs ``ckpt`` over ``benchmark`` and writes ``out`` (see the module docstring).

    Args:
        benchmark: registry name (:func:`mem4d.eval.benchmarks.get_benchmark`).
        ckpt: checkpoint folder, ``"default"`` or ``"baseline:NAME"``.
        out: output folder (must not exist unless ``overwrite``).
        data_root: dataset root (else ``$MEM4D_DATA``; synthetic benchmarks need none).
        size: long side of the model input (default: the benchmark's, 512 for the protocols).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        limit_seqs, max_frames: shorten the run (first sequences / first protocol frames).
        threads: ``torch.set_num_threads`` for the run (recorded either way).
        label: method name in tables (default: checkpoint folder name or baseline name).
        save_points: store ``pts_world`` (default: when the benchmark scores ``recon``).
        log: progress callback (one line per sequence), e.g. ``print``.

    Returns:
        ``out`` as a Path.
    """
    out = Path(out).expanduser()
    check_output_dir(out, overwrite)
    bench = get_benchmark(benchmark)
    size = int(size) if size is not None else bench.default_size
    if size % 16 or size < 16:
        raise ValueError(f"--size must be a positive multiple of 16, got {size}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _predict(bench, ckpt, out, data_root, size, device, limit_seqs, max_frames, overwrite, label,
                        save_points, log)
    finally:
        torch.set_num_threads(previous_threads)


def _predict(bench: Benchmark, ckpt: str, out: Path, data_root, size: int, device: str, limit_seqs, max_frames,
             overwrite: bool, label, save_points, log) -> Path:
    root = bench.root(data_root)  # validates the root (recorded in the manifest)...
    names = bench.sequences(data_root, limit_seqs)  # ... and the sequence list
    dev = _resolve_device(device)
    predictor = load_predictor(ckpt, dev)
    want_points = ("recon" in bench.tasks) if save_points is None else bool(save_points)
    log = log or (lambda _msg: None)

    seq_entries: list[dict[str, Any]] = []
    all_times: list[float] = []
    with atomic_output_dir(out, overwrite) as tmp:
        used: set[str] = set()
        for i, name in enumerate(names):
            gt = bench.load(name, data_root, max_frames, size=size)
            frames = bench.prepare(gt, size)
            arrays = predictor.run(frames, gt, bench, want_points)
            T, h, w = arrays["depth"].shape
            if T != gt.num_frames or (h, w) != frames.image_size:
                raise RuntimeError(f"{predictor.label} returned depth {arrays['depth'].shape} for {gt.num_frames} "
                                   f"frames of {frames.image_size}")
            arrays["frame_ids"] = np.asarray(gt.meta["frame_ids"], dtype=str)
            stem = sequence_file_stem(name)
            while stem in used:
                stem += "_"
            used.add(stem)
            np.savez_compressed(tmp / f"{stem}.npz", **arrays)
            times = arrays["frame_time_s"].tolist()
            all_times += times
            seq_entries.append({
                "name": name,
                "file": f"{stem}.npz",
                "num_frames": int(T),
                "native_size": list(gt.image_size),
                "input_size": [int(h), int(w)],
                "gt_fingerprint": gt_fingerprint(gt),
                "timing": timing_summary(times),
            })
            med = seq_entries[-1]["timing"].get("median_s") or 0.0
            log(f"[{i + 1}/{len(names)}] {name}: {T} frames at {h}x{w} (HxW), {med * 1000:.1f} ms/frame")
        manifest = {
            "format_version": FORMAT_VERSION,
            "kind": "mem4d-eval-predictions",
            "benchmark": bench.settings(),
            "run": {
                "size": size,
                "limit_seqs": limit_seqs,
                "max_frames": max_frames,
                "limited": limit_seqs is not None or max_frames is not None,
                "data_root": str(root.resolve()) if root is not None else None,
                "save_points": want_points,
            },
            "label": label or predictor.label,
            "checkpoint": {"arg": ckpt, **predictor.describe()},
            "environment": {
                "mem4d_version": _mem4d_version(),
                "git": git_revision(),
                "device": str(dev),
                "device_name": _device_name(dev),
                "torch_version": torch.__version__,
                "cuda_version": torch.version.cuda,
                "threads": torch.get_num_threads(),
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "dtype": "float32",
            },
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "timing": {
                "scope": "model.step incl. host-to-device copy of the frame, excl. outputs to host; "
                "all frames (no warm-up excluded)",
                **timing_summary(all_times),
            },
            "sequences": seq_entries,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _mem4d_version() -> str:
    from mem4d import __version__

    return __version__
