"""Procedural, tileable textures: a deterministic bank, per-scene tinted atlases, mip-mapped lookup.

Every bank texture is an RGB image of `TEXTURE_SIZE`² texels that tiles seamlessly (it is a
function on the unit torus), so surfaces can repeat it with a period in metres. The bank is a
pure function of its index (`numpy.random.Generator` seeded with `(BANK_SEED, index)`), built
lazily and cached per process; a scene picks bank entries and recolours them (channel mix,
gain, offset) into its own `TextureAtlas`, so scene setup costs a few milliseconds.

Kinds: multi-octave value noise, checker, brick, stripes, tiles, planks, dots (all with colour
variation and a noise layer, so correlation matching works on them) and "plain" (low texture:
a flat colour with faint noise, the hard case for matching).

Entries from `BANK_SIZE` on serve the realistic appearance only (see `appearance`): textures with
natural-image statistics (`natural_textures`: dead leaves, 1/f noise) and crops of sample
photographs (`photos`). Default scenes never use them, and the bank table grows to hold them
only when one is first used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .natural_textures import NATURAL_KINDS, natural_texture
from .photos import CROPS_PER_PHOTO, PHOTO_SOURCES, photo_texture

BANK_SEED = 0x6D656D34  # "mem4"
TEXTURE_SIZE = 256
MIN_LEVEL_SIZE = 4
KINDS = ("noise", "checker", "brick", "stripes", "tiles", "planks", "dots", "plain")
BANK_SIZE = 8 * len(KINDS)  # index i has kind KINDS[i % len(KINDS)]
# realistic entries: NATURAL_PER_KIND of each natural kind (interleaved), then every photo crop
NATURAL_PER_KIND = 8
NATURAL_START = BANK_SIZE
PHOTO_START = NATURAL_START + NATURAL_PER_KIND * len(NATURAL_KINDS)
TOTAL_BANK_SIZE = PHOTO_START + len(PHOTO_SOURCES) * CROPS_PER_PHOTO

# which kinds suit which surface role (all but "plain" are well textured)
ROLE_KINDS = {
    "wall": ("brick", "noise", "tiles", "stripes", "plain", "noise", "dots"),
    "floor": ("planks", "tiles", "checker", "noise", "brick"),
    "ceiling": ("plain", "noise", "tiles"),
    "ground": ("noise", "tiles", "brick", "planks"),
    "facade": ("brick", "tiles", "noise", "stripes", "plain", "checker"),
    "furniture": ("planks", "noise", "checker", "stripes", "dots", "tiles", "plain"),
    "object": ("noise", "checker", "dots", "stripes", "brick", "tiles"),
}


def _value_noise(rng: np.random.Generator, size: int, freq: int, freq_y: int | None = None) -> np.ndarray:
    """Periodic value noise on a lattice of freq_y × freq cells, smoothstep-interpolated, in [0, 1]."""
    freq_y = freq if freq_y is None else freq_y
    lattice = rng.random((freq_y, freq))

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.arange(size) * (n / size)
        i0 = np.floor(x).astype(np.int64)
        f = x - i0
        return i0, (i0 + 1) % n, f * f * (3.0 - 2.0 * f)

    x0, x1, sx = axis(freq)
    y0, y1, sy = axis(freq_y)
    rows = lattice[:, x0] * (1.0 - sx) + lattice[:, x1] * sx  # (freq_y, size)
    return rows[y0] * (1.0 - sy)[:, None] + rows[y1] * sy[:, None]


def _fractal_noise(rng: np.random.Generator, size: int, base_freq: int, octaves: int, gain: float = 0.5) -> np.ndarray:
    """Sum of octaves of periodic value noise, normalised to zero mean and unit std."""
    total = np.zeros((size, size))
    amp = 1.0
    freq = base_freq
    for _ in range(octaves):
        if freq > size // 2:
            break
        total += amp * _value_noise(rng, size, freq)
        amp *= gain
        freq *= 2
    total -= total.mean()
    return total / (total.std() + 1e-8)


def _random_colour(rng: np.random.Generator, sat: float | None = None, val: float | None = None) -> np.ndarray:
    hue = rng.random()
    sat = rng.uniform(0.15, 0.8) if sat is None else sat
    val = rng.uniform(0.35, 0.9) if val is None else val
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return val - val * sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _cells(
    size: int, nx: int, ny: int, offset_rows: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell index maps and in-cell coordinates in [0,1) for an nx × ny grid (rows may be offset)."""
    u = (np.arange(size) + 0.5) / size
    gy = np.broadcast_to((u * ny)[:, None], (size, size))
    gx = np.broadcast_to((u * nx)[None, :], (size, size)).copy()
    row = np.floor(gy).astype(np.int64)
    if offset_rows:
        gx = gx + 0.5 * (row % 2)
    col = np.floor(gx).astype(np.int64) % nx
    return row % ny, col, gy - np.floor(gy), gx - np.floor(gx)


