"""Photo textures: crops of the sample photographs that scikit-image and scikit-learn ship.

Only images whose licence allows any use are listed (each one's licence and credit is from the
package's own documentation: the `skimage.data` function docstrings and
`sklearn/datasets/images/README.txt`). They are read at run time from the installed package,
never copied into this repository; without the package the realistic appearance falls back to
the procedural textures of `natural_textures` (one warning per process and package).

A photo crop becomes a tileable bank texture through its periodic component (Moisan 2011,
"Periodic plus smooth image decomposition"): the smooth image that carries the jump across the
border is removed, so the crop repeats without a seam and keeps its content.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

PHOTO_SEED = 0x70686F74  # "phot"
CROPS_PER_PHOTO = 3


@dataclass(frozen=True)
class PhotoSource:
    """One sample photograph: where it comes from, its licence, and the surfaces it may cover."""

    name: str  # skimage.data.<name>() or sklearn's load_sample_image("<name>.jpg")
    package: str  # "scikit-image" | "scikit-learn"
    licence: str
    credit: str
    roles: tuple[str, ...]  # surface roles of `textures.ROLE_KINDS`


# people and animals only ever cover small moving objects and furniture, never a wall
PHOTO_SOURCES = (
    PhotoSource("brick", "scikit-image", "CC0 1.0", "Bricks25, CC0Textures (cc0textures.com); greyscale",
                ("wall", "facade", "ground", "floor")),
    PhotoSource("gravel", "scikit-image", "CC0 1.0", "Gravel04, CC0Textures (cc0textures.com); greyscale",
                ("ground", "floor", "wall", "ceiling", "facade")),
    PhotoSource("grass", "scikit-image", "CC0 1.0", "Grass-01 by linolafett, DeviantArt; greyscale",
                ("ground", "object")),
    PhotoSource("coffee", "scikit-image", "CC0 1.0", "Rachel Michetti, courtesy of Pikolo Espresso Bar",
                ("furniture", "object")),
    PhotoSource("chelsea", "scikit-image", "CC0 1.0", "Stefan van der Walt (the cat Chelsea)", ("object",)),
    PhotoSource("astronaut", "scikit-image", "public domain", "NASA (Eileen Collins)", ("object",)),
    PhotoSource("rocket", "scikit-image", "public domain", "SpaceX (DSCOVR launch on Falcon 9)", ("object",)),
    PhotoSource("camera", "scikit-image", "CC0 1.0", "Lav Varshney; greyscale", ("object",)),
    PhotoSource("china", "scikit-learn", "CC BY 2.0", "danielbuechele (flickr.com/photos/danielbuechele)",
                ("facade", "object")),
    PhotoSource("flower", "scikit-learn", "CC BY 2.0", "vultilion (flickr.com/photos/vultilion)",
                ("object", "furniture")),
)


def _read(source: PhotoSource) -> np.ndarray:
    """The photograph as (H, W, 3) uint8 (greyscale ones repeated over the channels).

    Raises ImportError when the package is not installed.
    """
    if source.package == "scikit-image":
        import skimage.data

        img = np.asarray(getattr(skimage.data, source.name)())
    elif source.package == "scikit-learn":
        from sklearn.datasets import load_sample_image

        img = np.asarray(load_sample_image(f"{source.name}.jpg"))
    else:  # pragma: no cover
        raise AssertionError(source.package)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


_warned: set[str] = set()


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray | None:
    """Photo `name` of PHOTO_SOURCES as (H, W, 3) uint8, or None (with one warning per package)
    when its package is missing or cannot provide it."""
    source = next((s for s in PHOTO_SOURCES if s.name == name), None)
    if source is None:
        raise ValueError(f"unknown photo {name!r}; expected one of {[s.name for s in PHOTO_SOURCES]}")
    try:
        return _read(source)
    except (ImportError, OSError) as err:
        if source.package not in _warned:
            _warned.add(source.package)
            warnings.warn(
                f"{source.package} is not available ({type(err).__name__}: {err}): the realistic synthetic "
                f"appearance uses procedural textures instead of its photographs; "
                f"install it with `pip install 'mem4d[train]'`",
                RuntimeWarning,
                stacklevel=2,
            )
        return None


def photo_available(name: str) -> bool:
    return load_photo(name) is not None


def periodic_component(img: np.ndarray) -> np.ndarray:
    """The periodic component of (M, N, C) `img` (Moisan 2011): tiles without a seam."""
    u = img.astype(np.float64)
    M, N = u.shape[:2]
    v = np.zeros_like(u)
    v[0] += u[-1] - u[0]
    v[-1] += u[0] - u[-1]
    v[:, 0] += u[:, -1] - u[:, 0]
    v[:, -1] += u[:, 0] - u[:, -1]
    q = np.cos(2 * np.pi * np.arange(M) / M)[:, None]
    r = np.cos(2 * np.pi * np.arange(N) / N)[None, :]
    denom = 2 * q + 2 * r - 4
    denom[0, 0] = 1.0
    v_hat = np.fft.fft2(v, axes=(0, 1))
    s_hat = v_hat / denom[..., None]
    s_hat[0, 0] = 0.0
    smooth = np.fft.ifft2(s_hat, axes=(0, 1)).real
    return u - smooth


def photo_texture(source_index: int, crop: int, size: int) -> np.ndarray | None:
    """Crop `crop` of photo PHOTO_SOURCES[source_index] as a tileable (size, size, 3) float32
    texture in [0, 1], or None when the photo is unavailable.

    Crop 0 is the largest centred square; the others are random squares of 40-80 % of the short
    side (seeded by (PHOTO_SEED, source_index, crop)), so each photo gives textures at two scales.
    """
    from PIL import Image

    photo = load_photo(PHOTO_SOURCES[source_index].name)
    if photo is None:
        return None
    rng = np.random.default_rng([PHOTO_SEED, source_index, crop])
    H, W = photo.shape[:2]
    side = min(H, W) if crop == 0 else int(min(H, W) * rng.uniform(0.4, 0.8))
    y0 = (H - side) // 2 if crop == 0 else int(rng.integers(0, H - side + 1))
    x0 = (W - side) // 2 if crop == 0 else int(rng.integers(0, W - side + 1))
    patch = Image.fromarray(photo[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.Resampling.LANCZOS)
    tile = periodic_component(np.asarray(patch, dtype=np.float64) / 255.0)
    return np.clip(tile, 0.0, 1.0).astype(np.float32)
