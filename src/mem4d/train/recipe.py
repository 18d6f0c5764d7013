"""Training recipes: typed dataclasses read from YAML (`configs/*.yaml`), overridable with
`--set section.key=value` (values parsed as YAML scalars; nothing is ever `eval`-ed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from mem4d.losses.objective import LossWeights


@dataclass
class ModelRecipe:
    preset: str = "tiny"  # tiny | small | paper
    overrides: dict[str, Any] = field(default_factory=dict)  # nested Mem4DConfig fields
    init_encoder: str | None = None  # a CUT3R .pth or safetensors file to initialise the encoder
    init_from: str | None = None  # a save_pretrained() directory to start from


@dataclass
class SizeRecipe:
    """Mixed training sizes and aspect ratios (synthetic data; off while `long_side` is None).

    Each step draws one (H, W) for all clips of its batch from (data.seed, step, rank): the long
    side uniformly among the multiples of `multiple` in `long_side`, the aspect (width:height)
    uniformly from `aspects`, the short side rounded to a multiple (at least two). With a
    `token_budget` the clip length follows the size, frames = budget // (tokens + frame_overhead)
    with tokens = (H / multiple) (W / multiple), clamped to [min_frames, data.max_frames or
    data.num_frames], so a large clip is short and a step costs about the same at every size.
    `frame_overhead` is the model's per-frame work that does not grow with the image, in tokens
    (measured for the tiny preset on CPU: ~50, see docs/RESULTS.md). `default_fraction` of the
    steps (drawn from their own stream, so 0 leaves every other draw as it was) keep
    `data.image_size` instead, the model's default input size.
    """

    long_side: tuple[int, int] | None = None  # [min, max] pixels, multiples of `multiple`
    aspects: tuple[str, ...] = ("4:3", "16:9", "1:1", "3:4", "9:16")  # width:height (quote them in YAML)
    token_budget: int | None = None  # frames x tokens of a clip (None: clip lengths as without sizes)
    frame_overhead: int = 0  # per-frame cost that does not scale with the image, in tokens
    min_frames: int = 2
    multiple: int = 16  # the model's patch size
    default_fraction: float = 0.0  # share of steps at data.image_size (the rest drawn as above)

    def __post_init__(self) -> None:
        m = self.multiple
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(f"data.sizes.multiple must be a positive integer, got {m!r}")
        if self.long_side is not None:
            try:
                lo, hi = (int(v) for v in self.long_side)
            except (TypeError, ValueError):
                raise ValueError(f"data.sizes.long_side must be [min, max] pixels, got {self.long_side!r}") from None
            if lo % m or hi % m or not 2 * m <= lo <= hi:
                raise ValueError(f"data.sizes.long_side {[lo, hi]}: both must be multiples of {m}, "
                                 f"with {2 * m} <= min <= max")
            self.long_side = (lo, hi)
        self.aspects = tuple(self.aspects)
        self.default_fraction = fraction("data.sizes.default_fraction", self.default_fraction)
        if not self.aspects:
            raise ValueError("data.sizes.aspects must list at least one width:height ratio, e.g. ['4:3', '9:16']")
        for aspect in self.aspects:
            parse_aspect(aspect)
        if self.token_budget is not None and (isinstance(self.token_budget, bool) or int(self.token_budget) < 1):
            raise ValueError(f"data.sizes.token_budget must be a positive integer or null, got {self.token_budget!r}")
        if isinstance(self.frame_overhead, bool) or not isinstance(self.frame_overhead, int) or self.frame_overhead < 0:
            raise ValueError(f"data.sizes.frame_overhead must be an integer >= 0, got {self.frame_overhead!r}")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise ValueError(f"data.sizes.min_frames must be a positive integer, got {self.min_frames!r}")


def fraction(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1]; a ``ValueError`` naming the recipe key otherwise (booleans,
    strings and numbers outside the range are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def parse_aspect(aspect: Any) -> tuple[float, float]:
    """An aspect ratio 'width:height' as numbers: '16:9' -> (16.0, 9.0)."""
    if not isinstance(aspect, str):
        raise ValueError(f"data.sizes.aspects: {aspect!r} is not a 'width:height' string "
                         f"(quote aspects in YAML: '4:3', else YAML reads 4:3 as the number 243)")
    parts = aspect.split(":")
    try:
        w, h = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"data.sizes.aspects: {aspect!r} is not 'width:height', e.g. '16:9'") from None
    if not (w > 0 and h > 0):
        raise ValueError(f"data.sizes.aspects: {aspect!r} needs a positive width and height")
    return w, h


@dataclass
class DataRecipe:
    source: str = "synthetic"  # synthetic | mixture (see mem4d.data.clips)
    image_size: tuple[int, int] = (64, 64)  # (H, W)
    num_frames: int = 4  # stage 1: fixed length
    max_frames: int | None = None  # stage 2: clip length drawn in [num_frames, max_frames]
    dynamic: bool = True
    seed: int = 0
    scenes: int | None = None  # a finite pool of scenes (None: a new scene every clip)
    # synthetic camera motion per frame, drawn per clip uniformly in [low, high] (1.0 ≈ 3.5 cm and
    # 1.2° a frame): faster clips let short training clips span the motion of long test videos
    camera_speed: tuple[float, float] = (1.0, 1.0)
    # frames a synthetic "loop" path takes to close; None: the clip's length, which makes a
    # loop clip of 8 frames turn ~50 degrees a frame (frames that share no view)
    loop_frames: int | None = None
    datasets: list[dict[str, Any]] = field(default_factory=list)  # for source=mixture
    val_scenes: int = 4
    val_frames: int = 8
    # the look of synthetic training clips (mem4d.data.synthetic.appearance): None (default),
    # "realistic", or a mapping of its parts to true/false; validation scenes keep the default look
    appearance: Any = None
    appearance_fraction: float = 1.0  # the share of clips drawn with `appearance` (the rest: the default look)
    # the share of clips filmed on the "closeup" camera path (0.5-2 m from a surface; the others draw their
    # path at random, as the benchmarks do): the drawn paths look into the open space, 2-7 m away
    closeup_fraction: float = 0.0
    # mixed sizes and aspect ratios, one per step (synthetic; off by default); validation stays at image_size
    sizes: SizeRecipe = field(default_factory=SizeRecipe)

    def __post_init__(self) -> None:
        self.appearance_fraction = fraction("data.appearance_fraction", self.appearance_fraction)
        self.closeup_fraction = fraction("data.closeup_fraction", self.closeup_fraction)


@dataclass
class TrainRecipe:
    steps: int = 200
    batch_size: int = 2
    lr: float = 3e-4
    # learning-rate multiplier per top-level module, e.g. {encoder: 0.1, decoder: 0.1}: a pretrained
    # trunk moves slower than the heads a fine-tune adds (empty: every parameter at `lr`)
    lr_scale: dict[str, float] = field(default_factory=dict)
    # top-level modules held fixed (no gradient, no optimizer state), e.g. the pretrained trunk and
    # depth head while a fine-tune trains only the pose and motion heads: their outputs stay exactly
    # those of `model.init_from`, and the step skips their backward pass
    freeze: list[str] = field(default_factory=list)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 20
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    detach_every: int | None = None  # truncated back-propagation through the stream
    grad_checkpointing: bool = False
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    encoder_trainable: bool = True
    log_every: int = 10
    ckpt_every: int = 50
    keep_checkpoints: int = 2
    val_every: int = 0  # 0: only at the end
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    tensorboard: bool = True
    data_workers: int = 0  # processes generating/reading clips ahead of the steps (0: in the training loop)
    time_limit_min: float | None = None  # stop (checkpoint + final weights) after this many minutes, e.g. a GPU burst
    stop_at: int | None = None  # stop (checkpoint + final weights) after this step, the schedule still that of `steps`


@dataclass
class Recipe:
    model: ModelRecipe = field(default_factory=ModelRecipe)
    data: DataRecipe = field(default_factory=DataRecipe)
    train: TrainRecipe = field(default_factory=TrainRecipe)
    loss: LossWeights = field(default_factory=LossWeights)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Recipe":
        return _build(cls, raw, "")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"recipe {path} not found; see configs/ for the shipped recipes")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"recipe {path} must be a mapping of sections (model, data, train, loss)")
        for item in overrides or []:
            apply_override(raw, item)
        return cls.from_dict(raw)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Applies one `section.key=value` override in place; the value is parsed as a YAML scalar."""
    if "=" not in item:
        raise ValueError(f"--set expects key=value (e.g. train.steps=100), got {item!r}")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = parse_value(value)


def parse_value(text: str) -> Any:
    """A YAML scalar/list, with numbers like `1e-4` read as floats (YAML 1.1 would keep a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ValueError(f"recipe section {where or 'root'} must be a mapping, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(f"unknown recipe key(s) {unknown} in {where or 'root'}; known: {sorted(known)}")
    kwargs = {}
    for name, value in raw.items():
        default = getattr(cls(), name)
        if is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}.{name}".strip("."))
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