def _make_texture(index: int, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Bank texture `index` as (size, size, 3) float32 in [0, 1]."""
    rng = np.random.default_rng([BANK_SEED, index])
    kind = KINDS[index % len(KINDS)]
    c0, c1 = _random_colour(rng), _random_colour(rng)
    grain = _fractal_noise(rng, size, 16, 4, gain=0.7)  # fine detail for correlation matching
    if kind == "noise":
        n1 = _fractal_noise(rng, size, int(rng.choice([2, 4, 8])), 6, gain=rng.uniform(0.45, 0.7))
        n2 = _fractal_noise(rng, size, 8, 4)
        t = np.clip(0.5 + 0.25 * n1, 0, 1)[..., None]
        img = c0 * (1 - t) + c1 * t
        img = img * (1.0 + 0.1 * n2[..., None] + 0.15 * grain[..., None])
    elif kind == "plain":
        n1 = _fractal_noise(rng, size, 2, 3)
        img = np.broadcast_to(
            _random_colour(rng, sat=rng.uniform(0.0, 0.3), val=rng.uniform(0.5, 0.9)), (size, size, 3)
        )
        img = img * (1.0 + 0.02 * n1[..., None] + 0.006 * grain[..., None])
        return np.clip(img, 0, 1).astype(np.float32)
    elif kind in ("checker", "tiles", "brick"):
        # even counts: alternating colours and offset rows continue across the wrap-around
        if kind == "brick":
            nx, ny = int(rng.integers(2, 5)), 2 * int(rng.integers(2, 6))
        else:
            nx = ny = 2 * int(rng.integers(1, 5))
        row, col, fy, fx = _cells(size, nx, ny, offset_rows=(kind == "brick"))
        cell_col = np.stack([c0, c1])[(row + col) % 2] if kind == "checker" else None
        jitter = rng.uniform(-0.15, 0.15, size=(ny, nx, 3))
        base = c0[None, None] * np.ones((ny, nx, 1)) + jitter if cell_col is None else None
        img = cell_col + 0.6 * jitter[row, col] if base is None else base[row, col]
        if kind != "checker":
            mortar = rng.uniform(0.03, 0.09)
            edge = np.minimum(np.minimum(fx, 1 - fx) * (size / nx), np.minimum(fy, 1 - fy) * (size / ny))
            line = np.clip(edge / (mortar * size / max(nx, ny)), 0, 1)[..., None]
            img = img * line + c1 * (1 - line)
        img = img * (1.0 + 0.2 * grain[..., None])
    elif kind == "stripes":
        n = int(rng.choice([4, 6, 8, 9, 10, 12]))
        palette = np.stack([_random_colour(rng) for _ in range(3)])
        warp = _fractal_noise(rng, size, 2, 2)
        u = (np.arange(size) + 0.5) / size
        phase = u[None, :] * n + 0.08 * warp
        idx = np.floor(phase).astype(np.int64) % 3 if n % 3 == 0 else (np.floor(phase).astype(np.int64) % n) % 2
        img = palette[idx] * (1.0 + 0.2 * grain[..., None])
    elif kind == "planks":
        n = int(rng.choice([2, 4, 6, 8]))
        row, _, fy, _ = _cells(size, 1, n)
        streaks = _value_noise(rng, size, 2, 48) - 0.5 + 0.5 * (_value_noise(rng, size, 4, 96) - 0.5)
        shifts = rng.integers(0, size, size=n)
        cols = (np.arange(size)[None, :] + shifts[row]) % size
        grain_rows = streaks[np.arange(size)[:, None], cols]
        shade = rng.uniform(-0.15, 0.15, size=n)[row]
        img = c0 * (1.0 + shade + 0.45 * grain_rows)[..., None] + 0.1 * (c1 - c0) * grain_rows[..., None]
        seam = np.clip(np.minimum(fy, 1 - fy) * size / n / 2.0, 0, 1)[..., None]
        img = img * (0.55 + 0.45 * seam) * (1.0 + 0.12 * grain[..., None])
    elif kind == "dots":
        n = 2 * int(rng.integers(2, 5))
        row, col, fy, fx = _cells(size, n, n, offset_rows=True)
        radius = rng.uniform(0.2, 0.42)
        jit = rng.uniform(-0.1, 0.1, size=(n, n, 2))
        dx = fx - 0.5 - jit[row, col, 0]
        dy = fy - 0.5 - jit[row, col, 1]
        inside = np.clip((radius - np.sqrt(dx * dx + dy * dy)) * size / n, 0, 1)[..., None]
        dot_col = np.clip(c1 + rng.uniform(-0.2, 0.2, size=(n, n, 3)), 0, 1)[row, col]
        img = (c0 * (1 - inside) + dot_col * inside) * (1.0 + 0.2 * grain[..., None])
    else:  # pragma: no cover
        raise AssertionError(kind)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _level_sizes(size: int = TEXTURE_SIZE) -> tuple[int, ...]:
    sizes = [size]
    while sizes[-1] // 2 >= MIN_LEVEL_SIZE:
        sizes.append(sizes[-1] // 2)
    return tuple(sizes)


LEVEL_SIZES = _level_sizes()
LEVEL_STARTS = tuple(int(v) for v in np.cumsum([0] + [s * s for s in LEVEL_SIZES[:-1]]))
ENTRY_TEXELS = sum(s * s for s in LEVEL_SIZES)


def _texture_image(index: int) -> np.ndarray:
    """Bank texture `index` (procedural, natural or photo) as (TEXTURE_SIZE, TEXTURE_SIZE, 3) float32."""
    if index < BANK_SIZE:
        return _make_texture(index)
    rng = np.random.default_rng([BANK_SEED, index])
    if index < PHOTO_START:
        return natural_texture(NATURAL_KINDS[(index - NATURAL_START) % len(NATURAL_KINDS)], rng, TEXTURE_SIZE)
    source, crop = divmod(index - PHOTO_START, CROPS_PER_PHOTO)
    photo = photo_texture(source, crop, TEXTURE_SIZE)
    return photo if photo is not None else natural_texture("dead_leaves", rng, TEXTURE_SIZE)  # package missing


def bank_pyramid(index: int) -> np.ndarray:
    """Mip pyramid of bank texture `index`: (ENTRY_TEXELS, 3) uint8, levels of LEVEL_SIZES concatenated."""
    if not 0 <= index < TOTAL_BANK_SIZE:
        raise ValueError(f"texture index {index} outside the bank (0..{TOTAL_BANK_SIZE - 1})")
    level = _texture_image(index)
    levels = []
    for size in LEVEL_SIZES:
        if level.shape[0] != size:
            level = level.reshape(size, 2, size, 2, 3).mean(axis=(1, 3))
        levels.append(level.reshape(-1, 3))
    return np.round(np.concatenate(levels, axis=0) * 255.0).astype(np.uint8)


class _Bank:
    """The whole bank as one table of packed texels (r | g << 8 | b << 16, int32), filled on first use."""

    def __init__(self) -> None:
        self.texels = torch.zeros(BANK_SIZE * ENTRY_TEXELS, dtype=torch.int32)
        self.ready = [False] * TOTAL_BANK_SIZE
        self.level_starts = torch.tensor(LEVEL_STARTS, dtype=torch.int32)
        self.top_size = torch.tensor(TEXTURE_SIZE, dtype=torch.int32)
        if TOTAL_BANK_SIZE * ENTRY_TEXELS >= 2**31:
            raise AssertionError("texel offsets must fit in int32")

    def ensure(self, index: int) -> None:
        if not self.ready[index]:
            if (index + 1) * ENTRY_TEXELS > self.texels.numel():  # first realistic entry: room for all of them
                grown = torch.zeros(TOTAL_BANK_SIZE * ENTRY_TEXELS, dtype=torch.int32)
                grown[: self.texels.numel()] = self.texels
                self.texels = grown
            rgb = bank_pyramid(index).astype(np.int32)
            packed = rgb[:, 0] | (rgb[:, 1] << 8) | (rgb[:, 2] << 16)
            start = index * ENTRY_TEXELS
            self.texels[start : start + ENTRY_TEXELS] = torch.from_numpy(packed)
            self.ready[index] = True


_BANK: _Bank | None = None


def bank() -> _Bank:
    global _BANK
    if _BANK is None:
        _BANK = _Bank()
    return _BANK


def bank_kind(index: int) -> str:
    """The kind of bank entry `index`: a procedural kind, a natural kind or "photo:<name>"."""
    if index < BANK_SIZE:
        return KINDS[index % len(KINDS)]
    if index < PHOTO_START:
        return NATURAL_KINDS[(index - NATURAL_START) % len(NATURAL_KINDS)]
    return "photo:" + PHOTO_SOURCES[(index - PHOTO_START) // CROPS_PER_PHOTO].name


def pick_bank_index(rng: np.random.Generator, role: str) -> int:
    """A random bank entry whose kind suits `role` (see ROLE_KINDS)."""
    kind = ROLE_KINDS[role][int(rng.integers(len(ROLE_KINDS[role])))]
    return KINDS.index(kind) + len(KINDS) * int(rng.integers(BANK_SIZE // len(KINDS)))


@dataclass
class Material:
    """A bank texture recoloured by `gain * c + grey * mean(c) + offset`, repeated every `period` metres."""

    bank_index: int
    gain: np.ndarray  # (3,)
    grey: float
    offset: np.ndarray  # (3,)
    period: float
    role: str = ""  # the surface role it was drawn for (see ROLE_KINDS)

    @property
    def kind(self) -> str:
        return bank_kind(self.bank_index)


def random_material(rng: np.random.Generator, role: str, period: tuple[float, float]) -> Material:
    index = pick_bank_index(rng, role)
    gain = rng.uniform(0.75, 1.2, size=3)
    grey = rng.uniform(0.0, 0.6) if rng.random() < 0.4 else 0.0
    offset = rng.uniform(-0.06, 0.06, size=3)
    return Material(index, gain * (1 - grey), grey, offset, float(rng.uniform(*period)), role)


def _unpack(word: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return (word & 255).float(), ((word >> 8) & 255).float(), ((word >> 16) & 255).float()


def sample_bank(entry: Tensor, level: Tensor, u: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Bilinear, wrap-around lookup in the bank.

    entry: texel offset of each pixel's bank texture, level: its mip level, (Q,) int32 (int32
    index arithmetic is markedly faster than int64 here); u, v: (Q,) float in texture periods.
    Returns r, g, b (Q,) float in 0..255.
    """
    b = bank()
    tex = b.texels
    size_i = torch.bitwise_right_shift(b.top_size, level)
    mask = size_i - 1  # sizes are powers of two: wrap with a bitwise and (negatives too)
    size = size_i.to(u.dtype)
    x = u * size - 0.5
    y = v * size - 0.5
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    fx = x - x0
    fy = y - y0
    x0i = x0.int()
    y0i = y0.int()
    xa = x0i & mask
    xb = (x0i + 1) & mask
    base = entry + b.level_starts.index_select(0, level)
    ra = (y0i & mask) * size_i + base
    rb = ((y0i + 1) & mask) * size_i + base
    c00 = _unpack(tex.index_select(0, ra + xa))
    c01 = _unpack(tex.index_select(0, ra + xb))
    c10 = _unpack(tex.index_select(0, rb + xa))
    c11 = _unpack(tex.index_select(0, rb + xb))
    return tuple(torch.lerp(torch.lerp(a, b, fx), torch.lerp(c, d, fx), fy) for a, b, c, d in zip(c00, c01, c10, c11))


NUM_LEVELS = len(LEVEL_SIZES)
