"""`SceneMemory`: the scene memory a video world model writes every frame and queries per view.

It composes four stores behind one `write` (SCENE_MEMORY.md 3.1):

- the static layer (`static_layer.StaticLayer`, or `tsdf.TSDFLayer`): voxel-hashed fused points
  of confident, non-moving pixels, with free-space carving when no dynamic mask is given;
- the frame bank (`frame_bank.FrameBank`): every frame's pose, time, thumbnail and latent;
- episodic keyframes (`keyframes.KeyframeSet`);
- subject records (`subjects.SubjectTracker`);

and one `query` that returns everything a generator might condition on (`types.Conditioning`):
a static render, retrieved frames, keyframes, the working window and subjects predicted to
the query time. Thresholds are multiples of the running scene scale s (median observed depth).

Writes are incremental: O(pixels) fusion plus O(voxels in the frustum) carving; nothing is
rebuilt from past frames (during the first ``scale_warmup_frames`` frames, while the voxel
size still follows s, the at most that many buffered frames are re-fused if s moves by more
than 10%). A loop the model closes (`close_loop`) moves what is stored instead of re-fusing it:
O(voxels + frames), once per closure. Every input is validated before anything is changed: a bad pose, intrinsics or
shape raises ValueError and leaves the memory as it was.

Example::

    >>> import numpy as np
    >>> from mem4d.scene import SceneMemory, Observation, Query
    >>> K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    >>> mem = SceneMemory()
    >>> rep = mem.write(Observation(t=0, rgb=np.full((48, 64, 3), 0.5), K=K, c2w=np.eye(4),
    ...                             depth=np.full((48, 64), 2.0)))
    >>> cond = mem.query(Query(c2w=np.eye(4), K=K, size=(48, 64), t_query=1))
    >>> cond.static.rgb.shape, cond.static.coverage > 0.9
    ((1, 48, 64, 3), True)
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .camera_utils import (
    backproject_depth,
    invert_c2w,
    to_numpy,
    transform_points,
    validate_c2w,
    validate_K,
)
from .config import SceneMemoryConfig
from .frame_bank import FrameBank
from .keyframes import KeyframeSet
from .loop_correction import correction_shares, spread_correction
from .retrieval import (
    candidate_coverage,
    frustum_query_samples,
    greedy_select,
    surface_samples,
    vote_candidates,
)
from .static_layer import IntegrateResult, RenderResult, StaticLayer, zbuffer_splat
from .subjects import SubjectTracker, detect_subjects
from .tsdf import TSDFLayer
from .types import (
    QUERY_PARTS,
    Conditioning,
    FrameRef,
    MemoryStats,
    Observation,
    Query,
    StaticRender,
    SubjectView,
    WriteReport,
)

__all__ = ["SceneMemory"]

_KEYFRAME_EVENTS = ("new", "entered", "exited", "reidentified")


@dataclass
class _Frame:
    """A validated observation: numpy arrays, derived depth/points and pixel masks."""

    t: int
    rgb: np.ndarray  # (H, W, 3) float32
    K: np.ndarray
    c2w: np.ndarray
    depth: np.ndarray  # (H, W) float32, 0 = invalid
    pts: np.ndarray  # (H, W, 3) world points
    valid: np.ndarray  # (H, W) bool
    fuse: np.ndarray  # (H, W) bool: valid, confident and static
    dynamic: np.ndarray | None
    instance_ids: np.ndarray | None
    conf_ok: np.ndarray
    features: np.ndarray | None
    has_mask: bool
    latent: Any
    source: str

    @property
    def size(self) -> tuple[int, int]:
        return self.depth.shape  # type: ignore[return-value]


@dataclass
class _Query:
    c2w: np.ndarray  # (T, 4, 4)
    K: np.ndarray  # (T, 3, 3)
    size: tuple[int, int]
    t_query: int
    k_frames: int
    exclude_recent: int
    recency_penalty: float
    min_overlap: float
    want: tuple[str, ...]
    render_per_source: bool
    mode: str


def _check_image(name: str, arr: Any, shape: tuple[int, ...], *, allow_nonfinite: bool = False) -> np.ndarray:
    a = to_numpy(arr)
    if a.shape != shape:
        raise ValueError(f"Observation.{name} must have shape {shape}, got {tuple(a.shape)}")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"Observation.{name} must be numeric, got dtype {a.dtype}")
    if not allow_nonfinite and a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"Observation.{name} contains NaN or inf")
    return a


class SceneMemory:
    """Scene memory for video world models (see the module docstring)."""

    def __init__(self, config: SceneMemoryConfig | None = None) -> None:
        self.config = config if config is not None else SceneMemoryConfig()
        self.reset()

    # ================================================================== state
    def reset(self) -> None:
        """Forgets everything (the config is kept)."""
        cfg = self.config
        self.static: StaticLayer = TSDFLayer(cfg) if cfg.static_mode == "tsdf" else StaticLayer(cfg)
        if cfg.voxel_size is not None:
            self.static.voxel_size = float(cfg.voxel_size)
        self.bank = FrameBank(cfg.thumb_factor)
        self.keyframes = KeyframeSet(cfg)
        self.tracker = SubjectTracker(cfg)
        self._scale_hist: deque[float] = deque(maxlen=cfg.scale_history)
        self._scale: float | None = None
        self._last_t: int | None = None
        self._working: deque[int] = deque()
        self._warmup: list[tuple[_Frame, int]] = []
        self._voxel_fixed = cfg.voxel_size is not None  # True once the warm-up is over
        self._timing_sum = {"write": 0.0, "query": 0.0}
        self._timing_n = {"write": 0, "query": 0}
        self._timing_last: dict[str, float] = {}

    @property
    def scene_scale(self) -> float | None:
        """Running scene scale s: median of the recent frames' median valid depth."""
        return self._scale

    @property
    def voxel_size(self) -> float | None:
        return self.static.voxel_size

    def _s(self) -> float:
        return self._scale if self._scale is not None else 1.0

    # ================================================================== validation
    def _prepare(self, obs: Observation) -> _Frame:
        """Validates and converts an observation; raises ValueError without touching the memory."""
        if not isinstance(obs, Observation):
            raise ValueError(f"write() takes an Observation, got {type(obs).__name__}")  # noqa: TRY004 (the contract: bad input is a ValueError)
        t = obs.t
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise ValueError(f"Observation.t must be an integer frame index, got {t!r}")  # noqa: TRY004 (the contract: bad input is a ValueError)
        t = int(t)
        if self._last_t is not None and t < self._last_t:
            raise ValueError(f"Observation.t must not decrease: got {t} after {self._last_t}")
        if obs.source not in ("observed", "generated"):
            raise ValueError(f"Observation.source must be 'observed' or 'generated', got {obs.source!r}")
        rgb = to_numpy(obs.rgb)
        if rgb is None or rgb.ndim != 3 or rgb.shape[-1] != 3:
            raise ValueError(f"Observation.rgb must have shape (H, W, 3), got {None if rgb is None else tuple(rgb.shape)}")
        H, W = rgb.shape[:2]
        if H < 1 or W < 1:
            raise ValueError("Observation.rgb is empty")
        if rgb.dtype == np.uint8:
            rgb = rgb.astype(np.float32) / 255.0
        else:
            rgb = _check_image("rgb", rgb, (H, W, 3)).astype(np.float32)
            if rgb.min() < -1e-3 or rgb.max() > 1 + 1e-3:
                raise ValueError("Observation.rgb must be in [0, 1] (or uint8)")
            rgb = np.clip(rgb, 0.0, 1.0)
        K = validate_K(obs.K, "Observation.K")
        c2w = validate_c2w(obs.c2w, "Observation.c2w")
        if obs.depth is None and obs.points_world is None:
            raise ValueError("Observation needs depth (H, W) or points_world (H, W, 3)")
        depth = None
        if obs.depth is not None:
            depth = _check_image("depth", obs.depth, (H, W), allow_nonfinite=True).astype(np.float64)
            finite = np.isfinite(depth)
            if (depth[finite] < 0).any():
                raise ValueError("Observation.depth must be >= 0 (0 marks invalid pixels)")
            depth = np.where(finite, depth, 0.0)
        if obs.points_world is not None:
            pts = _check_image("points_world", obs.points_world, (H, W, 3), allow_nonfinite=True).astype(np.float64)
            pvalid = np.isfinite(pts).all(axis=-1)
            pts = np.where(pvalid[..., None], pts, 0.0)
            zc = transform_points(invert_c2w(c2w), pts.reshape(-1, 3))[:, 2].reshape(H, W)
            if depth is None:
                depth = np.where(pvalid & (zc > 0), zc, 0.0)
            valid = pvalid & (depth > 0) & (zc > 0)
        else:
            pts = backproject_depth(depth, K, c2w)
            valid = depth > 0
        conf_ok = np.ones((H, W), bool)
        if obs.conf is not None:
            conf = _check_image("conf", obs.conf, (H, W), allow_nonfinite=True)
            conf_ok = np.isfinite(conf) & (conf >= self.config.conf_threshold)
        dynamic = None
        if obs.dynamic_mask is not None:
            dynamic = _check_image("dynamic_mask", obs.dynamic_mask, (H, W)).astype(bool)
        inst = None
        if obs.instance_ids is not None:
            inst = _check_image("instance_ids", obs.instance_ids, (H, W))
            if inst.dtype.kind not in "biu":
                raise ValueError(f"Observation.instance_ids must be integers (-1 = background), got {inst.dtype}")
            inst = inst.astype(np.int64)
        features = None
        if obs.features is not None:
            features = to_numpy(obs.features)
            if features.ndim != 3 or features.shape[0] < 1 or features.shape[1] < 1:
                raise ValueError(f"Observation.features must have shape (h, w, C), got {tuple(features.shape)}")
            if features.dtype.kind != "f" or not np.isfinite(features).all():
                raise ValueError("Observation.features must be finite floats")
        moving = np.zeros((H, W), bool)
        if dynamic is not None:
            moving |= dynamic
        if inst is not None:
            moving |= inst >= 0
        fuse = valid & conf_ok & ~moving
        return _Frame(t=t, rgb=rgb, K=K, c2w=c2w, depth=depth.astype(np.float32), pts=pts, valid=valid, fuse=fuse,
                      dynamic=dynamic, instance_ids=inst, conf_ok=conf_ok, features=features,
                      has_mask=dynamic is not None or inst is not None, latent=obs.latent, source=obs.source)

    def _prepare_query(self, q: Query) -> _Query:
        if not isinstance(q, Query):
            raise ValueError(f"query() takes a Query, got {type(q).__name__}")  # noqa: TRY004 (the contract: bad input is a ValueError)
        if (q.c2w is None) == (q.trajectory is None):
            raise ValueError("Query needs exactly one of c2w (4,4)/(T,4,4) or trajectory (T,4,4)")
        c2w = validate_c2w(q.c2w if q.c2w is not None else q.trajectory, "Query.c2w", batch=True)
        K = validate_K(q.K, "Query.K", batch=True)
        if K.shape[0] == 1 and c2w.shape[0] > 1:
            K = np.repeat(K, c2w.shape[0], axis=0)
        if K.shape[0] != c2w.shape[0]:
            raise ValueError(f"Query.K has {K.shape[0]} matrices for {c2w.shape[0]} poses")
        try:
            H, W = (int(x) for x in q.size)
        except (TypeError, ValueError):
            raise ValueError(f"Query.size must be (H, W), got {q.size!r}") from None
        if H < 1 or W < 1:
            raise ValueError(f"Query.size must be positive, got {q.size!r}")
        if isinstance(q.t_query, bool) or not isinstance(q.t_query, (int, np.integer)):
            raise ValueError(f"Query.t_query must be an integer, got {q.t_query!r}")  # noqa: TRY004 (the contract: bad input is a ValueError)
        excl = self.config.working_window if q.exclude_recent is None else q.exclude_recent
        for name, val in (("k_frames", q.k_frames), ("exclude_recent", excl)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 0:
                raise ValueError(f"Query.{name} must be a non-negative integer, got {val!r}")
        for name, val, hi in (("recency_penalty", q.recency_penalty, np.inf), ("min_overlap", q.min_overlap, 1.0)):
            if isinstance(val, bool) or not isinstance(val, (int, float, np.number)) or not 0.0 <= val <= hi:
                raise ValueError(f"Query.{name} must be a number in [0, {hi}], got {val!r}")
        want = tuple(q.want)
        bad = set(want) - set(QUERY_PARTS)
        if bad:
            raise ValueError(f"Query.want has unknown parts {sorted(bad)}; choose from {QUERY_PARTS}")
        mode = q.retrieval_mode or self.config.retrieval_mode
        if mode not in ("visibility", "frustum"):
            raise ValueError(f"Query.retrieval_mode must be 'visibility' or 'frustum', got {mode!r}")
        return _Query(c2w=c2w, K=K, size=(H, W), t_query=int(q.t_query), k_frames=int(q.k_frames),
                      exclude_recent=int(excl), recency_penalty=float(q.recency_penalty),
                      min_overlap=float(q.min_overlap), want=want, render_per_source=bool(q.render_per_source),
                      mode=mode)

    # ================================================================== write
    def write(self, obs: Observation) -> WriteReport:
        """Adds one frame to every store; returns what changed (see `WriteReport`)."""
        t0 = time.perf_counter()
        f = self._prepare(obs)  # raises before any change
        cfg = self.config
        timings: dict[str, float] = {"validate": (time.perf_counter() - t0) * 1e3}
        s = self._update_scale(f)
        fid = self.bank.add(f.t, f.c2w, f.K, f.rgb, f.depth, f.source, f.latent)
        report = WriteReport(t=f.t, frame_id=fid, scene_scale=s)
        self._last_t = f.t

        t1 = time.perf_counter()
        if self._maybe_refit_voxel_size(s):
            for wf, wfid in self._warmup:
                self._fuse(wf, wfid, s)
        if fid < cfg.scale_warmup_frames and not self._voxel_fixed:
            self._warmup.append((f, fid))
        else:
            self._voxel_fixed = True  # voxel size fixed from now on
            self._warmup = []
        res_carve, res_int = self._fuse(f, fid, s)
        report.voxels_added, report.voxels_updated = res_int.added, res_int.updated
        report.voxels_missed, report.voxels_carved = res_carve.missed, res_carve.carved
        report.voxels_evicted = self.static.evict_if_needed()
        timings["static"] = (time.perf_counter() - t1) * 1e3

        t2 = time.perf_counter()
        if cfg.subjects_enabled:
            dets = detect_subjects(f.rgb, f.pts, f.depth, f.valid, f.dynamic, f.instance_ids, f.conf_ok, f.features,
                                   f.K, f.c2w, s, cfg)
            report.events, report.detections = self.tracker.step(dets, f.t, f.c2w, f.K, f.size, f.depth, s)
        timings["subjects"] = (time.perf_counter() - t2) * 1e3

        t3 = time.perf_counter()
        pts_s, cols_s = self._sample_static_points(f)
        event = any(e.kind in _KEYFRAME_EVENTS for e in report.events)
        promote, reason, _ = self.keyframes.decide(pts_s, cols_s, self.bank, s, event)
        if promote:
            report.is_keyframe, report.keyframe_reason = True, reason
            report.keyframes_evicted = self.keyframes.add(fid, pts_s, self.bank, s)
            for old in report.keyframes_evicted:
                if old not in self._working:
                    self.bank.release_full(old)
        self._working.append(fid)
        while len(self._working) > cfg.working_window:
            old = self._working.popleft()
            if old not in self.keyframes.samples:
                self.bank.release_full(old)
        timings["keyframes"] = (time.perf_counter() - t3) * 1e3
        timings["total"] = (time.perf_counter() - t0) * 1e3
        report.timings_ms = timings
        self._record_timing("write", timings["total"])
        return report

    def close_loop(self, t_key: int, t: int, correction: Any) -> int:
        """Spreads a loop closure's correction over what was written after frame ``t_key``.

        Call it when the model reports that frame ``t`` closed a loop onto frame ``t_key``
        (`FrameOutput.loop_keyframe` / ``loop_correction``), before frame t is written: frame t
        arrives already corrected, the frames written between ``t_key`` and t drifted by a growing
        share of the correction (`mem4d.scene.loop_correction`). Every store moves by the share of
        its time: the frame bank's poses (retrieval), the keyframes' surface samples, the static
        layer's voxels (by their mean observation time, merged where they meet; no frame is
        re-fused) and the subject records.

        Args:
            t_key: the frame the loop closed onto (nothing at or before it moves).
            t: the frame that closed it; must be later than every frame written so far.
            correction: (4, 4) world-side rigid correction (``cam2world_t = correction @ chained``).
        Returns:
            The number of frames re-posed.
        Raises:
            ValueError (nothing changed) on a bad correction or times.
        """
        for name, val in (("t_key", t_key), ("t", t)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)):
                raise ValueError(f"close_loop: {name} must be an integer frame index, got {val!r}")  # noqa: TRY004 (the contract: bad input is a ValueError)
        t_key, t = int(t_key), int(t)
        if t <= t_key:
            raise ValueError(f"close_loop: a loop closes onto an earlier frame, got t_key={t_key} for t={t}")
        if self._last_t is not None and self._last_t >= t:
            raise ValueError(f"close_loop: call it before frame {t} is written (frame {self._last_t} already is); "
                             "it re-poses the frames written before the one that closed the loop")
        C = validate_c2w(correction, "close_loop: correction")

        def motion(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return spread_correction(correction_shares(times, t_key, t), C)

        fids = np.flatnonzero(self.bank.t[: self.bank.n] > t_key)
        if fids.size == 0:
            return 0
        R, p = motion(self.bank.t[fids])
        self.bank.move(fids, R, p)
        for fid, Ri, pi in zip(fids, R, p):
            self.keyframes.move(int(fid), Ri, pi)
        for f, fid in self._warmup:  # frames buffered for a re-fuse while the voxel size settles: as re-posed in the bank
            moved = self.bank.c2w[fid] @ invert_c2w(f.c2w)
            f.pts = transform_points(moved, f.pts.reshape(-1, 3)).reshape(f.pts.shape)
            f.c2w = self.bank.c2w[fid].copy()
        self.static.move_voxels(*motion(self.static.t_obs[: self.static.n]))
        self.tracker.move(motion)
        return int(fids.size)

    def _update_scale(self, f: _Frame) -> float:
        d = f.depth[f.valid]
        if d.size:
            if d.size > 2048:  # the median of an even subsample is plenty for a scale
                d = d[:: d.size // 1024]
            self._scale_hist.append(float(np.median(d)))
            self._scale = float(np.median(np.asarray(self._scale_hist)))
        return self._s()

    def _maybe_refit_voxel_size(self, s: float) -> bool:
        """Sets the voxel size from s; during warm-up, True when it moved > 10% (re-fuse needed)."""
        cfg = self.config
        if cfg.voxel_size is not None:
            return False
        target = cfg.voxel_size_rel * s
        if self.static.voxel_size is None:
            self.static.voxel_size = target
            return False
        if not self._voxel_fixed and self._warmup and abs(target / self.static.voxel_size - 1.0) > 0.1:
            self.static.reset()
            self.static.voxel_size = target
            return True
        return False

    def _fuse(self, f: _Frame, fid: int, s: float) -> tuple[IntegrateResult, IntegrateResult]:
        cfg = self.config
        carve = cfg.static_mode == "tsdf" or cfg.carving == "always" or (cfg.carving == "auto" and not f.has_mask)
        res_carve = self.static.carve(f.depth, f.K, f.c2w, f.t, s) if carve else IntegrateResult()
        m = f.fuse.reshape(-1)
        pts = f.pts.reshape(-1, 3)[m]
        cols = f.rgb.reshape(-1, 3)[m]
        res_int = self.static.integrate(pts, cols, np.ones(len(pts)), f.t, fid, f.c2w, f.K)
        return res_carve, res_int

    def _sample_static_points(self, f: _Frame) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(f.fuse)
        if idx.size == 0:
            idx = np.flatnonzero(f.valid)
        n = self.config.keyframe_samples
        if idx.size > n:
            idx = idx[np.linspace(0, idx.size - 1, n).round().astype(np.int64)]
        return f.pts.reshape(-1, 3)[idx], f.rgb.reshape(-1, 3)[idx]

    def _record_timing(self, name: str, ms: float) -> None:
        self._timing_sum[name] += ms
        self._timing_n[name] += 1
        self._timing_last[name] = ms

    # ================================================================== read
    def _render_views(self, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int]) -> list[RenderResult]:
        s = self._s()
        return [self.static.render(c, k, size, s) for c, k in zip(c2w, K)]

    @staticmethod
    def _stack(renders: list[RenderResult]) -> StaticRender:
        mask = np.stack([r.mask for r in renders])
        return StaticRender(rgb=np.stack([r.rgb for r in renders]), depth=np.stack([r.depth for r in renders]),
                            mask=mask, source_t=np.stack([r.source_t for r in renders]),
                            coverage=float(mask.mean()) if mask.size else 0.0)

    def render(self, c2w: Any, K: Any, size: tuple[int, int], layers: tuple[str, ...] = ("static",)) -> StaticRender:
        """Renders the static layer at one (4,4) or several (T,4,4) poses; arrays are (T, H, W, ...)."""
        if tuple(layers) != ("static",):
            raise ValueError(f"render() supports layers=('static',) only, got {layers!r}")
        q = self._prepare_query(Query(c2w=c2w, K=K, size=size, t_query=self._last_t or 0, want=("static",)))
        return self._stack(self._render_views(q.c2w, q.K, q.size))

    def retrieve(self, q: Query) -> list[FrameRef]:
        """The retrieved frames of `query` alone (renders the static layer if the mode needs it)."""
        qq = self._prepare_query(q)
        renders = self._render_views(qq.c2w, qq.K, qq.size) if qq.mode == "visibility" else []
        return self._retrieve(qq, renders)[0]

    def _retrieve(self, q: _Query, renders: list[RenderResult]) -> tuple[list[FrameRef], str]:
        cfg = self.config
        n = self.bank.n
        if n == 0 or q.k_frames == 0:
            return [], q.mode
        s = self._s()
        allowed = np.ones(n, bool)
        if q.exclude_recent:
            allowed[max(0, n - q.exclude_recent):] = False
        if not allowed.any():
            return [], q.mode
        mode = q.mode
        samples = None
        if mode == "visibility":
            cover = float(np.mean([r.mask.mean() for r in renders])) if renders else 0.0
            if cover >= cfg.retrieval_min_coverage:
                samples = surface_samples(renders, q.c2w, q.K, cfg.retrieval_samples)
            if samples is None:
                mode = "frustum"
        if mode == "visibility":
            fids = vote_candidates(self.static, renders, allowed, cfg.retrieval_candidates)
            vis, c = candidate_coverage(self.bank, fids, samples, s, cfg, use_depth=True)
        else:
            samples = frustum_query_samples(q.c2w, q.K, q.size, s, cfg)
            fids = np.flatnonzero(allowed)
            vis, c = candidate_coverage(self.bank, fids, samples, s, cfg, use_depth=False)
        sel = greedy_select(self.bank, fids, vis, c, q.t_query, q.k_frames, q.recency_penalty, q.min_overlap, s, cfg)
        kf = set(self.keyframes.ids)
        refs = [self.bank.ref(x.fid, score=x.score, overlap=x.overlap, gain=x.gain, is_keyframe=x.fid in kf)
                for x in sel]
        return refs, mode

    def subjects(self, t: int | None = None, c2w: Any = None, K: Any = None,
                 size: tuple[int, int] | None = None) -> list[SubjectView]:
        """Every subject record predicted to time ``t`` (default: the last write), optionally projected."""
        t = self._last_t if t is None else int(t)
        if t is None:
            return []
        cam = None
        if c2w is not None or K is not None:
            if size is None:
                raise ValueError("subjects(): pass size=(H, W) with c2w and K")
            cam = (validate_c2w(c2w), validate_K(K), (int(size[0]), int(size[1])))
        out = []
        static_depth = None
        if cam is not None:
            static_depth = self.static.render(cam[0], cam[1], cam[2], self._s()).depth
        for rec in self.tracker.records.values():
            if cam is None:
                out.append(self.tracker.view(rec, t, self._s()))
            else:
                out.append(self.tracker.view(rec, t, self._s(), cam[0], cam[1], cam[2], static_depth))
        return out

    def query(self, q: Query) -> Conditioning:
        """Everything a generator may condition on for the query view(s) (see `Conditioning`)."""
        t0 = time.perf_counter()
        qq = self._prepare_query(q)
        timings: dict[str, float] = {}
        need_render = "static" in qq.want or ("frames" in qq.want and qq.mode == "visibility") or "subjects" in qq.want
        renders = self._render_views(qq.c2w, qq.K, qq.size) if need_render else []
        timings["render"] = (time.perf_counter() - t0) * 1e3
        static = self._stack(renders) if "static" in qq.want else None
        t1 = time.perf_counter()
        frames: list[FrameRef] = []
        mode_used = None
        if "frames" in qq.want:
            frames, mode_used = self._retrieve(qq, renders)
        timings["retrieve"] = (time.perf_counter() - t1) * 1e3
        if static is not None and qq.render_per_source:
            static.per_source = [self._warp_source(ref, qq) for ref in frames]
        kf = set(self.keyframes.ids)
        episodic = [self.bank.ref(fid, is_keyframe=True) for fid in sorted(kf)] if "episodic" in qq.want else []
        working = [self.bank.ref(fid, is_keyframe=fid in kf) for fid in self._working] if "working" in qq.want else []
        subjects: list[SubjectView] = []
        if "subjects" in qq.want:
            depth0 = renders[0].depth if renders else None
            subjects = [self.tracker.view(rec, qq.t_query, self._s(), qq.c2w[0], qq.K[0], qq.size, depth0)
                        for rec in self.tracker.records.values()]
        timings["total"] = (time.perf_counter() - t0) * 1e3
        self._record_timing("query", timings["total"])
        return Conditioning(static=static, frames=frames, episodic=episodic, working=working, subjects=subjects,
                            meta={"timings_ms": timings, "retrieval_mode": mode_used, "scene_scale": self._scale,
                                  "stats": self.stats()})

    def _warp_source(self, ref: FrameRef, q: _Query) -> dict[str, Any]:
        """Forward-warps a stored frame (colour + depth) into the query views (GEN3C-style source)."""
        H, W = q.size
        rgbs, masks = [], []
        d = ref.depth
        valid = d > 0
        pts = backproject_depth(d, ref.K, ref.c2w)[valid]
        cols = ref.rgb_or_thumb[valid]
        for c2w, K in zip(q.c2w, q.K):
            rgb = np.zeros((H, W, 3), np.float32)
            mask = np.zeros((H, W), bool)
            p = transform_points(invert_c2w(c2w), pts)
            z = p[:, 2]
            front = z > self.config.render_near_rel * self._s()
            if front.any():
                pf = p[front]
                u = K[0, 0] * pf[:, 0] / pf[:, 2] + K[0, 1] * pf[:, 1] / pf[:, 2] + K[0, 2]
                v = K[1, 1] * pf[:, 1] / pf[:, 2] + K[1, 2]
                pix, win = zbuffer_splat(u, v, pf[:, 2], (H, W))
                rgb.reshape(-1, 3)[pix] = cols[front][win]
                mask.reshape(-1)[pix] = True
            rgbs.append(rgb)
            masks.append(mask)
        return {"t": ref.t, "frame_id": ref.frame_id, "rgb": np.stack(rgbs), "mask": np.stack(masks)}

    def stats(self) -> MemoryStats:
        """Counts, approximate bytes, scene scale and mean timings."""
        n = self.static.n
        by_status: dict[str, int] = {}
        for rec in self.tracker.records.values():
            by_status[rec.status] = by_status.get(rec.status, 0) + 1
        timings = {f"{k}_mean": self._timing_sum[k] / self._timing_n[k] for k in self._timing_sum if self._timing_n[k]}
        timings.update({f"{k}_last": v for k, v in self._timing_last.items()})
        return MemoryStats(
            n_frames=self.bank.n, n_voxels=n,
            n_renderable_voxels=self.static.n_render,
            n_blocks=self.static.nb, n_keyframes=len(self.keyframes), n_subjects=len(self.tracker.records),
            subjects_by_status=by_status, scene_scale=float(self._scale or 0.0),
            voxel_size=float(self.static.voxel_size or 0.0), bytes=self.static.nbytes() + self.bank.nbytes(),
            last_t=self._last_t, timings_ms=timings)

    # ================================================================== persistence
    def save(self, path: str | Path) -> None:
        """Writes the memory to a directory (JSON + NPZ, no pickle)."""
        from .io import save_memory

        save_memory(self, path)

    @classmethod
    def load(cls, path: str | Path) -> SceneMemory:
        """Reads a memory written by `save`."""
        from .io import load_memory

        return load_memory(path)
