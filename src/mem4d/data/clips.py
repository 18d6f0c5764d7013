"""Clip sampling for training: strides, a weighted mixture of datasets, mixed aspect ratios.

Pieces:

- :class:`ClipSampler` picks ``num_frames`` frame indices from a sequence of ``T`` frames:
  a fixed stride or one drawn per clip from a range, or independently random intervals
  (each gap drawn from the range); random or zero start; optional reversal.
- :class:`ClipDataset` (map-style ``torch.utils.data.Dataset``) draws item ``i`` from a
  weighted mixture of sources: source by weight, sequence (uniformly or by frame count),
  frames by the source's sampler, an output size from ``sizes`` (several aspect ratios),
  a crop position and one colour jitter for the clip. Then it loads the frames, resizes and
  crops them (intrinsics follow), jitters, re-anchors the clip to its first frame and checks
  it (``Sample.reanchor().validate()``). Everything is a function of ``(seed, epoch, i)``:
  the same seed gives the same clips in any worker and any order.
- :class:`ClipStream` iterates a :class:`ClipDataset` endlessly (``IterableDataset``),
  splitting work between DataLoader workers.
- :func:`collate_clips` stacks same-size clips into ``(B, T, ...)`` tensors.

Mixed sizes and batching: clips with different sizes cannot share a batch, so the size is
drawn once per *group* of ``size_group`` consecutive indices. Use ``size_group=batch_size``
with ``DataLoader(dataset, batch_size=batch_size, shuffle=False)`` (items are already random;
call ``set_epoch`` for new ones), or batch a :class:`ClipStream` the same way.

Any object with ``name``, ``sequences()``, ``num_frames(seq)`` and ``load(seq, indices) ->
Sample`` is a source (:class:`~mem4d.data.sources.base.SourceLike`); :func:`as_source` also
wraps objects with other method names, and :class:`SyntheticSource` serves the procedural
scenes of :mod:`mem4d.data.synthetic`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from mem4d.data.sample import Sample
from mem4d.data.sources.base import SourceLike
from mem4d.data.transforms import ClipColorJitter, resize_and_crop_to

__all__ = [
    "ClipSampler",
    "ClipPlan",
    "ClipDataset",
    "ClipStream",
    "FunctionSource",
    "SyntheticSource",
    "as_source",
    "collate_clips",
    "finalize_clip",
]


def _randint(lo: int, hi: int, generator: torch.Generator) -> int:
    """Uniform integer in [lo, hi] (inclusive)."""
    if hi <= lo:
        return int(lo)
    return int(torch.randint(lo, hi + 1, (1,), generator=generator).item())


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand(1, generator=generator, dtype=torch.float64).item())


def _generator(*keys: int) -> torch.Generator:
    """A torch.Generator seeded from a tuple of non-negative ints (independent streams)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


@dataclass(frozen=True)
class ClipSampler:
    """Which frames of a sequence form a clip.

    Args:
        num_frames: frames per clip.
        stride: gap between consecutive chosen frames: an int, or an inclusive range
            ``(lo, hi)``. Strides are capped so the clip fits: a sequence of ``T`` frames
            allows at most ``(T - 1) // (num_frames - 1)``.
        random_intervals: False: one stride per clip (drawn from the range) for all gaps
            ("fixed interval"); True: every gap drawn independently from the range.
        random_start: False starts every clip at frame 0.
        reverse_prob: probability of playing the clip backwards.
    """

    num_frames: int
    stride: int | tuple[int, int] = 1
    random_intervals: bool = False
    random_start: bool = True
    reverse_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"ClipSampler: num_frames must be >= 1, got {self.num_frames}")
        lo, hi = self.stride_range
        if lo < 1 or hi < lo:
            raise ValueError(f"ClipSampler: stride must be >= 1 (or a range lo <= hi), got {self.stride}")
        if not 0.0 <= self.reverse_prob <= 1.0:
            raise ValueError(f"ClipSampler: reverse_prob must be in [0, 1], got {self.reverse_prob}")

    @property
    def stride_range(self) -> tuple[int, int]:
        if isinstance(self.stride, int):
            return self.stride, self.stride
        lo, hi = self.stride
        return int(lo), int(hi)

    def sample(self, available: int, generator: torch.Generator) -> tuple[list[int], dict[str, Any]]:
        """Frame indices (len ``num_frames``) from a sequence of ``available`` frames, and how.

        Raises:
            ValueError: when the sequence is shorter than ``num_frames``.
        """
        n = self.num_frames
        if available < n:
            raise ValueError(f"ClipSampler: a sequence of {available} frames is too short for {n}-frame clips")
        lo, hi = self.stride_range
        cap = (available - 1) // (n - 1) if n > 1 else hi
        hi = max(1, min(hi, cap))
        lo = min(lo, hi)
        if self.random_intervals:
            gaps = [_randint(lo, hi, generator) for _ in range(n - 1)]
        else:
            gaps = [_randint(lo, hi, generator)] * (n - 1)
        span = sum(gaps)
        start = _randint(0, available - 1 - span, generator) if self.random_start else 0
        indices = [start]
        for g in gaps:
            indices.append(indices[-1] + g)
        reverse = self.reverse_prob > 0 and _uniform(generator) < self.reverse_prob
        if reverse:
            indices.reverse()
        return indices, {"gaps": gaps, "start": start, "reversed": reverse}


