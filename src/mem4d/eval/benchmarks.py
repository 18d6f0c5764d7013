"""Benchmark registry: which sequences, which frames, which input size, which metrics.

A :class:`Benchmark` names a set of sequences with ground truth and the protocol they are
scored under (PROTOCOLS.md section 1, MonST3R/CUT3R conventions):

===================  =======================  ==========================================  ========
name                 tasks                    sequences / frames                           input
===================  =======================  ==========================================  ========
sintel               depth                    all ``training/final`` sequences, all frames resize
bonn                 depth                    5 sequences, ``rgb_110`` = frames 30-139     resize
kitti                depth                    ``val_selection_cropped`` drives, first 110  resize
sintel-pose          pose                     14 sequences, all frames                     crop
tum-dynamics         pose                     8 fr3 sit/walk sequences, stride 3, first 90 crop
7scenes              recon                    test split, every 200th frame                crop
nrgbd                recon                    all scenes, stride ``min(500, N // 2)``      crop
7scenes-sample       depth, pose, recon       shared 60-frame redkitchen excerpt, stride 5 crop
synthetic-dynamic    depth, pose              24 seeded scenes x 48 frames, 1-4 movers     render
synthetic-static     depth, pose, recon       24 seeded scenes x 48 frames, no movers      render
synthetic-realistic  depth, pose              as synthetic-dynamic, realistic look         render
===================  =======================  ==========================================  ========

Input sizes: ``resize`` (video depth) scales the frame so its long side is ``size`` and the
short side the nearest multiple of 16 (the aspect ratio changes by less than a 16-pixel
step; nothing is cropped); ``crop`` (pose, reconstruction) keeps the aspect ratio with the
long side ``size`` and crops the centre down to multiples of 16. Depth predictions are
scored at the GT resolution (resized back, bicubic); reconstruction is scored at the model
resolution (GT depth resampled by nearest pixel with the images, as DUSt3R's crop/resize).

Dataset roots: ``--data-root DIR`` or the environment variable ``MEM4D_DATA``, laid out like
CUT3R's ``data/`` folder (each benchmark's ``layout`` says where it looks). The shared
7-Scenes excerpt is found beside the repository (``<repo>/../shared/data``) or under
``MEM4D_SHARED_DATA``. The synthetic benchmarks need no data: every scene is generated from a
fixed seed and fixed knobs, so every machine scores the same scenes; they are rendered at
the model's input size (a renderer has no native resolution).

``limit_seqs`` / ``max_frames`` shorten a run (tests, smoke runs): the first ``limit_seqs``
sequences, the first ``max_frames`` of each sequence's protocol frames. Synthetic scenes are
*rendered* with ``max_frames`` frames (the generator lays a scene out for its length, so a
shorter scene is not a prefix of the 48-frame one); either way the run is deterministic and
the manifest records the limits, so ``score`` rebuilds exactly the same ground truth.

Example::

    bench = get_benchmark("synthetic-dynamic")
    names = bench.sequences(limit_seqs=2)
    gt = bench.load(names[0], max_frames=6)          # native-resolution Sample, frame 0 = I
    model_in = bench.prepare(gt, size=64)            # what the model sees (48 x 64)

(for synthetic benchmarks pass ``size`` to ``load`` too: they render at the input size).
"""

from __future__ import annotations

import functools
import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mem4d.data.sample import Sample
from mem4d.eval.metrics.depth import DEPTH_PROTOCOLS, DepthProtocol

__all__ = [
    "BENCHMARKS",
    "TASKS",
    "Benchmark",
    "DatasetBenchmark",
    "SyntheticBenchmark",
    "SyntheticSpec",
    "get_benchmark",
    "gt_fingerprint",
    "input_size",
    "prepare_frames",
    "recon_crop_size",
    "register_benchmark",
    "resolve_data_root",
    "sequence_file_stem",
    "shared_data_dir",
]

TASKS = ("depth", "pose", "recon")
PATCH = 16


# ----------------------------------------------------------------------------------------
# Input size handling
# ----------------------------------------------------------------------------------------


def _round16(x: float) -> int:
    return max(PATCH, round(x / PATCH) * PATCH)


