"""The CUT3R-processed on-disk layout of a clip: writer and reader.

One folder per scene, one file per frame and quantity, frame names zero-padded to six digits::

    <root>/<scene>/rgb/000000.png            8-bit RGB
    <root>/<scene>/depth/000000.npy          float32 z-depth in metres, 0 = invalid
    <root>/<scene>/cam/000000.npz            pose: 4x4 cam2world (OpenCV axes), intrinsics: 3x3
    <root>/<scene>/dynamic_mask/000000.png   8-bit, 255 on moving surfaces       (if known)
    <root>/<scene>/instance/000000.png       16-bit instance ids, 0 = static     (if known)
    <root>/<scene>/scene_flow/000000.npy     float32 (H, W, 3) world scene flow  (optional)
    <root>/<scene>/meta.json                 the Sample's name and meta          (extra)

The key `pose` in `cam/*.npz` is CUT3R's name for the cam2world matrix. A scene is written into
a temporary folder beside its destination and renamed into place when complete, so a reader
never sees a half-written scene.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mem4d.data.sample import Sample

FRAME_DIGITS = 6


def frame_name(index: int) -> str:
    return f"{index:0{FRAME_DIGITS}d}"


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def write_scene(
    sample: Sample,
    root: str | os.PathLike,
    scene: str,
    *,
    overwrite: bool = False,
    scene_flow: bool = False,
    png_compression: int = 3,
) -> Path:
    """Writes `sample` to `<root>/<scene>` atomically and returns that path.

    Args:
        overwrite: replace an existing scene folder (otherwise FileExistsError).
        scene_flow: also write `scene_flow/<frame>.npy` when the sample has scene flow.
        png_compression: zlib level of the PNGs (0-9; low is fast).
    """
    if not scene or "/" in scene or scene in (".", ".."):
        raise ValueError(f"invalid scene name {scene!r}")
    root = Path(root)
    dest = root / scene
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} already exists (pass overwrite=True to replace it)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{scene}.tmp-", dir=root))
    try:
        _write_frames(sample, tmp, scene_flow, png_compression)
        if dest.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{scene}.old-", dir=root))
            os.replace(dest, trash / scene)
            os.replace(tmp, dest)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _write_frames(sample: Sample, folder: Path, with_flow: bool, level: int) -> None:
    s = sample.to("cpu")
    subdirs = ["rgb", "depth", "cam"]
    if s.dynamic_mask is not None:
        subdirs.append("dynamic_mask")
    if s.instance_ids is not None:
        if int(s.instance_ids.min()) < 0 or int(s.instance_ids.max()) > 65535:
            raise ValueError("instance ids must be in [0, 65535] for 16-bit PNGs")
        subdirs.append("instance")
    if with_flow and s.scene_flow is not None:
        subdirs.append("scene_flow")
    for d in subdirs:
        (folder / d).mkdir()
    rgb = (s.images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    depth = torch.where(s.valid, s.depth, torch.zeros((), dtype=s.depth.dtype)).float().numpy()
    cam2world = s.cam2world.double().numpy()
    intrinsics = s.intrinsics.double().numpy()
    for t in range(s.num_frames):
        name = frame_name(t)
        Image.fromarray(rgb[t]).save(folder / "rgb" / f"{name}.png", compress_level=level)
        np.save(folder / "depth" / f"{name}.npy", depth[t])
        np.savez(folder / "cam" / f"{name}.npz", pose=cam2world[t], intrinsics=intrinsics[t])
        if "dynamic_mask" in subdirs:
            mask = s.dynamic_mask[t].numpy().astype(np.uint8) * 255
            Image.fromarray(mask).save(folder / "dynamic_mask" / f"{name}.png", compress_level=level)
        if "instance" in subdirs:
            ids = s.instance_ids[t].numpy().astype(np.uint16)
            Image.fromarray(ids).save(folder / "instance" / f"{name}.png", compress_level=level)
        if "scene_flow" in subdirs:
            np.save(folder / "scene_flow" / f"{name}.npy", s.scene_flow[t].float().numpy())
    meta = {"name": s.name, "num_frames": s.num_frames, "image_size": list(s.image_size), "meta": _json_safe(s.meta)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def list_frames(scene_dir: str | os.PathLike) -> list[str]:
    """Frame names (without extension) of a scene, from its rgb folder, sorted."""
    rgb = Path(scene_dir) / "rgb"
    if not rgb.is_dir():
        raise FileNotFoundError(f"{rgb} not found: not a CUT3R-layout scene folder")
    return sorted(p.stem for p in rgb.glob("*.png"))


def read_scene(
    scene_dir: str | os.PathLike, frames: list[int] | slice | None = None, *, reanchor: bool = True
) -> Sample:
    """Reads a scene written in this layout (by `write_scene` or CUT3R's preprocessing) as a Sample.

    Args:
        frames: indices into the sorted frame list (default: all).
        reanchor: express poses in the frame of the first returned camera (`Sample.reanchor`).
    `valid` is `depth > 0` and finite; optional folders are read when present.
    """
    scene_dir = Path(scene_dir)
    names = list_frames(scene_dir)
    if frames is not None:
        names = names[frames] if isinstance(frames, slice) else [names[i] for i in frames]
    if not names:
        raise ValueError(f"{scene_dir}: no frames")
    images, depth, cam2world, intrinsics, masks, ids, flows = [], [], [], [], [], [], []
    has_mask = (scene_dir / "dynamic_mask").is_dir()
    has_ids = (scene_dir / "instance").is_dir()
    has_flow = (scene_dir / "scene_flow").is_dir()
    for name in names:
        images.append(np.asarray(Image.open(scene_dir / "rgb" / f"{name}.png").convert("RGB")))
        depth.append(np.load(scene_dir / "depth" / f"{name}.npy").astype(np.float32))
        with np.load(scene_dir / "cam" / f"{name}.npz") as cam:
            cam2world.append(cam["pose"].astype(np.float64))
            intrinsics.append(cam["intrinsics"].astype(np.float64))
        if has_mask:
            masks.append(np.asarray(Image.open(scene_dir / "dynamic_mask" / f"{name}.png")) > 127)
        if has_ids:
            ids.append(np.asarray(Image.open(scene_dir / "instance" / f"{name}.png")).astype(np.int64))
        if has_flow:
            flows.append(np.load(scene_dir / "scene_flow" / f"{name}.npy").astype(np.float32))
    d = torch.from_numpy(np.stack(depth))
    valid = torch.isfinite(d) & (d > 0)
    meta_path = scene_dir / "meta.json"
    info = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    sample = Sample(
        images=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0,
        depth=torch.where(valid, d, torch.zeros(())),
        valid=valid,
        intrinsics=torch.from_numpy(np.stack(intrinsics)).float(),
        cam2world=torch.from_numpy(np.stack(cam2world)).float(),
        dynamic_mask=torch.from_numpy(np.stack(masks)) if has_mask else None,
        instance_ids=torch.from_numpy(np.stack(ids)) if has_ids else None,
        scene_flow=torch.from_numpy(np.stack(flows)) if has_flow else None,
        name=info.get("name", scene_dir.name),
        meta={**info.get("meta", {}), "source": str(scene_dir), "frames": names},
    )
    return sample.reanchor() if reanchor else sample