@dataclass(frozen=True)
class ClipPlan:
    """Everything random about item ``index`` of a :class:`ClipDataset`, before any file is read."""

    index: int
    epoch: int
    source_index: int
    source_name: str
    sequence: str
    indices: list[int]
    size: tuple[int, int] | None
    crop_position: tuple[float, float]
    jitter: dict[str, float] | None
    info: dict[str, Any] = field(default_factory=dict)


class FunctionSource:
    """A source from plain callables (a thin adapter for readers with another interface).

    Args:
        name: dataset name.
        sequences: sequence names, or a callable returning them.
        num_frames: ``num_frames(sequence) -> int``.
        load: ``load(sequence, indices) -> Sample``.
    """

    def __init__(
        self,
        name: str,
        sequences: Sequence[str] | Callable[[], Sequence[str]],
        num_frames: Callable[[str], int],
        load: Callable[[str, Sequence[int]], Sample],
    ) -> None:
        self.name = name
        self._sequences = sequences
        self._num_frames = num_frames
        self._load = load

    def sequences(self) -> list[str]:
        seqs = self._sequences() if callable(self._sequences) else self._sequences
        return list(seqs)

    def num_frames(self, sequence: str) -> int:
        return int(self._num_frames(sequence))

    def load(self, sequence: str, indices: Sequence[int]) -> Sample:
        return self._load(sequence, list(indices))

    def __repr__(self) -> str:
        return f"FunctionSource({self.name!r})"


class SyntheticSource:
    """The procedural scenes of :mod:`mem4d.data.synthetic` as a source (a thin adapter).

    Sequence ``"seed{k}"`` is ``make_scene(first_seed + k, frames_per_sequence, image_size,
    **knobs)``; a clip is a slice of it (the most recent scene is cached, so several clips of
    one scene render it once). Scene flow is defined from frame t to t + 1 of the rendered
    sequence, so it is kept only for clips of consecutive increasing frames and dropped
    (``None``) for strided or reversed ones.

    Args:
        num_sequences: number of distinct scenes (seeds).
        frames_per_sequence: frames rendered per scene.
        image_size: (H, W) rendered (resizing happens in :class:`ClipDataset` as for any source).
        first_seed: seed of ``"seed0"``.
        **knobs: further keyword arguments of ``make_scene`` (``dynamic``, ``camera_path``...).
    """

    name = "synthetic"

    def __init__(
        self,
        num_sequences: int = 1000,
        frames_per_sequence: int = 24,
        image_size: tuple[int, int] = (96, 128),
        first_seed: int = 0,
        **knobs: Any,
    ) -> None:
        self.num_sequences = int(num_sequences)
        self.frames_per_sequence = int(frames_per_sequence)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.first_seed = int(first_seed)
        self.knobs = knobs
        self._cache: tuple[str, Sample] | None = None

    def sequences(self) -> list[str]:
        return [f"seed{k}" for k in range(self.num_sequences)]

    def num_frames(self, sequence: str) -> int:
        return self.frames_per_sequence

    def _scene(self, sequence: str) -> Sample:
        if self._cache is not None and self._cache[0] == sequence:
            return self._cache[1]
        if not sequence.startswith("seed") or not sequence[4:].isdigit() or int(sequence[4:]) >= self.num_sequences:
            raise KeyError(f"synthetic: unknown sequence {sequence!r} (have seed0..seed{self.num_sequences - 1})")
        from mem4d.data.synthetic import make_scene

        scene = make_scene(self.first_seed + int(sequence[4:]), self.frames_per_sequence, self.image_size, **self.knobs)
        self._cache = (sequence, scene)
        return scene

    def load(self, sequence: str, indices: Sequence[int]) -> Sample:
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self.frames_per_sequence]
        if bad:
            raise IndexError(f"synthetic/{sequence}: frame indices {bad} out of range [0, {self.frames_per_sequence})")
        clip = self._scene(sequence).slice(indices)
        consecutive = all(b == a + 1 for a, b in zip(indices, indices[1:]))
        meta = {**clip.meta, "dataset": self.name, "sequence": sequence, "indices": indices}
        return replace(clip, scene_flow=clip.scene_flow if consecutive else None, meta=meta,
                       name=f"{self.name}/{sequence}/{indices[0]}-{indices[-1]}")