def input_size(native: tuple[int, int], size: int, mode: str) -> tuple[int, int]:
    """Model input ``(H, W)`` for a native ``(H, W)`` frame, long side ``size``.

    ``"resize"``: long side ``size``, short side the nearest multiple of 16 of the
    aspect-preserving length (no crop). ``"crop"``: the aspect-preserving resize, then the
    short side floored to a multiple of 16 (the excess is cropped at the centre).
    """
    if size % PATCH or size < PATCH:
        raise ValueError(f"--size must be a positive multiple of {PATCH}, got {size}")
    H, W = native
    long_, short = max(H, W), min(H, W)
    exact = short * size / long_
    if mode == "resize":
        s = _round16(exact)
    elif mode == "crop":
        s = max(PATCH, int(exact + 1e-6) // PATCH * PATCH)
    else:
        raise ValueError(f"unknown input mode {mode!r}")
    return (size, s) if H > W else (s, size)


def prepare_frames(sample: Sample, size: int, mode: str) -> Sample:
    """The clip as the model sees it: resized (``mode="resize"``) or resized + centre-cropped
    (``mode="crop"``) to :func:`input_size`; depth/valid follow by nearest pixel and the
    intrinsics with them (:mod:`mem4d.data.transforms`)."""
    from mem4d.data.transforms import center_crop, resize

    H, W = sample.image_size
    h, w = input_size((H, W), size, mode)
    if mode == "resize":
        return resize(sample, (h, w))
    scale = size / max(H, W)
    rh, rw = max(h, round(H * scale)), max(w, round(W * scale))
    return center_crop(resize(sample, (rh, rw)), (h, w))


def recon_crop_size(image_size: tuple[int, int], size: int) -> int:
    """Side of the central crop scored for reconstruction: 224 at ``size`` 512, scaled with
    the input size (and never larger than the image)."""
    c = max(8, round(224 * size / 512))
    return min(c, *image_size)


def gt_fingerprint(sample: Sample) -> str:
    """Short sha256 of a clip's ground truth (depth at 0.1 mm, poses at 1 um, valid mask).

    Rounded so that last-bit differences between machines rarely change it; ``score`` warns
    (it does not fail) when the ground truth it reads differs from the one ``predict`` saw.
    """
    h = hashlib.sha256()
    h.update(np.round(sample.depth.double().numpy() * 1e4).astype(np.int64).tobytes())
    h.update(sample.valid.numpy().astype(np.uint8).tobytes())
    h.update(np.round(sample.cam2world.double().numpy() * 1e6).astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def sequence_file_stem(name: str) -> str:
    """File-system-safe stem for a sequence name (``chess/seq-03`` -> ``chess__seq-03``)."""
    out = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name.replace("/", "__"))
    return out.strip(".") or "sequence"


# ----------------------------------------------------------------------------------------
# Roots
# ----------------------------------------------------------------------------------------


def resolve_data_root(data_root: str | os.PathLike | None) -> Path | None:
    """``data_root`` if given, else ``$MEM4D_DATA``, else None."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get("MEM4D_DATA")
    return Path(env).expanduser() if env else None


def shared_data_dir() -> Path | None:
    """The project's shared real-data folder: ``$MEM4D_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("MEM4D_SHARED_DATA")
    candidates = [Path(env).expanduser()] if env else []
    repo = Path(__file__).resolve().parents[3]
    candidates += [repo.parent / "shared" / "data", repo / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


# ----------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark(ABC):
    """A set of sequences with ground truth and the protocol that scores them.

    Attributes:
        name: registry name (``--benchmark``).
        tasks: subset of ``("depth", "pose", "recon")`` this benchmark scores.
        description: one line for ``mem4d eval list``.
        input_mode: ``"resize"`` (video depth) or ``"crop"`` (pose, reconstruction).
        default_size: long side of the model input when ``--size`` is not given.
        depth_protocol: caps for depth scoring (:data:`DEPTH_PROTOCOLS`), when ``depth``.
        depth_aligns: alignments reported (paper Table 1: per-sequence scale and metric).
        recon_icp_threshold: ICP correspondence distance (metres), when ``recon``.
        published: the paper's numbers on exactly this benchmark (``{"depth": {"scale":
            {"abs_rel", "delta1"}, "metric": {...}}}`` or ``{"pose": {"ate", "rpe_trans",
            "rpe_rot"}}``), shown as a reference row only for unlimited runs.
        display: name in tables (e.g. ``"TUM-dynamics"``).
    """

    name: str
    tasks: tuple[str, ...]
    description: str
    input_mode: str = "resize"
    default_size: int = 512
    depth_protocol: DepthProtocol | None = None
    depth_aligns: tuple[str, ...] = ("scale", "metric")
    recon_icp_threshold: float = 0.1
    published: dict[str, Any] | None = None
    display: str = ""

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad or not self.tasks:
            raise ValueError(f"benchmark {self.name}: tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if "depth" in self.tasks and self.depth_protocol is None:
            raise ValueError(f"benchmark {self.name}: a depth benchmark needs a depth_protocol")
        if self.input_mode not in ("resize", "crop"):
            raise ValueError(f"benchmark {self.name}: input_mode must be 'resize' or 'crop'")

    @property
    def title(self) -> str:
        return self.display or self.name

    @property
    def needs_data(self) -> bool:
        return True

    def root(self, data_root: str | os.PathLike | None = None) -> Path | None:
        """The folder this benchmark reads (None when it needs no data); ``FileNotFoundError``
        naming ``--data-root`` / ``MEM4D_DATA`` and the expected layout when it is missing."""
        return None

    @abstractmethod
    def sequences(self, data_root: str | os.PathLike | None = None, limit_seqs: int | None = None) -> list[str]:
        """Sequence names in protocol order (first ``limit_seqs``); raises ``FileNotFoundError``
        for a missing root and ``ValueError`` for a benchmark without sequences."""

    @abstractmethod
    def load(self, sequence: str, data_root: str | os.PathLike | None = None, max_frames: int | None = None,
             size: int | None = None) -> Sample:
        """Ground truth of ``sequence``'s protocol frames at native resolution, frame 0 = identity.

        ``size`` (the model input's long side) matters only to synthetic benchmarks, which
        render their scenes at the input resolution. ``meta["frame_ids"]`` names the frames
        (checked by ``score`` against the prediction).
        """

    def settings(self) -> dict[str, Any]:
        """Protocol settings written into manifests and results."""
        out: dict[str, Any] = {
            "name": self.name,
            "tasks": list(self.tasks),
            "input_mode": self.input_mode,
            "default_size": self.default_size,
        }
        if self.depth_protocol is not None:
            out["depth_protocol"] = {
                "name": self.depth_protocol.name,
                "max_depth": self.depth_protocol.max_depth,
                "post_clip_max": self.depth_protocol.post_clip_max,
                "aligns": list(self.depth_aligns),
            }
        if "recon" in self.tasks:
            out["recon"] = {"icp_threshold": self.recon_icp_threshold, "crop_at_512": 224}
        return out

    def prepare(self, sample: Sample, size: int) -> Sample:
        """The clip at the model's input size (see :func:`prepare_frames`)."""
        return prepare_frames(sample, size, self.input_mode)


def _limit(names: list[str], limit_seqs: int | None) -> list[str]:
    if limit_seqs is not None:
        if limit_seqs < 1:
            raise ValueError(f"--limit-seqs must be >= 1, got {limit_seqs}")
        names = names[:limit_seqs]
    return names


def _cut(indices: list[int], max_frames: int | None) -> list[int]:
    if max_frames is not None:
        if max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {max_frames}")
        indices = indices[:max_frames]
    return indices


# -- frame sampling rules of the protocols ----------------------------------------------------


def all_frames(n: int) -> list[int]:
    return list(range(n))


def first_n(count: int) -> Callable[[int], list[int]]:
    """The first ``count`` frames (KITTI: 110)."""
    return lambda n: list(range(min(n, count)))


def stride_first(stride: int, count: int) -> Callable[[int], list[int]]:
    """Every ``stride``-th frame, the first ``count`` of them (TUM-dynamics: 3, 90)."""
    return lambda n: list(range(0, n, stride))[:count]


def every(stride: int) -> Callable[[int], list[int]]:
    """Every ``stride``-th frame from frame 0 (7-Scenes ``kf_every=200``)."""
    return lambda n: list(range(0, n, stride))


# Readers index their folders on first use; keep one per (benchmark, root) for the process.
_SOURCE_CACHE: dict[tuple[str, str], Any] = {}


def nrgbd_frames(n: int) -> list[int]:
    """NRGBD: stride ``min(500, N // 2)`` from frame 0."""
    return list(range(0, n, max(1, min(500, n // 2))))


@dataclass(frozen=True)
class DatasetBenchmark(Benchmark):
    """A benchmark over a dataset reader of :mod:`mem4d.data.sources`.

    Attributes:
        source: reader name in ``SOURCES``.
        subdirs: candidate roots relative to the data root (first existing wins; ``"."``
            is the data root itself).
        source_kwargs: extra reader arguments (``split``, ``frame_range``, ...).
        sequence_patterns: protocol sequences (``fnmatch`` patterns on the reader's names);
            None keeps every sequence found. Missing protocol sequences are an error.
        frames: the protocol's frame sampling, ``num_frames -> indices``.
        layout: expected layout, quoted in the error for a missing root.
        shared: the root is the project's shared real-data folder (``shared_data_dir``)
            instead of ``$MEM4D_DATA`` (``--data-root`` still overrides it).
    """

    source: str = ""
    subdirs: tuple[str, ...] = (".",)
    source_kwargs: dict[str, Any] = field(default_factory=dict)
    sequence_patterns: tuple[str, ...] | None = None
    frames: Callable[[int], list[int]] = all_frames
    layout: str = ""
    shared: bool = False

    def root(self, data_root: str | os.PathLike | None = None) -> Path:
        return self._root(data_root)

    def _root(self, data_root: str | os.PathLike | None) -> Path:
        base = Path(data_root).expanduser() if data_root else None
        if base is None:
            base = shared_data_dir() if self.shared else resolve_data_root(None)
        where = "--data-root DIR" + ("" if self.shared else " or set MEM4D_DATA=DIR")
        if self.shared and not data_root:
            where += " (or set MEM4D_SHARED_DATA to the shared/data folder)"
        if base is None:
            raise FileNotFoundError(
                f"benchmark {self.name!r} needs its dataset but no data root is set: pass {where}. "
                f"Expected layout: {self.layout}"
            )
        tried = []
        for sub in self.subdirs:
            cand = base if sub == "." else base / sub
            tried.append(str(cand))
            if cand.is_dir():
                return cand
        raise FileNotFoundError(
            f"benchmark {self.name!r}: dataset not found under {base} (looked for {', '.join(tried)}); "
            f"pass {where}. Expected layout: {self.layout}"
        )

    def _source(self, root: Path):
        from mem4d.data.sources import make_source

        key = (self.name, str(root.resolve()))
        if key not in _SOURCE_CACHE:
            _SOURCE_CACHE[key] = make_source(self.source, root, **self.source_kwargs)
        return _SOURCE_CACHE[key]

    def _names(self, src) -> list[str]:
        found = src.sequences()
        if self.sequence_patterns is None:
            return found
        import fnmatch

        names, missing = [], []
        for pat in self.sequence_patterns:
            hits = [s for s in found if s == pat or fnmatch.fnmatchcase(s, pat)]
            if not hits:
                missing.append(pat)
            names.extend(h for h in hits if h not in names)
        if missing and names:
            raise ValueError(
                f"benchmark {self.name!r}: protocol sequences missing under {src.root}: {missing}. "
                f"Expected layout: {self.layout}"
            )
        return names

    def sequences(self, data_root=None, limit_seqs=None) -> list[str]:
        root = self._root(data_root)
        names = self._names(self._source(root))
        if not names:
            raise ValueError(
                f"benchmark {self.name!r}: no sequences found under {root}. Expected layout: {self.layout}"
            )
        return _limit(names, limit_seqs)

    def frame_indices(self, sequence: str, data_root=None, max_frames: int | None = None) -> list[int]:
        src = self._source(self._root(data_root))
        return _cut(self.frames(src.num_frames(sequence)), max_frames)

    def load(self, sequence, data_root=None, max_frames=None, size=None) -> Sample:
        src = self._source(self._root(data_root))
        if sequence not in src.sequences():
            raise ValueError(f"benchmark {self.name!r}: unknown sequence {sequence!r} under {src.root}")
        indices = _cut(self.frames(src.num_frames(sequence)), max_frames)
        if not indices:
            raise ValueError(f"benchmark {self.name!r}: sequence {sequence!r} has no frames")
        sample = src.load(sequence, indices).reanchor()
        sample.meta["frame_ids"] = [str(f) for f in sample.meta.get("frame_ids", indices)]
        return sample


@dataclass(frozen=True)
class SyntheticSpec:
    """Knobs of one synthetic benchmark scene (everything :func:`make_scene` draws is fixed)."""

    seed: int
    camera_path: str
    num_objects: int
    environment: str

    @property
    def name(self) -> str:
        return f"s{self.seed:05d}-{self.environment}-{self.camera_path}-obj{self.num_objects}"


# Camera paths with a real translation: a pure rotation ("rotation" path) has all camera
# centres in one point, for which Sim(3) ATE is undefined (evo: degenerate covariance).
_SYNTH_PATHS = ("handheld", "orbit", "forward", "loop")
_SYNTH_ENVS = ("room", "courtyard")


def _synthetic_specs(seed0: int, count: int, dynamic: bool) -> tuple[SyntheticSpec, ...]:
    specs = []
    for i in range(count):
        # every (path, object count) pair within 16 scenes; both environments for every path
        k = i // len(_SYNTH_PATHS)
        path = _SYNTH_PATHS[i % len(_SYNTH_PATHS)]
        env = _SYNTH_ENVS[(i + k) % len(_SYNTH_ENVS)]
        n_obj = 1 + k % 4 if dynamic else 0
        specs.append(SyntheticSpec(seed=seed0 + i, camera_path=path, num_objects=n_obj, environment=env))
    return tuple(specs)


@functools.lru_cache(maxsize=4)
def _render(
    spec: SyntheticSpec, num_frames: int, image_size: tuple[int, int], dynamic: bool, appearance: str | None = None
) -> Sample:
    from mem4d.data.synthetic import make_scene

    return make_scene(
        spec.seed, num_frames, image_size=image_size, dynamic=dynamic, camera_path=spec.camera_path,
        num_objects=spec.num_objects if dynamic else None, environment=spec.environment, appearance=appearance,
    )


@dataclass(frozen=True)
class SyntheticBenchmark(Benchmark):
    """Seeded synthetic scenes (:mod:`mem4d.data.synthetic`), generated on the fly.

    A renderer has no native resolution: scenes are rendered at the model's input size
    (:meth:`render_size`, 4:3, e.g. 192x256 for ``size`` 256), so depth is scored at the
    input resolution. The scene itself (layout, cameras, motion) does not depend on the
    resolution, so runs at different ``--size`` see the same scenes, sampled differently.

    Attributes:
        specs: the scenes (seed + knobs), in order.
        num_frames: frames per scene.
        aspect: (height, width) ratio of the rendered frames.
        dynamic: moving objects or not.
        appearance: the look of the scenes (`make_scene`'s ``appearance``; None: the default).
    """

    specs: tuple[SyntheticSpec, ...] = ()
    num_frames: int = 48
    aspect: tuple[int, int] = (3, 4)
    dynamic: bool = True
    appearance: str | None = None

    def render_size(self, size: int | None = None) -> tuple[int, int]:
        """Rendered ``(H, W)`` for an input long side ``size`` (default: ``default_size``)."""
        size = int(size or self.default_size)
        if size % PATCH or size < PATCH:
            raise ValueError(f"--size must be a positive multiple of {PATCH}, got {size}")
        a, b = self.aspect
        return (_round16(size * a / b), size) if b >= a else (size, _round16(size * b / a))

    @property
    def needs_data(self) -> bool:
        return False

    def sequences(self, data_root=None, limit_seqs=None) -> list[str]:
        if not self.specs:
            raise ValueError(f"benchmark {self.name!r} has no sequences")
        return _limit([s.name for s in self.specs], limit_seqs)

    def spec(self, sequence: str) -> SyntheticSpec:
        for s in self.specs:
            if s.name == sequence:
                return s
        raise ValueError(f"benchmark {self.name!r}: unknown sequence {sequence!r}")

    def load(self, sequence, data_root=None, max_frames=None, size=None) -> Sample:
        from dataclasses import replace

        spec = self.spec(sequence)
        T = len(_cut(list(range(self.num_frames)), max_frames))
        sample = _render(spec, T, self.render_size(size), self.dynamic, self.appearance)
        meta = {**sample.meta, "frame_ids": [str(i) for i in range(T)], "sequence": sequence}
        return replace(sample, meta=meta)

    def settings(self) -> dict[str, Any]:
        from mem4d.data.synthetic import GENERATOR_VERSION

        out = super().settings()
        out["synthetic"] = {
            "generator_version": GENERATOR_VERSION,
            "num_frames": self.num_frames,
            "aspect": list(self.aspect),
            "dynamic": self.dynamic,
            "specs": [vars(s) for s in self.specs],
        }
        if self.appearance is not None:
            out["synthetic"]["appearance"] = self.appearance
        return out


# ----------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------

_TABLE1 = "Table 1 (video depth)"
_BONN_SEQS = ("balloon2", "crowd2", "crowd3", "person_tracking2", "synchronous")
_TUM_SEQS = tuple(f"freiburg3_{a}_{b}" for a in ("sitting", "walking") for b in ("static", "xyz", "halfsphere", "rpy"))
_SINTEL_POSE_SEQS = ("alley_2", "ambush_4", "ambush_5", "ambush_6", "cave_2", "cave_4", "market_2", "market_5",
                     "market_6", "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3")
_SINTEL_LAYOUT = "DIR/sintel/training/{final,depth,camdata_left}/<seq>/frame_XXXX.{png,dpt,cam}"
_7SCENES_DEPTH = DepthProtocol("7scenes", max_depth=10.0, post_clip_max=None)

BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(bench: Benchmark) -> Benchmark:
    """Adds a benchmark to the registry (a name can be registered once)."""
    if bench.name in BENCHMARKS and BENCHMARKS[bench.name] is not bench:
        raise ValueError(f"benchmark {bench.name!r} is already registered")
    BENCHMARKS[bench.name] = bench
    return bench


def get_benchmark(name: str) -> Benchmark:
    """The registered benchmark ``name``; ``ValueError`` listing the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known benchmarks: {', '.join(BENCHMARKS)}") from None


register_benchmark(DatasetBenchmark(
    name="sintel", tasks=("depth",), display="Sintel",
    description="video depth, all MPI Sintel training/final sequences, all frames (gt < 70, clip 70)",
    input_mode="resize", depth_protocol=DEPTH_PROTOCOLS["sintel"],
    source="sintel", subdirs=("sintel", "."), layout=_SINTEL_LAYOUT,
    published={"depth": {"scale": {"abs_rel": 0.520, "delta1": 0.431}, "metric": {"abs_rel": 0.846, "delta1": 0.223}}},
))
register_benchmark(DatasetBenchmark(
    name="bonn", tasks=("depth",), display="Bonn",
    description="video depth, 5 Bonn RGB-D Dynamic sequences, frames 30-139 (rgb_110), gt < 70",
    input_mode="resize", depth_protocol=DEPTH_PROTOCOLS["bonn"],
    source="bonn", subdirs=("bonn", "."), source_kwargs={"frame_range": (30, 140)},
    sequence_patterns=tuple(f"*rgbd_bonn_{s}" for s in _BONN_SEQS),
    layout="DIR/bonn/[rgbd_bonn_dataset/]rgbd_bonn_<seq>/{rgb.txt,depth.txt,groundtruth.txt,rgb/,depth/} "
    "(the original Bonn release; frames 30-139 are taken here)",
    published={"depth": {"scale": {"abs_rel": 0.072, "delta1": 0.957}, "metric": {"abs_rel": 0.086, "delta1": 0.957}}},
))
register_benchmark(DatasetBenchmark(
    name="kitti", tasks=("depth",), display="KITTI",
    description="video depth, KITTI depth_selection val_selection_cropped drives, first 110 frames (no cap)",
    input_mode="resize", depth_protocol=DEPTH_PROTOCOLS["kitti"],
    source="kitti",
    subdirs=("kitti/depth_selection/val_selection_cropped", "kitti/val_selection_cropped", "kitti", "."),
    # Intrinsics do not enter video-depth scoring; the gathered layout has none, so a nominal
    # KITTI camera-2 value is passed to satisfy the reader.
    source_kwargs={"intrinsics": (721.5377, 721.5377, 596.5593, 149.854)},
    frames=first_n(110),
    layout="DIR/kitti/depth_selection/val_selection_cropped/{image_gathered,groundtruth_depth_gathered}/<drive>/*.png "
    "(MonST3R's preparation)",
    published={"depth": {"scale": {"abs_rel": 0.140, "delta1": 0.820}, "metric": {"abs_rel": 0.117, "delta1": 0.795}}},
))
register_benchmark(DatasetBenchmark(
    name="sintel-pose", tasks=("pose",), display="Sintel",
    description="camera pose, 14 MPI Sintel sequences, all frames, centre crop",
    input_mode="crop", source="sintel", subdirs=("sintel", "."), sequence_patterns=_SINTEL_POSE_SEQS,
    layout=_SINTEL_LAYOUT,
    published={"pose": {"ate": 0.263, "rpe_trans": 0.091, "rpe_rot": 0.812}},
))
register_benchmark(DatasetBenchmark(
    name="tum-dynamics", tasks=("pose",), display="TUM-dynamics",
    description="camera pose, 8 TUM fr3 sitting/walking sequences, stride 3, first 90 frames, centre crop",
    input_mode="crop", source="tum", subdirs=("tum", "."),
    sequence_patterns=tuple(f"*rgbd_dataset_{s}" for s in _TUM_SEQS), frames=stride_first(3, 90),
    layout="DIR/tum/rgbd_dataset_freiburg3_{sitting,walking}_{static,xyz,halfsphere,rpy}/"
    "{rgb.txt,depth.txt,groundtruth.txt,rgb/,depth/} (the original TUM release)",
    published={"pose": {"ate": 0.061, "rpe_trans": 0.020, "rpe_rot": 0.517}},
))
register_benchmark(DatasetBenchmark(
    name="7scenes", tasks=("recon",), display="7-Scenes",
    description="3D reconstruction, 7-Scenes test split, every 200th frame, 512x384",
    input_mode="crop", source="7scenes", subdirs=("7scenes", "."),
    # depth > 10 m or < 1 mm is invalid in the protocol's 7-Scenes loader
    source_kwargs={"split": "test", "registered_depth": True, "max_depth": 10.0, "min_depth": 0.001},
    frames=every(200),
    layout="DIR/7scenes/<scene>/{TestSplit.txt,seq-XX/frame-XXXXXX.{color.png,depth.proj.png,pose.txt}} "
    "(depth.proj.png from the Spann3R/MonST3R preprocessing)",
))
register_benchmark(DatasetBenchmark(
    name="nrgbd", tasks=("recon",), display="NRGBD",
    description="3D reconstruction, all Neural RGB-D scenes, stride min(500, N//2), 512x384",
    input_mode="crop", source="nrgbd", subdirs=("neural_rgbd", "nrgbd", "."), frames=nrgbd_frames,
    layout="DIR/neural_rgbd/<scene>/{images/img<N>.png,depth/depth<N>.png,poses.txt}",
))
register_benchmark(DatasetBenchmark(
    name="7scenes-sample", tasks=("depth", "pose", "recon"), display="7-Scenes sample",
    description="real-data smoke benchmark: the shared 60-frame 7-Scenes redkitchen excerpt, every 5th frame",
    input_mode="crop", depth_protocol=_7SCENES_DEPTH,
    source="7scenes", subdirs=("7scenes_redkitchen_f000-059", "."), frames=every(5), shared=True,
    layout="shared/data/7scenes_redkitchen_f000-059/frame-XXXXXX.{color.jpg,depth.png,pose.txt} "
    "(found beside the repository)",
))
register_benchmark(SyntheticBenchmark(
    name="synthetic-dynamic", tasks=("depth", "pose"), display="Synthetic dynamic",
    description="24 seeded synthetic scenes x 48 frames, 1-4 moving objects, mixed camera paths (no data needed)",
    input_mode="resize", default_size=256, depth_protocol=DEPTH_PROTOCOLS["synthetic"],
    specs=_synthetic_specs(1000, 24, dynamic=True), dynamic=True,
))
register_benchmark(SyntheticBenchmark(
    name="synthetic-static", tasks=("depth", "pose", "recon"), display="Synthetic static",
    description="24 seeded synthetic scenes x 48 frames, no moving objects, mixed camera paths (no data needed)",
    input_mode="resize", default_size=256, depth_protocol=DEPTH_PROTOCOLS["synthetic"],
    specs=_synthetic_specs(2000, 24, dynamic=False), dynamic=False,
))
register_benchmark(SyntheticBenchmark(
    name="synthetic-realistic", tasks=("depth", "pose"), display="Synthetic realistic",
    description="24 seeded synthetic scenes x 48 frames, 1-4 moving objects, the realistic appearance (photo "
    "textures, lighting, real cameras and rooms, motion blur, noise, JPEG; no data needed)",
    input_mode="resize", default_size=256, depth_protocol=DEPTH_PROTOCOLS["synthetic"],
    specs=_synthetic_specs(3000, 24, dynamic=True), dynamic=True, appearance="realistic",
))

