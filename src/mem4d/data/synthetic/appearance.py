"""The realistic appearance: what `make_scene(appearance="realistic")` changes, and the scene half of it.

Default scenes (``appearance=None``) are unchanged. The realistic appearance brings synthetic
clips closer to real video, in parts that can be switched one by one (`Appearance`):

* scene (this module; drawn before rendering, ground truth follows exactly):
  - ``photos``: surfaces covered with crops of permissively licensed sample photographs
    (`photos`), ``natural_textures``: dead-leaves and 1/f noise textures (`natural_textures`);
  - ``lighting``: a darker ambient term, stronger fall-off of the room light and a directional
    window light, so surfaces facing different ways are shaded differently;
  - ``real_scale``: the fields of view of real cameras and the sizes of real rooms and
    courtyards, so that metric scale learnt here transfers to real video (`real_fov_deg`,
    `scene.ROOM_SCALES`);
* camera (`camera_effects`; images only): ``exposure`` (per clip, slow drift), ``motion_blur``
  along each pixel's motion, ``sensor_noise`` (shot + read), ``vignetting``, ``white_balance``
  (per clip, slow drift) and ``jpeg`` compression.

Everything is drawn from the scene's own "appearance" random stream: the same seed gives the
same clip, and the other streams (layout, camera, objects) draw exactly what they draw by default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .natural_textures import NATURAL_KINDS, natural_hue
from .photos import CROPS_PER_PHOTO, PHOTO_SOURCES, photo_available
from .scene import SceneLayout
from .textures import NATURAL_PER_KIND, NATURAL_START, PHOTO_START, Material

APPEARANCES = ("realistic",)


@dataclass(frozen=True)
class Appearance:
    """The parts of the realistic appearance that are on (all of them for ``"realistic"``)."""

    photos: bool = True
    natural_textures: bool = True
    lighting: bool = True
    real_scale: bool = True
    exposure: bool = True
    motion_blur: bool = True
    sensor_noise: bool = True
    vignetting: bool = True
    white_balance: bool = True
    jpeg: bool = True

    @property
    def camera_effects(self) -> bool:
        return any((self.exposure, self.motion_blur, self.sensor_noise, self.vignetting, self.white_balance, self.jpeg))


def resolve_appearance(value: Any) -> Appearance | None:
    """`make_scene`'s ``appearance`` argument as an `Appearance` (None: the default look).

    Accepts None, ``"default"``, ``"realistic"``, an `Appearance`, or a mapping of `Appearance`
    fields that switches parts of the realistic appearance off (e.g. ``{"jpeg": False}``).
    """
    if value is None or value == "default":
        return None
    if isinstance(value, Appearance):
        return value
    if isinstance(value, str):
        if value not in APPEARANCES:
            raise ValueError(f"unknown appearance {value!r}; expected None, 'default', 'realistic' or a mapping of "
                             f"{[f.name for f in dataclasses.fields(Appearance)]} to booleans")
        return Appearance()
    if isinstance(value, Mapping):
        names = {f.name for f in dataclasses.fields(Appearance)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"unknown appearance part(s) {unknown}; known: {sorted(names)}")
        bad = {k: v for k, v in value.items() if not isinstance(v, bool)}
        if bad:
            raise ValueError(f"appearance parts must be true or false, got {bad}")
        return Appearance(**value)
    raise ValueError(f"appearance must be None, 'realistic' or a mapping of parts to booleans, got {value!r}")


# ----------------------------------------------------------------------------- cameras


# (probability, long-side field of view range in degrees) of the cameras that film video:
# phone main cameras (~26 mm equivalent), ultra-wide phone lenses and action cameras in their
# linear modes, and webcams / RGB-D sensors (Kinect v1: 57 degrees) and zoomed phones.
REAL_FOV_MIX = ((0.6, (60.0, 75.0)), (0.15, (85.0, 100.0)), (0.25, (55.0, 62.0)))


def real_fov_deg(rng: np.random.Generator, image_size: tuple[int, int]) -> float:
    """A horizontal field of view (degrees) of a real camera filming at `image_size` (H, W).

    The field of view is drawn for the long side (REAL_FOV_MIX) and converted for portrait
    frames, whose horizontal side is the short one.
    """
    H, W = image_size
    u, pick = rng.random(), rng.random()
    acc = 0.0
    lo, hi = REAL_FOV_MIX[-1][1]
    for prob, (a, b) in REAL_FOV_MIX:
        acc += prob
        if pick < acc:
            lo, hi = a, b
            break
    long_fov = math.radians(lo + (hi - lo) * u)
    if W >= H:
        return math.degrees(long_fov)
    return math.degrees(2 * math.atan(math.tan(long_fov / 2) * W / H))


# ----------------------------------------------------------------------------- materials and light


# per role: (probability of a photo, probability of a natural texture); otherwise the procedural one stays
REAL_TEXTURE_ODDS = {
    "wall": (0.25, 0.45),
    "floor": (0.45, 0.15),
    "ceiling": (0.1, 0.4),
    "ground": (0.6, 0.15),
    "facade": (0.45, 0.25),
    "furniture": (0.35, 0.3),
    "object": (0.45, 0.3),
}
GREY_PHOTOS = ("brick", "gravel", "grass", "camera")


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    hue = natural_hue(rng)
    sat, val = rng.uniform(0.0, 0.35), rng.uniform(0.7, 1.15)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _restyle_material(mat: Material, rng: np.random.Generator, appearance: Appearance) -> Material:
    """`mat` with a photo or a natural texture instead of its procedural one (odds by role,
    REAL_TEXTURE_ODDS), or `mat` itself. Always draws the same numbers."""
    p_photo, p_natural = REAL_TEXTURE_ODDS.get(mat.role, (0.3, 0.3))
    u = rng.random()
    photos = [i for i, s in enumerate(PHOTO_SOURCES) if mat.role in s.roles and photo_available(s.name)]
    photo_pick, crop, natural_pick, slot = rng.random(), int(rng.integers(CROPS_PER_PHOTO)), rng.random(), rng.random()
    brightness = rng.uniform(0.75, 1.1)
    balance = rng.uniform(0.94, 1.06, size=3)
    tint = _muted_colour(rng)
    offset = rng.uniform(-0.02, 0.02, size=3)
    # large surfaces (walls, floors) are mostly near-neutral in the world: pull their colour to grey
    grey = rng.uniform(0.3, 0.8) if mat.role in ("wall", "ceiling", "floor", "ground") else rng.uniform(0.0, 0.4)
    index = mat.bank_index
    if appearance.photos and photos and u < p_photo:
        source = photos[int(photo_pick * len(photos))]
        index = PHOTO_START + source * CROPS_PER_PHOTO + crop
        gain = brightness * (tint if PHOTO_SOURCES[source].name in GREY_PHOTOS else balance)
        grey = 0.0  # a photo keeps its own colours (a grey one takes the tint)
    elif appearance.natural_textures and u < p_photo + p_natural:
        plaster = mat.role in ("wall", "ceiling") and natural_pick < 0.75
        kind = "pink_noise" if plaster else NATURAL_KINDS[int(natural_pick * len(NATURAL_KINDS))]
        index = NATURAL_START + NATURAL_KINDS.index(kind) + len(NATURAL_KINDS) * int(slot * NATURAL_PER_KIND)
        gain = brightness * balance
    else:
        return mat
    return dataclasses.replace(mat, bank_index=index, gain=gain * (1.0 - grey), grey=float(grey), offset=offset)


def restyle_layout(layout: SceneLayout, rng: np.random.Generator, appearance: Appearance) -> dict:
    """Applies the scene parts of `appearance` (textures, lighting) to `layout` in place.

    Returns what was drawn, for the sample's `meta`.
    """
    info: dict[str, Any] = {}
    if appearance.photos or appearance.natural_textures:
        layout.materials[:] = [_restyle_material(m, rng, appearance) for m in layout.materials]
        from .textures import bank_kind

        kinds = [bank_kind(m.bank_index) for m in layout.materials]
        info["textures"] = {
            "photo": sum(k.startswith("photo:") for k in kinds),
            "natural": sum(k in NATURAL_KINDS for k in kinds),
            "procedural": sum(not k.startswith("photo:") and k not in NATURAL_KINDS for k in kinds),
        }
    if appearance.lighting:
        light = layout.light
        if light.kind == "point":  # a room: lamp under the ceiling, daylight through a window
            light.ambient = float(rng.uniform(0.12, 0.3))
            light.diffuse = float(rng.uniform(0.7, 1.1))
            light.falloff = float(rng.uniform(0.05, 0.3))
            azimuth, elevation = rng.uniform(-math.pi, math.pi), math.radians(rng.uniform(0.0, 40.0))
            layout.fill_light = np.array([math.cos(elevation) * math.cos(azimuth),
                                          math.cos(elevation) * math.sin(azimuth), math.sin(elevation)])
            layout.fill_strength = float(rng.uniform(0.1, 0.5))
        else:  # outdoors: sun and sky in varying proportions
            light.ambient = float(rng.uniform(0.2, 0.45))
            light.diffuse = float(rng.uniform(0.55, 1.0))
        info["light"] = {"ambient": light.ambient, "diffuse": light.diffuse, "fill": layout.fill_strength}
    return info