def as_source(obj: Any, name: str | None = None) -> SourceLike:
    """``obj`` as a source for :class:`ClipDataset`.

    Accepts anything with ``sequences()``, ``num_frames(seq)`` and ``load(seq, indices)``
    (returned as is, given a ``name`` attribute if it lacks one), or with the alternative
    spellings ``scenes()`` / ``list_sequences()``, ``num_frames`` / ``frame_count`` /
    ``len_sequence`` and ``load`` / ``load_clip`` / ``load_frames`` (wrapped in a
    :class:`FunctionSource`).
    """

    def pick(*names: str) -> Callable | None:
        for n in names:
            f = getattr(obj, n, None)
            if callable(f):
                return f
        return None

    label = name or getattr(obj, "name", None) or type(obj).__name__
    if all(callable(getattr(obj, n, None)) for n in ("sequences", "num_frames", "load")):
        if not isinstance(getattr(obj, "name", None), str):
            try:
                obj.name = label
            except AttributeError:
                return FunctionSource(label, obj.sequences, obj.num_frames, obj.load)
        return obj
    seqs = pick("sequences", "scenes", "list_sequences", "list_scenes")
    count = pick("num_frames", "frame_count", "len_sequence", "sequence_length")
    load = pick("load", "load_clip", "load_frames")
    if seqs is None or count is None or load is None:
        raise TypeError(
            f"as_source: {type(obj).__name__} needs sequences(), num_frames(seq) and load(seq, indices) "
            "(or scenes()/frame_count()/load_clip()); wrap it in FunctionSource"
        )
    return FunctionSource(label, seqs, count, load)


def finalize_clip(sample: Sample) -> Sample:
    """Re-anchors a clip to its first frame (in float64), casts to float32 and validates it."""
    sample = replace(sample, cam2world=sample.cam2world.double()).reanchor()
    c2w = sample.cam2world.float()
    c2w[:, 3, :] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    sample = replace(
        sample,
        cam2world=c2w,
        intrinsics=sample.intrinsics.float(),
        depth=sample.depth.float(),
        images=sample.images.float(),
    )
    return sample.validate()


