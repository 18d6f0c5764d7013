"""Procedural textures with the statistics of natural images: dead leaves and 1/f noise.

Photographs of the world share two statistics that the hand-made patterns of `textures` lack:
an amplitude spectrum that falls roughly as 1/f (scale invariance), and occlusion, i.e. regions
of nearly constant colour cut by sharp edges at every scale. Two classical models reproduce them:

* dead leaves (Matheron; Lee, Mumford & Huang 2001, "Occlusion models for natural images"):
  opaque discs with radii drawn from p(r) ∝ r^-3 fall on top of each other; the picture is
  what the last discs leave visible. Its spectrum falls as ~1/f and its edges are sharp.
* 1/f noise: Gaussian noise whose amplitude spectrum is 1/f^beta (beta ~ 1 for natural
  images), coloured by a random palette.

Both are built on the unit torus, so they tile seamlessly like every bank texture.
"""

from __future__ import annotations

import numpy as np

NATURAL_KINDS = ("dead_leaves", "pink_noise")


def _palette_colour(rng: np.random.Generator, base: np.ndarray, spread: float) -> np.ndarray:
    """A colour near `base` (3,), varied in brightness and a little in hue."""
    value = rng.uniform(0.7, 1.2)
    tint = rng.normal(0.0, spread, size=3)
    return np.clip(base * value + tint, 0.02, 1.0)


def natural_hue(rng: np.random.Generator) -> float:
    """A hue in [0, 1): mostly the warm, earthy ones of wood, soil, stone and skin, sometimes any."""
    warm, u = rng.random() < 0.7, rng.random()
    return 0.02 + 0.13 * u if warm else u


def _palette(rng: np.random.Generator) -> np.ndarray:
    """2-4 related base colours (muted, like most surfaces in the world), (k, 3) in [0, 1]."""
    hue = natural_hue(rng)
    colours = []
    for _ in range(int(rng.integers(2, 5))):
        h = (hue + rng.normal(0.0, 0.05)) % 1.0
        sat, val = rng.uniform(0.03, 0.35), rng.uniform(0.3, 0.8)
        k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
        colours.append(val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))
    return np.stack(colours)


def spectral_noise(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """Periodic Gaussian noise with amplitude spectrum 1/f^beta, (size, size), zero mean, unit std."""
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    amplitude = radius ** (-beta)
    amplitude[0, 0] = 0.0
    spectrum = amplitude * (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size)))
    field = np.fft.ifft2(spectrum).real
    field -= field.mean()
    return field / (field.std() + 1e-12)


def dead_leaves(rng: np.random.Generator, size: int, discs: int = 2500) -> np.ndarray:
    """A dead-leaves texture on the torus: (size, size, 3) float32 in [0, 1].

    Disc radii follow p(r) ∝ r^-3 between ~1 % and ~17 % of the texture (scale invariance);
    colours come from a small palette with per-leaf variation, and each leaf carries a faint
    1/f shading so no region is perfectly flat.
    """
    palette = _palette(rng)
    r_min, r_max = size / 120.0, size / 6.0
    # inverse CDF of p(r) ∝ r^-3 on [r_min, r_max]
    u = rng.random(discs)
    radii = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    centres = rng.random((discs, 2)) * size
    choice = rng.integers(len(palette), size=discs)
    colours = np.stack([_palette_colour(rng, palette[c], 0.025) for c in choice])
    img = np.broadcast_to(palette[0], (size, size, 3)).copy()
    for (cy, cx), r, colour in zip(centres, radii, colours):
        lo_y, lo_x = int(np.floor(cy - r)), int(np.floor(cx - r))
        n = int(np.ceil(2 * r)) + 2
        ys = np.arange(lo_y, lo_y + n)
        xs = np.arange(lo_x, lo_x + n)
        inside = ((ys[:, None] + 0.5 - cy) ** 2 + (xs[None, :] + 0.5 - cx) ** 2) <= r * r
        rows, cols = np.nonzero(inside)
        img[ys[rows] % size, xs[cols] % size] = colour  # later discs cover earlier ones
    shading = spectral_noise(rng, size, 1.2)
    grain = spectral_noise(rng, size, 0.6)
    img = img * (1.0 + 0.08 * shading[..., None] + 0.03 * grain[..., None])
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """A 1/f noise texture coloured by a palette: (size, size, 3) float32 in [0, 1].

    Luminance is 1/f^beta noise (beta in [0.9, 1.5]); a second, smoother field blends between
    two palette colours; with some probability the luminance is thresholded softly into
    stains (plaster, stone, bark-like patches).
    """
    palette = _palette(rng)
    beta = rng.uniform(0.9, 1.5)
    lum = spectral_noise(rng, size, beta)
    mix = spectral_noise(rng, size, 1.8)
    t = np.clip(0.5 + 0.35 * mix, 0.0, 1.0)[..., None]
    base = palette[0] * (1 - t) + palette[1] * t
    if rng.random() < 0.35:
        lum = np.tanh(2.5 * lum)
    contrast = rng.uniform(0.1, 0.3)
    img = base * (1.0 + contrast * lum[..., None])
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def natural_texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """A texture of `kind` (one of NATURAL_KINDS), (size, size, 3) float32 in [0, 1]."""
    if kind == "dead_leaves":
        return dead_leaves(rng, size)
    if kind == "pink_noise":
        return pink_noise(rng, size)
    raise ValueError(f"unknown natural texture kind {kind!r}; expected one of {NATURAL_KINDS}")
