"""`make_scene`: a seeded synthetic dynamic scene rendered into a `Sample` with exact ground truth."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.data.sample import Sample

from .appearance import Appearance, real_fov_deg, resolve_appearance, restyle_layout
from .camera_paths import EXTRA_PATH_KINDS, PATH_KINDS
from .render import Renderer
from .scene import ENVIRONMENTS, SceneLayout, sample_layout

GENERATOR_VERSION = 1
MAX_OBJECTS = 4
# appended streams never change the earlier ones (SeedSequence children are numbered)
_STREAMS = ("knobs", "env", "camera", "furniture", "objects", "noise", "appearance", "camera_effects")


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per part of the scene, so fixing one knob leaves the rest unchanged."""
    children = np.random.SeedSequence([int(seed), GENERATOR_VERSION]).spawn(len(_STREAMS))
    return {name: np.random.Generator(np.random.PCG64(child)) for name, child in zip(_STREAMS, children)}


def _check_size(image_size: Any) -> tuple[int, int]:
    try:
        H, W = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (H, W), got {image_size!r}") from None
    if H < 8 or W < 8 or H > 8192 or W > 8192:
        raise ValueError(f"image_size {H}x{W} out of range: each side must be in [8, 8192]")
    return H, W


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Temporarily sets torch's intra-op thread count (None: unchanged)."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if n is not None and n != before:
            torch.set_num_threads(before)


def _gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    T, C, H, W = images.shape
    flat = images.reshape(T * C, 1, H, W)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return flat.view(T, C, H, W)


def make_scene(
    seed: int,
    num_frames: int,
    image_size: tuple[int, int] = (96, 128),
    dynamic: bool = True,
    *,
    noise: float = 0.0,
    blur: float = 0.0,
    tile: int = 16,
    num_threads: int | None = 1,
    validate: bool = False,
    appearance: str | dict | Appearance | None = None,
    **knobs: Any,
) -> Sample:
    """Generates and renders a synthetic dynamic scene; the same arguments give the same scene.

    Args:
        seed: non-negative integer; with the knobs it fully determines the scene.
        num_frames: T >= 1.
        image_size: (H, W), any size from 8 to 8192 pixels a side.
        dynamic: False gives a static scene (no moving objects).
        noise: std of Gaussian image noise (images only; the ground truth is exact).
        blur: sigma in pixels of a Gaussian blur of the images (0: none).
        tile: renderer tile size in pixels (performance only; results do not depend on it).
        num_threads: torch intra-op threads while rendering (restored afterwards). The default 1
            is the fastest: the tensors are small, and on a busy machine extra threads wait on
            each other. Generate scenes in parallel processes instead. None: leave as is.
        validate: run `Sample.validate()` on the result (the tests do; it costs ~3 ms a frame).
        appearance: None (the default look) or "realistic": photo and natural-statistics
            textures, lighting, real cameras' fields of view and real room sizes, and camera
            effects (motion blur, exposure, vignetting, sensor noise, white balance, JPEG); a
            mapping such as {"jpeg": False} switches parts of it off. See `appearance`. The
            ground truth stays exact; the seed still determines the clip.
        **knobs: the scene knobs of `build_layout`:
        camera_path: "handheld", "orbit", "forward", "rotation", "loop" or None (random among those),
            or "closeup" (0.5-2 m from a surface; never drawn at random).
        camera_speed: scale of the camera motion per frame (1.0 ≈ 3.5 cm and 1.2° per frame).
        num_objects: moving objects, 0..4 (None: random 1..4 when dynamic). The first
            `num_walkers` are articulated walkers (None: one, sometimes two).
        environment: "room", "courtyard" or None (random).
        fov_deg: horizontal field of view in degrees (None: random in [50, 80]).
        num_furniture: static furniture items (None: random, 3..7 rooms, 4..9 courtyards).
        object_speed: scale of the moving objects' speeds.
        loop_frames: frames a "loop" path takes to close (None: ``num_frames``); a shorter clip
            is an arc of that loop, at the per-frame motion of a loop video that long.

    Returns:
        A `Sample` (valid by `Sample.validate()`; world frame = camera of frame 0) with images, depth, valid,
        intrinsics, cam2world, dynamic_mask, instance_ids and scene_flow; `meta` records the
        knobs that were used (random ones resolved) and what the scene contains.
    """
    if not (noise >= 0 and blur >= 0):
        raise ValueError(f"noise and blur must be >= 0, got noise={noise}, blur={blur}")
    H, W = _check_size(image_size)
    look = resolve_appearance(appearance)
    layout, meta = build_layout(seed, num_frames, (H, W), dynamic, appearance=look, **knobs)
    with torch_threads(num_threads):
        out = Renderer(layout, (H, W), tile=tile).render()
        images = out["images"]
        if blur > 0:
            images = _gaussian_blur(images, float(blur))
        if look is not None and look.camera_effects:
            from .camera_effects import apply_camera_effects, draw_camera_effects

            effects = draw_camera_effects(_rngs(int(seed))["camera_effects"], int(num_frames), look)
            images = apply_camera_effects(
                images, effects, out["depth"], out["valid"], out["intrinsics"], out["cam2world"], out["scene_flow"]
            )
            meta["appearance"]["camera"] = effects.summary()
        if noise > 0:
            gen = torch.Generator().manual_seed(int(_rngs(int(seed))["noise"].integers(2**62)))
            images = images + float(noise) * torch.randn(images.shape, generator=gen)
        images = images.clamp(0.0, 1.0)
    meta.update(noise=float(noise), blur=float(blur))
    inst = out["instance_ids"]
    sample = Sample(
        images=images.contiguous(),
        depth=out["depth"],
        valid=out["valid"],
        intrinsics=out["intrinsics"],
        cam2world=out["cam2world"],
        dynamic_mask=inst > 0,
        instance_ids=inst,
        scene_flow=out["scene_flow"],
        name=f"synthetic/{int(seed):06d}",
        meta=meta,
    )
    return sample.validate() if validate else sample


