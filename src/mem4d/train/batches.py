"""Deterministic training batches: the clip of step s depends only on (seed, step, rank), so a
resumed run sees exactly the data an uninterrupted run would have seen (its size and length too,
with mixed sizes: `SyntheticBatches.clip_shape`)."""

from __future__ import annotations

import torch

from mem4d.data.sample import Sample
from mem4d.train.recipe import DataRecipe, parse_aspect

VALIDATION_SEED_OFFSET = 1_000_003  # validation scenes never overlap training scenes


def _mix(*values: int) -> int:
    """A stable 63-bit hash of integers (splitmix-style); Python's hash() is salted per process."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


def _chance(fraction: float, *key: int) -> bool:
    """True with probability ``fraction``, drawn from a stream seeded by ``_mix(*key)`` (no draw
    at 0 or 1), so the same key always gives the same answer."""
    if fraction <= 0 or fraction >= 1:
        return fraction >= 1
    g = torch.Generator().manual_seed(_mix(*key))
    return float(torch.rand((), generator=g)) < fraction


class SyntheticBatches:
    """Clips of `mem4d.data.synthetic` scenes generated on the fly.

    `batch(step)` returns `batch_size` Samples of one shape (T, H, W) (`clip_shape`): T drawn per
    step in [num_frames, max_frames] for stage-2 recipes and size `image_size`, or with
    `data.sizes` a size drawn per step (and rank) and, with its token budget, T following the size.
    """

    def __init__(self, recipe: DataRecipe, batch_size: int, rank: int = 0):
        from mem4d.data.synthetic.appearance import resolve_appearance

        resolve_appearance(recipe.appearance)  # a bad data.appearance fails here, not at the first step
        self.recipe = recipe
        self.batch_size = batch_size
        self.rank = rank

    def num_frames(self, step: int) -> int:
        r = self.recipe
        if not r.max_frames or r.max_frames <= r.num_frames:
            return r.num_frames
        g = torch.Generator().manual_seed(_mix(r.seed, step, 17))
        return int(torch.randint(r.num_frames, r.max_frames + 1, (1,), generator=g))

    def image_size(self, step: int) -> tuple[int, int]:
        """(H, W) of step `step`'s clips: `data.image_size`, or a draw from `data.sizes`."""
        r, sizes = self.recipe, self.recipe.sizes
        if sizes.long_side is None or _chance(sizes.default_fraction, r.seed, step, self.rank, 43):
            return int(r.image_size[0]), int(r.image_size[1])
        m = sizes.multiple
        g = torch.Generator().manual_seed(_mix(r.seed, step, self.rank, 41))
        lo, hi = sizes.long_side
        long = lo + m * int(torch.randint((hi - lo) // m + 1, (1,), generator=g))
        w, h = parse_aspect(sizes.aspects[int(torch.randint(len(sizes.aspects), (1,), generator=g))])
        short = min(long, max(2 * m, m * round(long * min(w, h) / max(w, h) / m)))
        return (short, long) if w >= h else (long, short)

    def clip_shape(self, step: int) -> tuple[int, int, int]:
        """(T, H, W) of step `step`'s clips; with `data.sizes.token_budget`,
        T = budget // (tokens + frame_overhead) clamped to [min_frames, max_frames or num_frames]."""
        r, sizes = self.recipe, self.recipe.sizes
        H, W = self.image_size(step)
        if sizes.long_side is None or sizes.token_budget is None:
            return self.num_frames(step), H, W
        tokens = (H // sizes.multiple) * (W // sizes.multiple)
        cap = max(r.num_frames, r.max_frames or 0)
        frames = int(sizes.token_budget) // (tokens + sizes.frame_overhead)
        return max(sizes.min_frames, min(cap, frames)), H, W

    def scene_seed(self, step: int, index: int) -> int:
        r = self.recipe
        if r.scenes:
            return r.seed + (step * self.batch_size * 7919 + index + self.rank * 104729) % r.scenes
        return _mix(r.seed, step, index, self.rank) % (2**31)

    def camera_speed(self, step: int, index: int) -> float:
        low, high = self.recipe.camera_speed
        if not 0 <= low <= high:
            raise ValueError(f"data.camera_speed must be [low, high] with 0 <= low <= high, got {[low, high]}")
        if low == high:
            return float(low)
        g = torch.Generator().manual_seed(_mix(self.recipe.seed, step, index, self.rank, 29))
        return float(low + (high - low) * torch.rand((), generator=g))

    def batch(self, step: int) -> list[Sample]:
        from mem4d.data.synthetic import make_scene

        T, H, W = self.clip_shape(step)
        return [
            make_scene(
                self.scene_seed(step, i), T, image_size=(H, W), dynamic=self.recipe.dynamic,
                camera_speed=self.camera_speed(step, i), loop_frames=self.recipe.loop_frames,
                appearance=self.appearance(step, i), camera_path=self.camera_path(step, i),
            )
            for i in range(self.batch_size)
        ]

    def camera_path(self, step: int, index: int) -> str | None:
        """The "closeup" path for a fraction ``data.closeup_fraction`` of the clips (drawn per clip
        from (seed, step, index, rank)), None (the scene's own random draw) for the others."""
        r = self.recipe
        return "closeup" if _chance(r.closeup_fraction, r.seed, step, index, self.rank, 37) else None

    def appearance(self, step: int, index: int):
        """The recipe's appearance for a fraction ``data.appearance_fraction`` of the clips (drawn
        per clip from (seed, step, index, rank)), the default look for the others."""
        r = self.recipe
        if r.appearance is None or _chance(r.appearance_fraction, r.seed, step, index, self.rank, 31):
            return r.appearance
        return None

    def validation(self) -> list[Sample]:
        from mem4d.data.synthetic import make_scene

        r = self.recipe
        return [
            make_scene(VALIDATION_SEED_OFFSET + r.seed + i, r.val_frames, image_size=tuple(r.image_size), dynamic=r.dynamic)
            for i in range(r.val_scenes)
        ]


class MixtureBatches:
    """Clips from a weighted mixture of dataset readers (`mem4d.data.sources`), e.g. data a user
    preprocessed for CUT3R. Each `recipe.datasets` entry is `{reader, root, weight, **reader_kwargs}`.
    Clip lengths follow the same per-step draw as `SyntheticBatches`.
    """

    def __init__(self, recipe: DataRecipe, batch_size: int, rank: int = 0):
        from mem4d.data.sources import make_source

        if not recipe.datasets:
            raise ValueError("data.source=mixture needs data.datasets: a list of {reader, root, weight}")
        if recipe.sizes.long_side is not None or recipe.appearance is not None:
            raise ValueError("data.sizes and data.appearance apply to data.source=synthetic only; "
                             "remove them from a mixture recipe")
        self.recipe, self.batch_size, self.rank = recipe, batch_size, rank
        self.sources, self.weights = [], []
        for entry in recipe.datasets:
            entry = dict(entry)
            if "reader" not in entry or "root" not in entry:
                raise ValueError(f"each data.datasets entry needs 'reader' and 'root', got {entry}")
            weight = float(entry.pop("weight", 1.0))
            self.sources.append(make_source(entry.pop("reader"), entry.pop("root"), **entry))
            self.weights.append(weight)
        self._datasets: dict[int, object] = {}
        self._lengths = SyntheticBatches(recipe, batch_size, rank)

    def _dataset(self, num_frames: int):
        from mem4d.data.clips import ClipDataset, ClipSampler

        if num_frames not in self._datasets:
            self._datasets[num_frames] = ClipDataset(
                self.sources, self.weights, sampler=ClipSampler(num_frames=num_frames, stride=(1, 3)),
                sizes=[tuple(self.recipe.image_size)], size_group=self.batch_size,
                length=2**31 - 1, seed=self.recipe.seed,
            )
        return self._datasets[num_frames]

    def batch(self, step: int) -> list[Sample]:
        dataset = self._dataset(self._lengths.num_frames(step))
        base = (step * 65_537 + self.rank * 1_000_003) * self.batch_size
        return [dataset.get(base + i) for i in range(self.batch_size)]

    def validation(self) -> list[Sample]:
        return SyntheticBatches(self.recipe, self.batch_size, self.rank).validation()


def make_batches(recipe: DataRecipe, batch_size: int, rank: int = 0):
    """The batch provider a recipe names (`data.source`: synthetic | mixture)."""
    if recipe.source == "synthetic":
        return SyntheticBatches(recipe, batch_size, rank)
    if recipe.source == "mixture":
        return MixtureBatches(recipe, batch_size, rank)
    raise ValueError(f"unknown data.source {recipe.source!r}; use 'synthetic' or 'mixture'")
