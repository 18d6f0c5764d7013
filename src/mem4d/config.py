"""Typed configuration of the Mem4D network: nested dataclasses, presets and variants.

Every config validates itself in ``__post_init__`` (a bad value raises ``ValueError`` naming
the field and what would be valid) and round-trips through JSON-friendly dicts::

    cfg = Mem4DConfig.small(variant="no_tdm")
    cfg2 = Mem4DConfig.from_dict(cfg.to_dict())     # unknown keys -> ValueError naming them
    assert cfg2 == cfg

Presets (docs: ``MODEL.md`` "Presets"):

========  =========  =====================  ====  =================  ===  ====
preset    image      encoder (depth x E)    D     TCA/motion/E_p     L    N_s
========  =========  =====================  ====  =================  ===  ====
tiny      64 x 64    4 x 192 (3 heads)      128   1 layer each       1    8
small     192 x 256  ViT-S 12 x 384 (6)     384   2 layers each      2    16
paper     384 x 512  ViT-L 24 x 1024 (16)   768   4 layers each      6    100
========  =========  =====================  ====  =================  ===  ====

Variants (``Mem4DConfig.variant``), one string so an ablation table row is one name:

- ``"full"``: TCA + TDM + PSM, the paper's model.
- ``"no_tdm"`` / ``"no_psm"``: the MotionRead / SpatialRead blocks stay (same decoder depth)
  but get no memory tokens, i.e. they are plain self-attention blocks; the memory's own
  modules are not built.
- ``"no_tca"``: the projected encoder tokens go to the decoder directly.
- ``"unified"``: a CUT3R-style recurrent state of learnable tokens replaces TDM + PSM (both
  read blocks of every stage attend to the state; the state is updated after each frame),
  with about the same number of parameters (see ``UnifiedConfig``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "VARIANTS",
    "DecoderConfig",
    "EncoderConfig",
    "HeadsConfig",
    "Mem4DConfig",
    "PSMConfig",
    "TCAConfig",
    "TDMConfig",
    "UnifiedConfig",
]

VARIANTS = ("full", "no_tdm", "no_psm", "no_tca", "unified")
CAMERA_POSES = ("absolute", "chained", "procrustes")


def _positive(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{type(obj).__name__}.{name} must be a positive number, got {value!r}")


def _ints(obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{type(obj).__name__}.{name} must be an int, got {value!r}")


class _Config:
    """Mixin: ``to_dict`` / ``from_dict`` for (nested) config dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (tuples become lists)."""

        def plain(value: Any) -> Any:
            if isinstance(value, _Config):
                return value.to_dict()
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            return value

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Builds the config from ``to_dict()`` output; unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(known)} "
                "(was the config written by a different mem4d version?)"
            )
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            sub = _NESTED.get((cls.__name__, name))
            if sub is not None:
                kwargs[name] = sub.from_dict(value)
            elif isinstance(value, list):
                kwargs[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
            else:
                kwargs[name] = value
        return cls(**kwargs)


@dataclass
class EncoderConfig(_Config):
    """Image encoder E (CUT3R-compatible ViT, patch 16, 2D RoPE).

    Attributes:
        width: token width E.
        depth: number of transformer blocks.
        num_heads: attention heads.
        patch_size: patch side in pixels (images must be multiples of it).
        mlp_ratio: MLP hidden width / E.
        rope_base: RoPE frequency base (CUT3R: 100).
        trainable: False freezes the encoder (paper: frozen) and runs it without autograd.
    """

    width: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_size: int = 16
    mlp_ratio: float = 4.0
    rope_base: float = 100.0
    trainable: bool = False

    def __post_init__(self) -> None:
        _ints(self, "width", "depth", "num_heads", "patch_size")
        _positive(self, "width", "depth", "num_heads", "patch_size", "mlp_ratio", "rope_base")
        if self.width % self.num_heads:
            raise ValueError(f"EncoderConfig.width={self.width} must be divisible by num_heads={self.num_heads}")
        if not isinstance(self.trainable, bool):
            raise ValueError(f"EncoderConfig.trainable must be a bool, got {self.trainable!r}")


@dataclass
class TCAConfig(_Config):
    """Temporal Context Aggregator (paper §3.1).

    Attributes:
        window: number of past frames W whose encoder features are aggregated (paper: 5).
        num_layers: self-attention layers over [current ; compressed past] tokens (paper: 4).

    The past frame at distance k is compressed by a 2D conv with kernel = stride
    ``s(k) = 2 ** floor(log2 k)`` (``TCAConfig.stride``).
    """

    window: int = 5
    num_layers: int = 4

    def __post_init__(self) -> None:
        _ints(self, "window", "num_layers")
        _positive(self, "window", "num_layers")

    @staticmethod
    def stride(k: int) -> int:
        """Spatial stride (= kernel) for the past frame at temporal distance ``k >= 1``."""
        return 1 << (int(k).bit_length() - 1)


@dataclass
class TDMConfig(_Config):
    """Transient Dynamics Memory (paper §3.2, Eq. 3-4).

    Attributes:
        num_past: M_d, the most recent past frames correlated with the current one (paper: 2).
        levels: correlation pyramid levels (average pooling by 2).
        radius: local lookup radius r at every level -> levels * (2r+1)^2 channels.
        num_layers: self-attention layers of the motion encoder (paper: 4).
        input: what is correlated. ``"encoder"``: the projected encoder features F_t with
            F_{t-k} (Eq. 3 as written). ``"enriched"`` [ablation option]: the TCA outputs
            x_t with x_{t-k} (the introduction's "TCA ... providing a motion-aware input for
            our dual memories" can be read so); the stream state then also keeps the last
            ``num_past`` enriched maps (``StreamState.tdm_feats``). Without a TCA (variant
            ``no_tca``) both read the same tensors.
    """

    num_past: int = 2
    levels: int = 4
    radius: int = 4
    num_layers: int = 4
    input: str = "encoder"

    def __post_init__(self) -> None:
        _ints(self, "num_past", "levels", "radius", "num_layers")
        _positive(self, "num_past", "levels", "num_layers")
        if self.radius < 0:
            raise ValueError(f"TDMConfig.radius must be >= 0, got {self.radius}")
        if self.input not in ("encoder", "enriched"):
            raise ValueError(f"TDMConfig.input must be 'encoder' or 'enriched', got {self.input!r}")

    @property
    def corr_channels(self) -> int:
        """Channels of one correlation lookup: levels * (2r+1)^2 (324 for 4 levels, r=4)."""
        return self.levels * (2 * self.radius + 1) ** 2


@dataclass
class PSMConfig(_Config):
    """Persistent Structure Memory (paper §3.2, Eq. 5).

    Attributes:
        capacity: N_s, frames held including the anchor frame 0 (never evicted).
        num_layers: self-attention blocks of the light pointmap encoder E_p (paper: 4).
        tier_bounds: largest temporal distance of each compression tier but the last
            (strictly increasing, >= 1); distance ``d`` falls in the first tier with
            ``d <= bound``, else in the last tier.
        tier_kernels: ``len(tier_bounds) + 1`` kernels ``(t, y, x)`` (= strides) per tier.
        fuse_tokens: also feed the frame's final decoder tokens to E_p (not in the paper).
        detach_input: [not in the paper, which trains end to end] E_p reads a detached
            pointmap (gradients still train E_p; the prediction of frame t is not pushed by
            later frames' losses through the memory). Off by default: in a tiny-preset probe it
            was no better and it saves no memory (docs/ARCHITECTURE.md, row 9).
        max_distance: [choice; the paper gives no time positions for the memory] the
            largest temporal distance a readout position shows. A held frame at distance d
            sits at time ``-min(d, max_distance)`` and frame 0 at ``-min(t, max_distance + 1)``
            (always the oldest, never tied with a clamped group), so the positions are bounded
            and the same at frame 200 and frame 10,000. None: ``capacity - 1`` (the queue's
            own range); set it to the longest distance the training clips show (clip length
            - 1) when that is shorter than the queue.
        final_norm: [choice] a LayerNorm closes E_p (as after every ViT); False: the last
            block's output is P_t.
        scale_input: [choice] E_p reads the pointmap divided by the scene scale of frame 0's
            prediction; False: the raw predicted points.
        compressor: ``"separable"`` [choice]: each tier is a depthwise 3D conv + a pointwise
            linear (~(kt*ky*kx + D) * D parameters); ``"dense"``: a full D -> D 3D conv per tier,
            the literal reading of Eq. 5 (151 M parameters for the (4, 8, 8) tier at D = 768).
    """

    capacity: int = 100
    num_layers: int = 4
    tier_bounds: tuple[int, ...] = (4, 20)
    tier_kernels: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 4, 4), (4, 8, 8))
    fuse_tokens: bool = False
    detach_input: bool = False
    max_distance: int | None = None
    final_norm: bool = True
    scale_input: bool = True
    compressor: str = "separable"

    def __post_init__(self) -> None:
        _ints(self, "capacity", "num_layers")
        _positive(self, "num_layers")
        if self.capacity < 2:
            raise ValueError(f"PSMConfig.capacity must be >= 2 (frame 0 + at least one recent frame), got {self.capacity}")
        if self.max_distance is not None:
            _ints(self, "max_distance")
            _positive(self, "max_distance")
        self.tier_bounds = tuple(int(b) for b in self.tier_bounds)
        self.tier_kernels = tuple(tuple(int(k) for k in kern) for kern in self.tier_kernels)  # type: ignore[misc]
        if any(b < 1 for b in self.tier_bounds) or list(self.tier_bounds) != sorted(set(self.tier_bounds)):
            raise ValueError(f"PSMConfig.tier_bounds must be strictly increasing and >= 1, got {self.tier_bounds}")
        if len(self.tier_kernels) != len(self.tier_bounds) + 1:
            raise ValueError(
                f"PSMConfig.tier_kernels needs len(tier_bounds)+1 = {len(self.tier_bounds) + 1} kernels, "
                f"got {len(self.tier_kernels)}"
            )
        if any(len(k) != 3 or min(k) < 1 for k in self.tier_kernels):
            raise ValueError(f"PSMConfig.tier_kernels must be (t, y, x) triples of ints >= 1, got {self.tier_kernels}")
        for name in ("fuse_tokens", "detach_input", "final_norm", "scale_input"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PSMConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.compressor not in ("separable", "dense"):
            raise ValueError(f"PSMConfig.compressor must be 'separable' or 'dense', got {self.compressor!r}")

    def tier(self, distance: int) -> int:
        """Index of the compression tier of a frame at temporal distance ``distance >= 1``."""
        for i, bound in enumerate(self.tier_bounds):
            if distance <= bound:
                return i
        return len(self.tier_bounds)

    def reachable_tiers(self) -> list[int]:
        """Tiers that can occur with this capacity (recent frames sit at distance 1..capacity-1)."""
        return sorted({self.tier(d) for d in range(1, self.capacity)})

    def time_position(self, distance: float, anchor: bool = False) -> float:
        """Readout time of a held frame (or compressed group) at mean temporal ``distance > 0``;
        ``anchor``: frame 0 (see ``max_distance``)."""
        limit = self.capacity - 1 if self.max_distance is None else self.max_distance
        return -float(min(distance, limit + 1 if anchor else limit))


@dataclass
class DecoderConfig(_Config):
    """Fusion decoder (paper Algorithm 1).

    Attributes:
        num_stages: L, stages of (MotionReadBlock, SpatialReadBlock).
        mem_norm: [choice] memory tokens get their own LayerNorm (``norm_mem``) in the read
            blocks; False: they share the block's ``norm1``, i.e. each read block is exactly a
            self-attention layer over [tokens ; memory] whose memory rows are not computed.
        dpt_layers: three 1-based stages fed to the DPT heads after the encoder output; None:
            ``ceil(L*k/3)`` for k = 1, 2, 3 [choice; the paper does not say which].
    """

    num_stages: int = 6
    mem_norm: bool = True
    dpt_layers: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        _ints(self, "num_stages")
        _positive(self, "num_stages")
        if not isinstance(self.mem_norm, bool):
            raise ValueError(f"DecoderConfig.mem_norm must be a bool, got {self.mem_norm!r}")
        if self.dpt_layers is not None:
            self.dpt_layers = tuple(self.dpt_layers)  # type: ignore[assignment]
            if len(self.dpt_layers) != 3 or any(
                    isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= self.num_stages for s in self.dpt_layers):
                raise ValueError(f"DecoderConfig.dpt_layers must be 3 stages in 1..{self.num_stages}, got {self.dpt_layers}")

    def dpt_stages(self) -> tuple[int, int, int]:
        """1-based decoder stages fed to the DPT heads: ``dpt_layers``, else ceil(L*k/3) for k = 1, 2, 3.

        L=6 -> (2, 4, 6); L=2 -> (1, 2, 2); L=1 -> (1, 1, 1) (stages are reused when L < 3).
        """
        if self.dpt_layers is not None:
            return self.dpt_layers
        L = self.num_stages
        return tuple(math.ceil(L * k / 3) for k in (1, 2, 3))  # type: ignore[return-value]


@dataclass
class HeadsConfig(_Config):
    """Output heads.

    Attributes:
        dpt_features: width of the DPT fusion path.
        dpt_layer_dims: widths of the four reassembled maps (1/4, 1/8, 1/16, 1/32).
        dpt_hidden: width of the last full-resolution conv of each DPT head.
        camera_hidden: hidden width of the camera MLP.
        motion: build the motion head (``FrameOutput.dynamic_prob``); False -> None.
        max_log_depth: clamp of the norm ``|v|`` before ``expm1`` in the pointmap activation
            (metres up to e^max_log_depth).
        camera_pose: ``"absolute"`` (the paper: the camera token gives camera t in the world
            frame) or ``"chained"`` [not in the paper]: it gives camera t in camera t-1's frame
            (what the TDM's correlation with frame t-1 shows) and ``cam2world_t =
            cam2world_{t-1} @ relative_t``, the previous pose kept in the stream state; or
            ``"procrustes"`` [not in the paper]: a correspondence head matches frame t with
            frame t-1 on a 1/4-resolution grid (``mem4d.model.correspondence``) and the motion
            is the weighted rigid fit of frame t's ``pts_cam`` onto frame t-1's at the matches
            (``mem4d.model.procrustes_pose``), chained; ``pts_world = cam2world . pts_cam``
            and the world DPT head is not built (the camera head still gives the FoV).
        anchor_first: [choice] frame 0's rotation and translation are the identity (the world
            is camera 0 by definition); False: the camera head regresses frame 0's pose too, as
            for every other frame (the paper's wording).
        reprojection_iters: with ``"procrustes"``, Gauss-Newton steps after the rigid fit that
            minimise the reprojection error of frame t's points at their matches in frame t-1
            (0: the rigid fit alone). Measured with exact matches and the shipped model's depth
            on 6 ``synthetic-dynamic`` scenes: ATE 0.237 for the rigid fit, 0.183 after 3 steps.
        depth_grad_from_pose: with ``"procrustes"`` [choice], the scale of the gradient that the
            pose (through the rigid fit and the reprojection steps) and the world pointmap
            ``cam2world . pts_cam`` send into ``pts_cam``; 0 (default): none, the depth is
            trained by its own pointmap losses, the pose and world terms train the matches,
            their weights and the FoV. Measured (docs/RESULTS.md, fine-tuning the shipped
            model): at 1 the pose and world terms sent the depth head 1-3x the gradient of its
            own loss at the start and 20-50x after 200 steps, and the depth collapsed
            (validation Abs Rel 0.20 -> 1.00 in 250 steps); with the fit detached but the world
            pointmap not, the world loss alone sent the depth as much gradient as its own loss,
            read through poses still ~0.3 m off, and validation Abs Rel rose 0.20 -> 0.255.
        fit_points: with ``"procrustes"`` [choice], the 3D points of the rigid fit and of the
            world pointmap: ``"depth"`` (default): the predicted depth lifted along the
            predicted intrinsics' rays, so the points agree with the camera the reprojection
            steps project through; ``"pointmap"``: ``pts_cam`` as the pointmap head gives it
            (its rays are its own). Measured on run G's checkpoint (docs/RESULTS.md): rotation
            error per frame 9.8 degrees with the pointmap, 1.0 with the depth.
        flow_features / flow_hidden / flow_radius / flow_levels: the correspondence head's
            matching channels, conv width, correlation window radius and pyramid levels
            (``"procrustes"`` only).
        pose_refinement: ``"none"`` or ``"photometric"`` [not in the paper; inference only]:
            after the network, the motion from frame t-1 to t is re-estimated by direct
            photometric alignment of the two images on frame t-1's predicted depth (moving
            pixels down-weighted by the motion head), started from the previous motion, and
            chained; ``pts_world`` then becomes ``cam2world . pts_cam`` so points and poses
            agree (``mem4d.geometry.photometric``). Causal: it reads frames t-1 and t only.
        motion_refine: [not in the paper] with ``"procrustes"`` and ``motion``, the motion head
            refines its mask on the correspondence head's 1/4-resolution grid, reading the
            matching features of the image (``mem4d.model.motion_head``); False (default): the
            mask is the tokens' 16-pixel patches plus the fit's evidence.
        motion_epipolar: [not in the paper] with ``motion_refine``, the refinement also reads
            each match's distance from its epipolar line under the fitted motion
            (``mem4d.model.procrustes_pose.epipolar_distance``): a static point lies on its line
            whatever its depth, so a wrong depth does not read as motion.
        motion_photometric: [not in the paper] with ``motion_refine``: after the photometric pose
            refinement (and only where it runs), the motion head rechecks its mask against the
            photometric residual of frame t against frame t-1 under the refined motion
            (``mem4d.model.motion_head``, ``mem4d.geometry.photometric.warp_residual``), and the
            rechecked mask also weights frame t in the next frame's alignment.
        refine_select_after: with ``"photometric"`` [choice, not in the paper], the pyramid levels
            (coarsest first) that every start of the alignment runs before the start with the
            lowest photometric cost goes on alone; 0 (default): all levels, the lowest cost at
            full resolution wins. Measured (docs/RESULTS.md, "A cheaper refinement"): picking
            after 2 of 3 levels saves 23-29 % of the refinement's CPU for +0.002-0.003 ATE.
        refine_probes: with ``"photometric"`` [choice, not in the paper]: the alignment also
            probes 8 turns of the constant velocity (1/6 of the field of view each way, about the
            camera's x and y axes) on its coarsest level, and the best probe becomes one more
            start (`mem4d.model.pose_refinement.rotation_probes`), so that a turn the velocity
            does not predict (the first frames of a fast pan) is caught. Measured with exact depth
            on the fast loop scenes (`bench/bench_pose_refinement.py`, docs/RESULTS.md).
        refine_focal: with ``"photometric"`` [choice, not in the paper]: the focal length is
            calibrated from the video's motion (`mem4d.model.focal_calibration`): the network's
            intrinsics are averaged over the frames so far, each frame that turns at least 3
            degrees re-runs its alignment at 9 focal scales of that mean (0.5-2x), their costs
            are summed over the stream, and the output's intrinsics and ``pts_cam`` take the
            scale of the lowest sum once the camera has turned enough to tell.
        refine_scale: with ``"photometric"`` [not in the paper; inference only]: each frame's depth
            (and ``pts_cam``) is put in the previous frame's scale through the refined motion
            (`mem4d.model.scale_chain`): the median ratio of frame t-1's depth moved into frame t
            to frame t's own, raised to this power (the share kept; the rest leaks back to the
            network's own scale). 0 (default): off. Measured with the shipped weights at 0.7:
            depth Abs Rel @128 0.232 -> 0.227, the 7-Scenes metric scale and the scene memory's
            PSNR slightly worse; not shipped (docs/RESULTS.md, "The depth's scale chained").
        loop_closure: with ``"photometric"`` [not in the paper; inference only]: the refined
            pose of each frame is also aligned against the oldest stored keyframe in view that
            is at least 10 frames old, and takes that alignment where it fits clearly better than
            the chained pose and about as well as consecutive frames do (`mem4d.model.loop_closure`): the drift of the chained poses ends
            where the video returns to a place it has seen. Up to 16 keyframes per stream.
        large_input_head: [not in the paper] a second camera-pointmap head reads the frames whose
            area is larger than ``image_size``'s; it starts as a copy of the first when a model
            gains it (`mem4d.model.mem4d.Mem4D.init_copies`), so the depth at larger sizes can be
            trained while the default size's outputs stay bit for bit what they were.
        depth_scale: [not in the paper] a small MLP on the frame's final decoder tokens, its mean
            encoder token and its mean log depth gives one factor per frame on ``pts_cam`` (`mem4d.model.depth_scale`),
            so that the metric scale can be trained apart from the pointmap's shape. It starts at
            a factor of 1. ``depth_scale_hidden``: its hidden width.
    """

    dpt_features: int = 256
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    dpt_hidden: int = 128
    dpt_full_res: bool = True
    camera_hidden: int = 768
    motion: bool = True
    max_log_depth: float = 12.0
    camera_pose: str = "absolute"
    pose_refinement: str = "none"
    flow_features: int = 32
    flow_hidden: int = 64
    flow_radius: int = 3
    flow_levels: int = 3
    anchor_first: bool = True
    reprojection_iters: int = 3
    depth_grad_from_pose: float = 0.0
    fit_points: str = "depth"
    refine_select_after: int = 0
    motion_refine: bool = False
    motion_epipolar: bool = False
    motion_photometric: bool = False
    refine_probes: bool = False
    refine_focal: bool = False
    refine_scale: float = 0.0
    loop_closure: bool = False
    large_input_head: bool = False
    depth_scale: bool = False
    depth_scale_hidden: int = 64

    def __post_init__(self) -> None:
        self.dpt_layer_dims = tuple(int(d) for d in self.dpt_layer_dims)  # type: ignore[assignment]
        _ints(self, "dpt_features", "dpt_hidden", "camera_hidden", "flow_features", "flow_hidden", "flow_radius",
              "flow_levels", "reprojection_iters", "refine_select_after", "depth_scale_hidden")
        if self.reprojection_iters < 0:
            raise ValueError(f"HeadsConfig.reprojection_iters must be >= 0, got {self.reprojection_iters}")
        if self.refine_select_after < 0:
            raise ValueError(f"HeadsConfig.refine_select_after must be >= 0 (0: all levels), got {self.refine_select_after}")
        if not isinstance(self.depth_grad_from_pose, (int, float)) or isinstance(self.depth_grad_from_pose, bool) \
                or not 0 <= self.depth_grad_from_pose <= 1:
            raise ValueError(f"HeadsConfig.depth_grad_from_pose must be a number in [0, 1], got {self.depth_grad_from_pose!r}")
        self.depth_grad_from_pose = float(self.depth_grad_from_pose)
        if not isinstance(self.refine_scale, (int, float)) or isinstance(self.refine_scale, bool) \
                or not 0 <= self.refine_scale <= 1:
            raise ValueError(f"HeadsConfig.refine_scale must be a number in [0, 1] (0: off), got {self.refine_scale!r}")
        self.refine_scale = float(self.refine_scale)
        _positive(self, "dpt_features", "dpt_hidden", "camera_hidden", "max_log_depth", "flow_features", "flow_hidden",
                  "flow_radius", "flow_levels", "depth_scale_hidden")
        if len(self.dpt_layer_dims) != 4 or min(self.dpt_layer_dims) < 1:
            raise ValueError(f"HeadsConfig.dpt_layer_dims must be 4 positive ints, got {self.dpt_layer_dims}")
        for name in ("motion", "dpt_full_res", "anchor_first", "motion_refine", "motion_epipolar", "motion_photometric",
                     "refine_probes", "refine_focal", "loop_closure", "depth_scale", "large_input_head"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"HeadsConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.camera_pose not in CAMERA_POSES:
            raise ValueError(f"HeadsConfig.camera_pose must be one of {CAMERA_POSES}, got {self.camera_pose!r}")
        if self.motion_refine and not (self.motion and self.camera_pose == "procrustes"):
            raise ValueError("HeadsConfig.motion_refine reads the correspondence head's features: it needs "
                             f"motion: true and camera_pose: procrustes (got motion={self.motion}, "
                             f"camera_pose={self.camera_pose!r})")
        if self.motion_epipolar and not self.motion_refine:
            raise ValueError("HeadsConfig.motion_epipolar is an input of the mask refinement: it needs motion_refine: true")
        if self.motion_photometric and not self.motion_refine:
            raise ValueError("HeadsConfig.motion_photometric reads the mask refinement's image guide: it needs "
                             "motion_refine: true")
        if self.fit_points not in ("depth", "pointmap"):
            raise ValueError(f"HeadsConfig.fit_points must be 'depth' or 'pointmap', got {self.fit_points!r}")
        if self.pose_refinement not in ("none", "photometric"):
            raise ValueError(f"HeadsConfig.pose_refinement must be 'none' or 'photometric', got {self.pose_refinement!r}")


@dataclass
class UnifiedConfig(_Config):
    """The ``unified`` variant: a CUT3R-style recurrent state replacing TDM + PSM.

    Attributes:
        num_state_tokens: learnable state tokens (CUT3R: 768).
        num_layers: update blocks (state tokens attend to the frame's tokens). 0 means
            ``tdm.num_layers + psm.num_layers``, which matches the dual memory's budget.
    """

    num_state_tokens: int = 768
    num_layers: int = 0

    def __post_init__(self) -> None:
        _ints(self, "num_state_tokens", "num_layers")
        _positive(self, "num_state_tokens")
        if self.num_layers < 0:
            raise ValueError(f"UnifiedConfig.num_layers must be >= 0, got {self.num_layers}")


@dataclass
class Mem4DConfig(_Config):
    """The whole network.

    Attributes:
        dim: memory / decoder width D.
        num_heads: heads of every D-wide block (TCA, motion encoder, E_p, decoder, unified).
        mlp_ratio: MLP ratio of those blocks.
        rope_base: frequency base of the 3D RoPE over (t, y, x).
        image_size: (H, W) the preset is meant for (the bench default; any multiple of the
            patch size works).
        variant: one of ``VARIANTS``.
    """

    dim: int = 768
    num_heads: int = 12
    mlp_ratio: float = 4.0
    rope_base: float = 100.0
    image_size: tuple[int, int] = (384, 512)
    variant: str = "full"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    tca: TCAConfig = field(default_factory=TCAConfig)
    tdm: TDMConfig = field(default_factory=TDMConfig)
    psm: PSMConfig = field(default_factory=PSMConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    unified: UnifiedConfig = field(default_factory=UnifiedConfig)

    def __post_init__(self) -> None:
        _ints(self, "dim", "num_heads")
        _positive(self, "dim", "num_heads", "mlp_ratio", "rope_base")
        if self.dim % self.num_heads:
            raise ValueError(f"Mem4DConfig.dim={self.dim} must be divisible by num_heads={self.num_heads}")
        head_dim = self.dim // self.num_heads
        if head_dim % 2 or head_dim < 6:
            raise ValueError(f"3D RoPE needs an even head dim >= 6; dim/num_heads = {head_dim}")
        if self.variant not in VARIANTS:
            raise ValueError(f"Mem4DConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
        self.image_size = tuple(int(s) for s in self.image_size)  # type: ignore[assignment]
        p = self.encoder.patch_size
        if len(self.image_size) != 2 or any(s <= 0 or s % p for s in self.image_size):
            raise ValueError(f"Mem4DConfig.image_size must be (H, W) multiples of the patch size {p}, got {self.image_size}")
        for name, cls in _NESTED_FIELDS.items():
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"Mem4DConfig.{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")

    # ----- variant switches -----
    @property
    def use_tca(self) -> bool:
        return self.variant != "no_tca"

    @property
    def use_tdm(self) -> bool:
        return self.variant in ("full", "no_psm", "no_tca")

    @property
    def use_psm(self) -> bool:
        return self.variant in ("full", "no_tdm", "no_tca")

    @property
    def use_unified(self) -> bool:
        return self.variant == "unified"

    @property
    def history(self) -> int:
        """Past frames whose projected encoder features the stream state keeps."""
        return max(self.tca.window if self.use_tca else 0, self.tdm.num_past if self.use_tdm else 0)

    def with_variant(self, variant: str) -> Mem4DConfig:
        """A copy with another variant."""
        return dataclasses.replace(self, variant=variant)

    # ----- presets -----
    @classmethod
    def tiny(cls, variant: str = "full", **overrides: Any) -> Mem4DConfig:
        """Unit-test preset: 64 px images, encoder 4x192, D=128, one layer per module, L=1, N_s=8."""
        cfg = cls(
            dim=128,
            num_heads=4,
            image_size=(64, 64),
            variant=variant,
            encoder=EncoderConfig(width=192, depth=4, num_heads=3),
            tca=TCAConfig(window=5, num_layers=1),
            tdm=TDMConfig(num_past=2, levels=4, radius=4, num_layers=1),
            psm=PSMConfig(capacity=8, num_layers=1),
            decoder=DecoderConfig(num_stages=1),
            heads=HeadsConfig(dpt_features=32, dpt_layer_dims=(16, 32, 64, 128), dpt_hidden=16, dpt_full_res=False,
                              camera_hidden=128),
            unified=UnifiedConfig(num_state_tokens=64),
        )
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def small(cls, variant: str = "full", **overrides: Any) -> Mem4DConfig:
        """CPU preset: 256x192 images, ViT-S encoder (12x384), D=384, 2 layers per module, L=2, N_s=16."""
        cfg = cls(
            dim=384,
            num_heads=6,
            image_size=(192, 256),
            variant=variant,
            encoder=EncoderConfig(width=384, depth=12, num_heads=6),
            tca=TCAConfig(window=5, num_layers=2),
            tdm=TDMConfig(num_past=2, levels=4, radius=4, num_layers=2),
            psm=PSMConfig(capacity=16, num_layers=2),
            decoder=DecoderConfig(num_stages=2),
            heads=HeadsConfig(dpt_features=64, dpt_layer_dims=(32, 64, 128, 256), dpt_hidden=16, dpt_full_res=False,
                              camera_hidden=384),
            unified=UnifiedConfig(num_state_tokens=192),
        )
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def paper(cls, variant: str = "full", extras: bool = False, **overrides: Any) -> Mem4DConfig:
        """The paper's model: 512x384, ViT-L encoder (CUT3R), D=768, 12 heads, 4 layers, L=6, N_s=100.

        As the paper describes it: no motion head, so the objective is Eq. 10 exactly (the
        motion term needs the head's output), and E_p reads the pointmap with its gradient
        (trained end to end). Where the paper is silent the project's choices hold
        (docs/ARCHITECTURE.md, "Where the code departs from the paper"); the PSM's readout
        times are clamped at 47 frames, the longest distance the paper's 48-frame stage-2
        clips show. ``extras=True`` adds the project's extras in one switch: the motion head
        (and with it the motion term of the objective). In a recipe:
        ``model.overrides: {heads: {motion: true}}``.
        """
        cfg = cls(variant=variant, psm=PSMConfig(max_distance=47), heads=HeadsConfig(motion=extras))
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    @classmethod
    def preset(cls, name: str, variant: str = "full") -> Mem4DConfig:
        """``preset("tiny" | "small" | "paper")``."""
        builders = {"tiny": cls.tiny, "small": cls.small, "paper": cls.paper}
        if name not in builders:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(builders)}")
        return builders[name](variant=variant)


_NESTED_FIELDS: dict[str, type] = {
    "encoder": EncoderConfig,
    "tca": TCAConfig,
    "tdm": TDMConfig,
    "psm": PSMConfig,
    "decoder": DecoderConfig,
    "heads": HeadsConfig,
    "unified": UnifiedConfig,
}
_NESTED: dict[tuple[str, str], type] = {("Mem4DConfig", k): v for k, v in _NESTED_FIELDS.items()}