def build_layout(
    seed: int,
    num_frames: int,
    image_size: tuple[int, int] = (96, 128),
    dynamic: bool = True,
    *,
    camera_path: str | None = None,
    camera_speed: float = 1.0,
    num_objects: int | None = None,
    environment: str | None = None,
    fov_deg: float | None = None,
    num_furniture: int | None = None,
    object_speed: float = 1.0,
    num_walkers: int | None = None,
    loop_frames: int | None = None,
    appearance: Appearance | None = None,
) -> tuple[SceneLayout, dict]:
    """The scene of `make_scene` before rendering: its `SceneLayout` and the `meta` dict.

    `appearance` (resolved, see `resolve_appearance`) applies its scene parts: real fields of
    view and scene sizes, textures and lighting.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    H, W = _check_size(image_size)
    if camera_path is not None and camera_path not in PATH_KINDS + EXTRA_PATH_KINDS:
        raise ValueError(f"unknown camera_path {camera_path!r}; expected one of {PATH_KINDS + EXTRA_PATH_KINDS} or None")
    if environment is not None and environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {ENVIRONMENTS} or None")
    if num_objects is not None and not 0 <= num_objects <= MAX_OBJECTS:
        raise ValueError(f"num_objects must be in [0, {MAX_OBJECTS}] or None, got {num_objects}")
    if not dynamic and num_objects:
        raise ValueError(f"dynamic=False means no moving objects, but num_objects={num_objects}")
    if not (camera_speed >= 0 and math.isfinite(camera_speed)):
        raise ValueError(f"camera_speed must be a finite number >= 0, got {camera_speed}")
    if not (object_speed >= 0 and math.isfinite(object_speed)):
        raise ValueError(f"object_speed must be a finite number >= 0, got {object_speed}")
    if loop_frames is not None and (isinstance(loop_frames, bool) or not isinstance(loop_frames, (int, np.integer))
                                    or loop_frames < 2):
        raise ValueError(f"loop_frames must be an integer >= 2 or None, got {loop_frames!r}")
    if fov_deg is not None and not 10.0 <= fov_deg <= 150.0:
        raise ValueError(f"fov_deg must be in [10, 150], got {fov_deg}")

    rngs = _rngs(int(seed))
    kr = rngs["knobs"]
    # every knob is drawn whether or not it is given, so the streams stay aligned
    env_draw = "room" if kr.random() < 0.6 else "courtyard"
    path_draw = PATH_KINDS[int(kr.integers(len(PATH_KINDS)))]
    fov_draw = float(kr.uniform(50.0, 80.0))
    obj_draw = int(kr.integers(1, MAX_OBJECTS + 1))
    furn_u = float(kr.random())
    walker_u = float(kr.random())

    environment = environment or env_draw
    camera_path = camera_path or path_draw
    real_scale = appearance is not None and appearance.real_scale
    look_rng = rngs["appearance"]
    real_fov = real_fov_deg(look_rng, (H, W)) if appearance is not None else None  # drawn even if unused
    fov = float(fov_deg) if fov_deg is not None else (real_fov if real_scale else fov_draw)
    n_obj = 0 if not dynamic else (int(num_objects) if num_objects is not None else obj_draw)
    if num_furniture is None:
        lo, hi = (3, 7) if environment == "room" else (4, 9)
        num_furniture = lo + int(furn_u * (hi - lo + 1))
    if num_walkers is None:
        num_walkers = min(n_obj, 1 + int(walker_u < 0.3 and n_obj >= 2))
    num_walkers = max(0, min(int(num_walkers), n_obj))

    layout = sample_layout(
        rngs,
        int(num_frames),
        environment=environment,
        camera_path=camera_path,
        camera_speed=float(camera_speed),
        fov_x_deg=fov,
        aspect=H / W,
        num_objects=n_obj,
        num_furniture=int(num_furniture),
        object_speed=float(object_speed),
        num_walkers=num_walkers,
        loop_frames=None if loop_frames is None else int(loop_frames),
        scale="real" if real_scale else "default",
    )
    look_info = restyle_layout(layout, look_rng, appearance) if appearance is not None else None
    meta = {
        "dataset": "synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "num_frames": int(num_frames),
        "image_size": [H, W],
        "dynamic": bool(dynamic),
        "environment": environment,
        "camera_path": camera_path,
        "camera_speed": float(camera_speed),
        "effective_camera_speed": float(layout.info["camera"].get("effective_speed", camera_speed)),
        "fov_deg": fov,
        "num_objects": len(layout.objects),
        "requested_num_objects": n_obj,
        "object_kinds": [o.kind for o in layout.objects],
        "num_walkers": sum(o.kind == "walker" for o in layout.objects),
        "object_speed": float(object_speed),
        "furniture": list(layout.furniture),
        "num_primitives": len(layout.prims),
        "max_depth": float(layout.max_depth),
        "scene": {k: v for k, v in layout.info.items() if k != "camera"},
        "camera": layout.info["camera"],
    }
    if appearance is not None:
        meta["appearance"] = {"parts": dataclasses.asdict(appearance), **look_info}
    return layout, meta


def world_pointmap(sample: Sample) -> Tensor:
    """World points (T, H, W, 3) of every pixel from depth, intrinsics and cam2world (0 where invalid)."""
    from mem4d.geometry.camera import depth_to_pts_world

    pts = depth_to_pts_world(sample.depth, sample.intrinsics, sample.cam2world)
    return torch.where(sample.valid.unsqueeze(-1), pts, torch.zeros((), dtype=pts.dtype))