class ClipDataset(Dataset):
    """Map-style dataset of training clips drawn from a weighted mixture of sources.

    Args:
        sources: sources (anything :func:`as_source` accepts), as a sequence or a
            name -> source mapping (the names go to ``meta["dataset"]``; default: ``source.name``).
        weights: relative sampling weight of each source (default: equal).
        sampler: a :class:`ClipSampler` for all sources, or one per source.
        sizes: output sizes ``(H, W)``, one drawn per group of ``size_group`` items (e.g.
            :func:`mem4d.data.transforms.sizes_for_aspect_ratios`); ``None`` keeps the
            native size (only batchable when all sources share it).
        size_weights: relative weights of ``sizes`` (default: equal).
        size_group: consecutive items sharing one size (set it to the batch size).
        crop: ``"center"`` or ``"random"`` placement of the crop after the aspect-keeping resize.
        color_jitter: one :class:`~mem4d.data.transforms.ClipColorJitter` draw per clip, or None.
        sequence_weighting: ``"frames"`` picks a sequence with probability proportional to its
            number of frames (every frame equally likely to start a clip), ``"uniform"``
            gives every sequence the same chance.
        length: ``len(dataset)`` (items per epoch).
        seed: base seed; item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``.
    """

    def __init__(
        self,
        sources: Sequence[Any] | Mapping[str, Any],
        weights: Sequence[float] | None = None,
        *,
        sampler: ClipSampler | Sequence[ClipSampler] = ClipSampler(num_frames=8),
        sizes: Sequence[tuple[int, int]] | None = ((384, 512),),
        size_weights: Sequence[float] | None = None,
        size_group: int = 1,
        crop: str = "center",
        color_jitter: ClipColorJitter | None = None,
        sequence_weighting: str = "frames",
        length: int = 10_000,
        seed: int = 0,
    ) -> None:
        if isinstance(sources, Mapping):
            self.sources = [as_source(src, name) for name, src in sources.items()]
            self.names = [str(name) for name in sources]
        else:
            self.sources = [as_source(src) for src in sources]
            self.names = [str(src.name) for src in self.sources]
        if not self.sources:
            raise ValueError("ClipDataset: no sources")
        n = len(self.sources)
        w = [1.0] * n if weights is None else [float(x) for x in weights]
        if len(w) != n or any(x < 0 or not math.isfinite(x) for x in w) or sum(w) <= 0:
            raise ValueError(f"ClipDataset: need {n} finite non-negative weights with a positive sum, got {weights}")
        self.weights = torch.tensor(w, dtype=torch.float64)
        self.samplers = [sampler] * n if isinstance(sampler, ClipSampler) else list(sampler)
        if len(self.samplers) != n:
            raise ValueError(f"ClipDataset: {len(self.samplers)} samplers for {n} sources")
        self.sizes = None if sizes is None else [(int(h), int(w_)) for h, w_ in sizes]
        if self.sizes is not None and not self.sizes:
            raise ValueError("ClipDataset: sizes is empty (use None for native sizes)")
        sw = [1.0] * len(self.sizes or []) if size_weights is None else [float(x) for x in size_weights]
        if self.sizes is not None and len(sw) != len(self.sizes):
            raise ValueError(f"ClipDataset: {len(sw)} size_weights for {len(self.sizes)} sizes")
        self.size_weights = torch.tensor(sw, dtype=torch.float64) if self.sizes is not None else None
        if size_group < 1:
            raise ValueError(f"ClipDataset: size_group must be >= 1, got {size_group}")
        self.size_group = size_group
        if crop not in ("center", "random"):
            raise ValueError(f"ClipDataset: crop must be 'center' or 'random', got {crop!r}")
        self.crop = crop
        self.color_jitter = color_jitter
        if sequence_weighting not in ("frames", "uniform"):
            raise ValueError(f"ClipDataset: sequence_weighting must be 'frames' or 'uniform', got {sequence_weighting!r}")
        self.sequence_weighting = sequence_weighting
        self.length = int(length)
        self.seed = int(seed)
        self.epoch = 0
        # Sequences long enough for each source's clips, and their frame counts.
        self._seqs: list[list[str]] = []
        self._seq_weights: list[Tensor] = []
        self._frame_counts: list[dict[str, int]] = []
        for k, (src, smp) in enumerate(zip(self.sources, self.samplers)):
            all_seqs = src.sequences()
            counts = {s: int(src.num_frames(s)) for s in all_seqs}
            names = [s for s in all_seqs if counts[s] >= smp.num_frames]
            if not names and self.weights[k] > 0:
                raise ValueError(
                    f"ClipDataset: source {src.name!r} has no sequence with >= {smp.num_frames} frames "
                    f"({len(all_seqs)} sequences)"
                )
            cw = [counts[s] for s in names] if sequence_weighting == "frames" else [1] * len(names)
            self._seqs.append(names)
            self._frame_counts.append({s: counts[s] for s in names})
            self._seq_weights.append(torch.tensor(cw, dtype=torch.float64))

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Draws a new set of clips (item i of epoch e depends on (seed, e, i))."""
        self.epoch = int(epoch)

    def plan(self, index: int, epoch: int | None = None) -> ClipPlan:
        """The random choices of item ``index`` of ``epoch`` (default: the current one); reads no file."""
        if not 0 <= index < self.length:
            raise IndexError(f"ClipDataset: index {index} out of range [0, {self.length})")
        epoch = self.epoch if epoch is None else int(epoch)
        g = _generator(self.seed, epoch, index, 0)
        k = int(torch.multinomial(self.weights, 1, generator=g).item())
        seq = self._seqs[k][int(torch.multinomial(self._seq_weights[k], 1, generator=g).item())]
        indices, info = self.samplers[k].sample(self._frame_counts[k][seq], g)
        size = None
        if self.sizes is not None:
            gs = _generator(self.seed, epoch, index // self.size_group, 1)
            size = self.sizes[int(torch.multinomial(self.size_weights, 1, generator=gs).item())]
        pos = (0.5, 0.5) if self.crop == "center" else (_uniform(g), _uniform(g))
        jitter = self.color_jitter.sample_params(g) if self.color_jitter is not None else None
        return ClipPlan(index, epoch, k, self.names[k], seq, indices, size, pos, jitter, info)

    def load_plan(self, plan: ClipPlan) -> Sample:
        """Loads and prepares the clip a :class:`ClipPlan` describes."""
        src = self.sources[plan.source_index]
        sample = src.load(plan.sequence, plan.indices)
        if plan.size is not None:
            sample = resize_and_crop_to(sample, plan.size, crop_position=plan.crop_position)
        if plan.jitter is not None:
            sample = ClipColorJitter.apply(sample, plan.jitter)
        sample = finalize_clip(sample)
        sample.meta = {
            **sample.meta,
            "dataset": plan.source_name,
            "sequence": plan.sequence,
            "indices": list(plan.indices),
            "gaps": plan.info.get("gaps"),
            "reversed": plan.info.get("reversed", False),
            "size": sample.image_size,
            "seed": self.seed,
            "epoch": plan.epoch,
            "index": plan.index,
        }
        return sample

    def get(self, index: int, epoch: int | None = None) -> Sample:
        """Item ``index`` of ``epoch`` (default: the current epoch)."""
        return self.load_plan(self.plan(int(index), epoch))

    def __getitem__(self, index: int) -> Sample:
        return self.get(index)


class ClipStream(IterableDataset):
    """Endless iteration over a :class:`ClipDataset` (epoch after epoch), split across workers.

    Worker ``w`` of ``W`` takes the size groups ``g`` with ``g % W == w`` (whole groups, so a
    DataLoader with ``batch_size = size_group`` batches one size at a time).

    Args:
        dataset: the clips.
        start_epoch: first epoch to draw.
        epochs: stop after this many epochs (None: never stop).
    """

    def __init__(self, dataset: ClipDataset, start_epoch: int = 0, epochs: int | None = None) -> None:
        self.dataset = dataset
        self.start_epoch = start_epoch
        self.epochs = epochs

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        group = self.dataset.size_group
        epoch = self.start_epoch
        while self.epochs is None or epoch < self.start_epoch + self.epochs:
            for i in range(len(self.dataset)):
                if (i // group) % workers == worker:
                    yield self.dataset.get(i, epoch)
            epoch += 1


def collate_clips(samples: Sequence[Sample]) -> dict[str, Any]:
    """Stacks same-size clips: every tensor field becomes ``(B, T, ...)``; ``name``/``meta`` lists.

    Optional fields (``dynamic_mask``...) are stacked when every clip has them, else ``None``.
    """
    if not samples:
        raise ValueError("collate_clips: empty batch")
    sizes = {(s.num_frames, s.image_size) for s in samples}
    if len(sizes) != 1:
        raise ValueError(f"collate_clips: clips of different (T, (H, W)) in one batch: {sorted(sizes)}")
    out: dict[str, Any] = {}
    for name in ("images", "depth", "valid", "intrinsics", "cam2world", "dynamic_mask", "instance_ids", "scene_flow"):
        values = [getattr(s, name) for s in samples]
        out[name] = torch.stack(values) if all(v is not None for v in values) else None
    out["name"] = [s.name for s in samples]
    out["meta"] = [s.meta for s in samples]
    return out
