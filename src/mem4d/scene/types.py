"""Data types of the scene memory: what goes in (`Observation`, `Query`) and what comes out.

Conventions: OpenCV cameras, ``c2w`` 4x4 camera-to-world, ``K`` 3x3 in pixels, images float
in [0, 1] of shape (H, W, 3), depth = camera z with 0 meaning invalid, integer frame time ``t``
(non-decreasing across writes). Arrays may be numpy arrays or torch tensors; the memory
converts them to numpy when it validates them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "QUERY_PARTS",
    "SUBJECT_STATUSES",
    "Conditioning",
    "DetectionReport",
    "Exemplar",
    "FrameRef",
    "MemoryStats",
    "Observation",
    "Query",
    "StaticRender",
    "SubjectEvent",
    "SubjectView",
    "WriteReport",
]

SUBJECT_STATUSES = ("visible", "occluded", "out_of_view", "missing", "lost")
QUERY_PARTS = ("static", "frames", "episodic", "working", "subjects")


@dataclass
class Observation:
    """One frame written into the memory by the world-model loop.

    Attributes:
        t: integer frame time (non-decreasing across writes).
        rgb: (H, W, 3) float in [0, 1] (uint8 is accepted and divided by 255).
        K: (3, 3) intrinsics in pixels.
        c2w: (4, 4) camera-to-world pose.
        depth: (H, W) camera z-depth, 0 or non-finite = invalid. Either this or ``points_world``.
        points_world: (H, W, 3) world points of every pixel (non-finite = invalid).
        conf: (H, W) confidence; pixels below the config's ``conf_threshold`` are not fused.
        dynamic_mask: (H, W) bool, True on independently moving pixels (never fused as static).
        instance_ids: (H, W) int, -1 = background, >= 0 = subject / tracker id from a segmenter.
        features: (h, w, C) optional dense features (e.g. DINOv2) for subject embeddings.
        latent: opaque generator payload (e.g. a VAE latent) stored by handle.
        source: "observed" or "generated".
        timestamp_s: optional wall-clock time in seconds.
    """

    t: int
    rgb: Any
    K: Any
    c2w: Any
    depth: Any = None
    points_world: Any = None
    conf: Any = None
    dynamic_mask: Any = None
    instance_ids: Any = None
    features: Any = None
    latent: Any = None
    source: str = "observed"
    timestamp_s: float | None = None


@dataclass
class Query:
    """The view(s) a generator will produce next.

    Attributes:
        c2w: (4, 4) pose, or (T, 4, 4) for a trajectory (pose i is at time ``t_query + i``).
        K: (3, 3) intrinsics, or (T, 3, 3).
        size: (H, W) of the rendered views.
        t_query: integer time of the (first) query view.
        trajectory: alias for a (T, 4, 4) ``c2w``; give one of the two.
        k_frames: how many past frames to retrieve.
        exclude_recent: frames younger than this many writes are not retrieved (they are the
            working window); None uses the config's ``working_window``.
        recency_penalty: lambda in score = overlap - lambda * (t_query - t_i) / max(t_query, 1).
        min_overlap: retrieved frames must see at least this share of the query view.
        want: which parts of `Conditioning` to compute.
        render_per_source: also forward-warp every retrieved frame into the query view
            (GEN3C-style per-source renders).
        retrieval_mode: "visibility" or "frustum"; None uses the config's mode.
    """

    c2w: Any = None
    K: Any = None
    size: tuple[int, int] = (96, 128)
    t_query: int = 0
    trajectory: Any = None
    k_frames: int = 8
    exclude_recent: int | None = None
    recency_penalty: float = 0.2
    min_overlap: float = 0.3
    want: tuple[str, ...] = QUERY_PARTS
    render_per_source: bool = False
    retrieval_mode: str | None = None


@dataclass
class StaticRender:
    """The static layer rendered at the query view(s).

    Attributes:
        rgb: (T, H, W, 3) float32 colours (0 where nothing was drawn).
        depth: (T, H, W) float32 camera z (0 where nothing was drawn).
        mask: (T, H, W) bool, True where a voxel was drawn.
        source_t: (T, H, W) int32, newest frame time that fed the drawn voxel, -1 if none.
        coverage: mean of ``mask`` over all views.
        per_source: with ``render_per_source``, one dict per retrieved frame with keys
            ``t``, ``rgb`` (T, H, W, 3), ``mask`` (T, H, W).
    """

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    source_t: np.ndarray
    coverage: float
    per_source: list[dict[str, Any]] | None = None


@dataclass
class FrameRef:
    """A stored frame handed to the generator.

    Attributes:
        frame_id: index in the frame bank (write order).
        t: frame time.
        c2w, K: (4, 4) pose and (3, 3) intrinsics at the stored image's resolution.
        score: retrieval score (overlap minus recency penalty); 0 for working/episodic refs.
        overlap: share of the query view this frame sees (retrieval only).
        rgb_or_thumb: (h, w, 3) float32; full resolution for keyframes and the working window,
            a thumbnail otherwise.
        depth: (h, w) float32 matching ``rgb_or_thumb`` (thumbnails hold a max-pooled depth).
        latent_handle: frame id under which the generator latent is stored, None if none.
        latent: the stored latent itself (or None).
        is_keyframe: whether the frame is currently an episodic keyframe.
        source: "observed" or "generated".
        gain: marginal coverage gain when it was selected (retrieval only).
    """

    frame_id: int
    t: int
    c2w: np.ndarray
    K: np.ndarray
    score: float = 0.0
    overlap: float = 0.0
    rgb_or_thumb: np.ndarray | None = None
    depth: np.ndarray | None = None
    latent_handle: int | None = None
    latent: Any = None
    is_keyframe: bool = False
    source: str = "observed"
    gain: float = 0.0


@dataclass
class Exemplar:
    """A stored crop of a subject: (h, w, 3) ``crop``, (h, w) bool ``mask``, time, view direction."""

    t: int
    crop: np.ndarray
    mask: np.ndarray
    view_dir: np.ndarray
    bbox: tuple[int, int, int, int]  # (u0, v0, u1, v1) in the source image, exclusive ends


@dataclass
class SubjectView:
    """A subject record as seen from a query time (and optionally a query camera).

    Attributes:
        id: persistent subject id.
        status: one of "visible", "occluded", "out_of_view", "missing", "lost".
        first_seen_t, last_seen_t: frame times of the first and the latest detection.
        embedding: (D,) unit-norm appearance embedding.
        exemplars: up to ``max_exemplars`` crops from distinct view directions.
        track: dict with ``t`` (n,), ``centroid`` (n, 3), ``extent`` (n, 3) of past detections.
        pred_center_world: (3,) constant-velocity prediction at the requested time.
        pred_cov: (3, 3) its covariance (grows with the time since last seen).
        velocity: (3,) estimated world velocity per frame.
        extent: (3,) half-size of the subject's world box.
        pred_uvz: (3,) projected centre (u, v) and depth in the query view, or None.
        in_fov: predicted centre inside the query image.
        occluded_by_static: the static layer is in front of the predicted centre in the query view.
        pred_bbox_2d: (u0, v0, u1, v1) projected box, clipped to the image, or None.
        feature_embedding: (C,) unit-norm masked-mean of the dense ``features``, when given.
    """

    id: int
    status: str
    first_seen_t: int
    last_seen_t: int
    embedding: np.ndarray
    exemplars: list[Exemplar]
    track: dict[str, np.ndarray]
    pred_center_world: np.ndarray
    pred_cov: np.ndarray
    velocity: np.ndarray
    extent: np.ndarray
    pred_uvz: np.ndarray | None = None
    in_fov: bool | None = None
    occluded_by_static: bool | None = None
    pred_bbox_2d: tuple[float, float, float, float] | None = None
    feature_embedding: np.ndarray | None = None


@dataclass
class SubjectEvent:
    """``kind`` in new / entered / exited / occluded / reidentified / lost for ``subject_id``.

    For "reidentified", ``frames_unseen`` is how long the record went without a detection.
    """

    kind: str
    subject_id: int
    t: int
    frames_unseen: int = 0


@dataclass
class DetectionReport:
    """One subject detection of a write and the record it was assigned to."""

    subject_id: int
    centroid: np.ndarray
    extent: np.ndarray
    n_pixels: int
    bbox: tuple[int, int, int, int]
    instance_id: int | None
    cost: float
    is_new: bool


@dataclass
class WriteReport:
    """What one `SceneMemory.write` did."""

    t: int
    frame_id: int
    voxels_added: int = 0
    voxels_updated: int = 0
    voxels_missed: int = 0
    voxels_carved: int = 0
    voxels_evicted: int = 0
    is_keyframe: bool = False
    keyframe_reason: str | None = None
    keyframes_evicted: list[int] = field(default_factory=list)
    events: list[SubjectEvent] = field(default_factory=list)
    detections: list[DetectionReport] = field(default_factory=list)
    scene_scale: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class MemoryStats:
    """Counts, sizes and timings of the memory."""

    n_frames: int
    n_voxels: int
    n_renderable_voxels: int
    n_blocks: int
    n_keyframes: int
    n_subjects: int
    subjects_by_status: dict[str, int]
    scene_scale: float
    voxel_size: float
    bytes: int
    last_t: int | None
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Conditioning:
    """Everything `SceneMemory.query` returns; generators consume the parts they need."""

    static: StaticRender | None
    frames: list[FrameRef]
    episodic: list[FrameRef]
    working: list[FrameRef]
    subjects: list[SubjectView]
    meta: dict[str, Any] = field(default_factory=dict)
