"""`SceneMemoryConfig`: every policy knob of the scene memory, with scale-agnostic defaults.

Lengths ending in ``_rel`` are multiples of the running scene scale s (median observed depth),
so the same config works for a room in metres and a reconstruction in arbitrary units. The
config is validated in ``__post_init__`` and round-trips through JSON (`to_dict`/`from_dict`).

Example::

    >>> cfg = SceneMemoryConfig(voxel_size=0.02, working_window=4)
    >>> SceneMemoryConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["SceneMemoryConfig"]


@dataclass
class SceneMemoryConfig:
    # --- scene scale and static layer -------------------------------------------------------
    voxel_size: float | None = None  # absolute voxel edge; None -> voxel_size_rel * s
    voxel_size_rel: float = 0.005  # voxel edge as a multiple of s (when voxel_size is None)
    scale_warmup_frames: int = 10  # voxel size follows s for this many frames, then is fixed
    scale_history: int = 512  # s = median of the per-frame median depths of the last N frames
    conf_threshold: float = 0.0  # pixels with conf < this are not fused (tau_c)
    static_mode: str = "points"  # "points" (voxel-hashed fused points) or "tsdf"
    carving: str = "auto"  # "auto" (only when no dynamic mask), "always", "never"
    carve_ratio: float = 0.7  # render a voxel only if hits / (hits + misses) >= this
    carve_margin_rel: float = 0.01  # a miss needs the ray to pass this far (x s) behind the voxel ...
    carve_margin_voxels: float = 1.0  # ... plus this many voxel edges ...
    carve_margin_depth: float = 0.02  # ... plus this fraction of the observed depth (noise)
    carve_budget: float = 4.0  # at most this many in-frustum voxels per pixel are tested per write
    block_size: int = 16  # voxels per block edge (culling, eviction and retrieval votes)
    ring_size: int = 16  # frame ids kept per block for vote-based retrieval
    max_voxels: int | None = 4_000_000  # evict least-recently-seen blocks beyond this
    evict_fraction: float = 0.1  # evict down to (1 - this) * max_voxels
    tsdf_trunc_voxels: float = 3.0  # TSDF truncation band, in voxel edges
    render_near_rel: float = 0.01  # voxels nearer than this (x s) are not drawn
    render_surface_voxels: float = 1.5  # voxels this close (in voxel edges) behind a pixel's nearest
    #   one belong to the same surface; the one projecting nearest the pixel centre is drawn
    fill_holes: bool = True  # fill single-pixel splat holes from the nearest 8-neighbour
    # --- frame bank and working window --------------------------------------------------------
    thumb_factor: int = 4  # thumbnails are 1/thumb_factor of full resolution
    working_window: int = 8  # W_work: recent frames kept at full resolution, not retrieved
    # --- episodic keyframes -------------------------------------------------------------------
    keyframe_overlap: float = 0.5  # tau_kf: promote when max overlap with keyframes < this
    keyframe_photometric: float = 0.15  # tau_d: promote when mean |rgb - last kf| > this
    keyframe_on_subject_event: bool = True
    max_keyframes: int = 64  # K_max
    keyframe_samples: int = 256  # points of a frame used for keyframe overlap tests
    # --- retrieval ----------------------------------------------------------------------------
    retrieval_mode: str = "visibility"  # "visibility" (static-layer votes) or "frustum"
    retrieval_samples: int = 512  # visible surface points that score candidate frames
    retrieval_candidates: int = 48  # frames shortlisted by votes before exact scoring
    retrieval_min_gain: float = 0.02  # stop the greedy selection below this marginal gain
    retrieval_max_mutual_overlap: float = 0.9  # never select two frames overlapping more
    retrieval_min_coverage: float = 0.05  # below this static coverage, fall back to frustum mode
    frustum_near_rel: float = 0.05
    frustum_far_rel: float = 3.0
    visibility_margin_rel: float = 0.05  # depth-test tolerance (x s) against stored thumbnails
    # --- subjects -----------------------------------------------------------------------------
    subjects_enabled: bool = True
    cluster_radius_rel: float = 0.02  # 3D neighbour radius (x s) for mask-only detections
    min_subject_pixels: int = 12
    subject_merge_gap_rel: float = 0.05  # mask components closer than this (x s) are one subject
    assoc_w_app: float = 0.6  # w_a
    assoc_w_motion: float = 0.4  # w_p
    assoc_gate: float = 3.0  # g: Mahalanobis distance at which the motion cost saturates
    assoc_threshold: float = 0.5  # tau_assoc: accept a match when its cost is below this
    embed_alpha: float = 0.3  # alpha in e <- normalise(e + alpha * g * (f - e))
    hist_bins: int = 4  # per channel, joint RGB histogram -> hist_bins^3 dims
    max_exemplars: int = 8
    exemplar_angle_deg: float = 30.0
    n_miss: int = 10  # frames in view, not occluded, not detected before "lost"
    subject_ttl: int | None = None  # frames out of view/occluded before "lost"; None = never
    reid_lost: bool = False  # also associate against lost records
    accel_noise_rel: float = 0.001  # Kalman process noise: acceleration std (x s per frame^2)
    meas_noise_rel: float = 0.01  # Kalman measurement noise std (x s)
    init_vel_std_rel: float = 0.05  # prior velocity std (x s per frame)
    depth_completion: bool = True  # push surface centroids back by 2/3 of the lateral radius
    track_len: int = 512  # detections kept per subject track (oldest dropped)
    seed: int = 0

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            if not getattr(self, name) > 0:
                raise ValueError(f"SceneMemoryConfig.{name} must be > 0, got {getattr(self, name)!r}")

        def unit(name: str) -> None:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SceneMemoryConfig.{name} must be in [0, 1], got {getattr(self, name)!r}")

        if self.voxel_size is not None:
            positive("voxel_size")
        if not (self.subject_merge_gap_rel >= 0 and math.isfinite(self.subject_merge_gap_rel)):
            raise ValueError(f"SceneMemoryConfig.subject_merge_gap_rel must be >= 0 (0: no merging), got {self.subject_merge_gap_rel!r}")
        for name in ("voxel_size_rel", "carve_margin_rel", "frustum_near_rel", "frustum_far_rel",
                     "cluster_radius_rel", "assoc_gate", "accel_noise_rel", "meas_noise_rel",
                     "init_vel_std_rel", "render_near_rel", "tsdf_trunc_voxels", "exemplar_angle_deg", "carve_budget"):
            positive(name)
        for name in ("scale_warmup_frames", "scale_history", "block_size", "ring_size", "thumb_factor",
                     "max_keyframes", "keyframe_samples", "retrieval_samples", "retrieval_candidates",
                     "hist_bins", "max_exemplars", "n_miss", "track_len"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"SceneMemoryConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("carve_ratio", "keyframe_overlap", "retrieval_max_mutual_overlap", "evict_fraction",
                     "embed_alpha", "retrieval_min_coverage"):
            unit(name)
        if self.working_window < 0:
            raise ValueError("SceneMemoryConfig.working_window must be >= 0")
        if self.static_mode not in ("points", "tsdf"):
            raise ValueError(f"static_mode must be 'points' or 'tsdf', got {self.static_mode!r}")
        if self.carving not in ("auto", "always", "never"):
            raise ValueError(f"carving must be 'auto', 'always' or 'never', got {self.carving!r}")
        if self.retrieval_mode not in ("visibility", "frustum"):
            raise ValueError(f"retrieval_mode must be 'visibility' or 'frustum', got {self.retrieval_mode!r}")
        if self.frustum_far_rel <= self.frustum_near_rel:
            raise ValueError("frustum_far_rel must exceed frustum_near_rel")
        if self.max_voxels is not None and self.max_voxels < 1:
            raise ValueError("max_voxels must be None or >= 1")
        if self.subject_ttl is not None and self.subject_ttl < 1:
            raise ValueError("subject_ttl must be None (never expire) or >= 1")
        if self.block_size > 64:
            raise ValueError("block_size must be <= 64")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SceneMemoryConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError (they are probably typos)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SceneMemoryConfig keys: {sorted(unknown)}")
        return cls(**d)
