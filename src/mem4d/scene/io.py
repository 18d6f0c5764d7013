"""Saving and loading a `SceneMemory` as a directory of JSON and NPZ files (never pickle).

Layout::

    config.json     SceneMemoryConfig.to_dict()
    meta.json       format version, scene scale history, last time, working window, frame
                    sources, keyframe bookkeeping, subject records' scalar fields
    static.npz      voxel and block arrays of the static layer (slot order preserved)
    frames.npz      frame bank arrays, thumbnails, full-resolution frames still held
    keyframes.npz   keyframe ids, pairwise overlaps and sample points
    subjects.npz    per-subject arrays (Kalman state, embeddings, tracks, exemplars)
    latents.npz / latents.json   generator latents that are arrays / JSON values

Latents that are neither arrays (numpy or torch; torch comes back as numpy) nor JSON values
are skipped with a warning. NPZ files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .camera_utils import to_numpy
from .config import SceneMemoryConfig
from .subjects import SubjectRecord
from .types import Exemplar

if TYPE_CHECKING:
    from .memory import SceneMemory

__all__ = ["FORMAT_VERSION", "load_memory", "save_memory"]

FORMAT_VERSION = 1


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _json_ok(x: Any) -> bool:
    try:
        json.dumps(x)
        return True
    except (TypeError, ValueError):
        return False


def save_memory(mem: SceneMemory, path: str | Path) -> None:
    """Writes ``mem`` into directory ``path`` (created if needed; files are overwritten)."""
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    bank, kfs, tracker = mem.bank, mem.keyframes, mem.tracker
    n = bank.n
    (d / "config.json").write_text(json.dumps(mem.config.to_dict(), indent=1))

    _save_npz(d / "static.npz", mem.static.state_arrays())

    frames: dict[str, np.ndarray] = {name: getattr(bank, name)[:n] for name in bank.ARRAYS}
    for i in range(n):
        frames[f"thumb_rgb_{i}"] = bank.thumb_rgb[i]
        frames[f"thumb_depth_{i}"] = bank.thumb_depth[i]
    for fid, (rgb, depth) in bank.full.items():
        frames[f"full_rgb_{fid}"] = rgb
        frames[f"full_depth_{fid}"] = depth
    _save_npz(d / "frames.npz", frames)

    lat_arrays: dict[str, np.ndarray] = {}
    lat_json: dict[str, Any] = {}
    for fid, lat in bank.latents.items():
        if isinstance(lat, np.ndarray) or (hasattr(lat, "detach") and hasattr(lat, "cpu")):
            lat_arrays[f"latent_{fid}"] = to_numpy(lat)
        elif _json_ok(lat):
            lat_json[str(fid)] = lat
        else:
            warnings.warn(f"latent of frame {fid} ({type(lat).__name__}) is neither an array nor JSON; not saved",
                          stacklevel=2)
    _save_npz(d / "latents.npz", lat_arrays)
    (d / "latents.json").write_text(json.dumps(lat_json))

    kf_arrays = {"ids": np.asarray(kfs.ids, np.int64), "ov": kfs.ov}
    for fid, pts in kfs.samples.items():
        kf_arrays[f"samples_{fid}"] = pts
    _save_npz(d / "keyframes.npz", kf_arrays)

    sub_arrays: dict[str, np.ndarray] = {}
    records = []
    for rec in tracker.records.values():
        i = rec.id
        sub_arrays[f"x_{i}"] = rec.x
        sub_arrays[f"P_{i}"] = rec.P
        sub_arrays[f"embedding_{i}"] = rec.embedding
        if rec.feat_embedding is not None:
            sub_arrays[f"feat_embedding_{i}"] = rec.feat_embedding
        sub_arrays[f"extent_{i}"] = rec.extent
        sub_arrays[f"track_t_{i}"] = np.asarray(rec.track_t, np.int64)
        sub_arrays[f"track_c_{i}"] = np.asarray(rec.track_c, np.float64).reshape(-1, 3)
        sub_arrays[f"track_e_{i}"] = np.asarray(rec.track_e, np.float64).reshape(-1, 3)
        for k, ex in enumerate(rec.exemplars):
            sub_arrays[f"ex_crop_{i}_{k}"] = ex.crop
            sub_arrays[f"ex_mask_{i}_{k}"] = ex.mask
            sub_arrays[f"ex_dir_{i}_{k}"] = ex.view_dir
        records.append({"id": i, "t_state": rec.t_state, "status": rec.status, "first_seen_t": rec.first_seen_t,
                        "last_seen_t": rec.last_seen_t, "area_ref": rec.area_ref, "miss_count": rec.miss_count,
                        "exemplars": [{"t": ex.t, "bbox": list(ex.bbox)} for ex in rec.exemplars]})
    _save_npz(d / "subjects.npz", sub_arrays)

    meta = {
        "format_version": FORMAT_VERSION,
        "scale_hist": list(mem._scale_hist),
        "scale": mem._scale,
        "last_t": mem._last_t,
        "working": list(mem._working),
        "voxel_size": mem.static.voxel_size,
        "n_voxels": mem.static.n,
        "n_frames": n,
        "sources": bank.source,
        "keyframes_last_id": kfs.last_id,
        "subjects": records,
        "next_subject_id": tracker.next_id,
        "timing_sum": mem._timing_sum,
        "timing_n": mem._timing_n,
    }
    (d / "meta.json").write_text(json.dumps(meta))


def load_memory(path: str | Path) -> SceneMemory:
    """Reads a directory written by `save_memory`; raises ValueError if it is not one."""
    from .memory import SceneMemory

    d = Path(path)
    if not (d / "meta.json").is_file() or not (d / "config.json").is_file():
        raise ValueError(f"{d} is not a saved SceneMemory (meta.json / config.json missing)")
    meta = json.loads((d / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported SceneMemory format version {meta.get('format_version')!r}")
    cfg = SceneMemoryConfig.from_dict(json.loads((d / "config.json").read_text()))
    mem = SceneMemory(cfg)
    mem._scale_hist.extend(meta["scale_hist"])
    mem._scale = meta["scale"]
    mem._last_t = meta["last_t"]
    mem._working.extend(int(x) for x in meta["working"])
    mem._timing_sum.update(meta["timing_sum"])
    mem._timing_n.update(meta["timing_n"])
    n = int(meta["n_frames"])
    mem._voxel_fixed = mem._voxel_fixed or n > 0

    mem.static.load_state_arrays(_load_npz(d / "static.npz"), meta["voxel_size"])

    bank = mem.bank
    fr = _load_npz(d / "frames.npz")
    bank._ensure(max(n, 1))
    for name in bank.ARRAYS:
        getattr(bank, name)[:n] = fr[name]
    bank.n = n
    bank.thumb_rgb = [fr[f"thumb_rgb_{i}"] for i in range(n)]
    bank.thumb_depth = [fr[f"thumb_depth_{i}"] for i in range(n)]
    bank.source = list(meta["sources"])
    for key in fr:
        if key.startswith("full_rgb_"):
            fid = int(key[len("full_rgb_"):])
            bank.full[fid] = (fr[key], fr[f"full_depth_{fid}"])
    for key, val in _load_npz(d / "latents.npz").items():
        bank.latents[int(key[len("latent_"):])] = val
    for key, val in json.loads((d / "latents.json").read_text()).items():
        bank.latents[int(key)] = val
    bank.latents = dict(sorted(bank.latents.items()))

    kf = _load_npz(d / "keyframes.npz")
    mem.keyframes.ids = [int(x) for x in kf["ids"]]
    mem.keyframes.ov = kf["ov"]
    mem.keyframes.samples = {fid: kf[f"samples_{fid}"] for fid in mem.keyframes.ids}
    mem.keyframes.last_id = meta["keyframes_last_id"]

    sa = _load_npz(d / "subjects.npz")
    for r in meta["subjects"]:
        i = r["id"]
        rec = SubjectRecord(
            id=i, x=sa[f"x_{i}"], P=sa[f"P_{i}"], t_state=r["t_state"], embedding=sa[f"embedding_{i}"],
            feat_embedding=sa.get(f"feat_embedding_{i}"), extent=sa[f"extent_{i}"], status=r["status"],
            first_seen_t=r["first_seen_t"], last_seen_t=r["last_seen_t"], area_ref=r["area_ref"],
            miss_count=r["miss_count"])
        rec.track_t = [int(x) for x in sa[f"track_t_{i}"]]
        rec.track_c = list(sa[f"track_c_{i}"])
        rec.track_e = list(sa[f"track_e_{i}"])
        rec.exemplars = [Exemplar(t=ex["t"], crop=sa[f"ex_crop_{i}_{k}"], mask=sa[f"ex_mask_{i}_{k}"],
                                  view_dir=sa[f"ex_dir_{i}_{k}"], bbox=tuple(ex["bbox"]))
                         for k, ex in enumerate(r["exemplars"])]
        mem.tracker.records[i] = rec
    mem.tracker.next_id = int(meta["next_subject_id"])
    return mem
