"""Frame retrieval: which past frames best show what the query view(s) will see.

Two modes (SCENE_MEMORY.md 3.5):

- **visibility** (default). The static layer is rendered at the query view; every drawn voxel's
  block votes (weighted by its pixel count) for the frames in its ring of observers, which
  shortlists ``retrieval_candidates`` frames in O(visible blocks x ring size). Each candidate
  is then scored exactly on up to ``retrieval_samples`` visible surface points x of the
  render: x counts for frame i when it projects inside frame i and is not behind frame i's
  stored (max-pooled) depth, so a wall between the query and a frame removes the frame even
  when their frusta overlap. The per-point weight follows VMem,
  c_i(x) = cos(ray_q(x), ray_i(x)) / (1 + z_i(x)/s), normalised by the weight the query
  camera itself would get, 1 / (1 + z_q(x)/s), and clipped to [0, 1].
- **frustum** (fallback when the map is empty or covers less than ``retrieval_min_coverage``
  of the query). Points are sampled in the query frustum between 0.05 s and 3 s and tested
  against every stored frustum (O(N x S)), with the same weights and no depth test.

Scores and selection: ``overlap_i`` is the share of samples frame i sees;
``score_i = mean_x c_i(x) - lambda (t_query - t_i) / max(t_query, 1)``. Frames in the
working window are excluded, as are frames with ``overlap_i < min_overlap``. Selection is
greedy over marginal coverage: pick argmax_i mean_x max(0, c_i(x) - covered(x)) minus the
recency penalty, update the coverage, and stop after k frames or when the gain is below
``retrieval_min_gain``; a frame whose mutual frustum overlap (max of both directions, see
`camera_utils.frustum_overlap`) with a selected frame exceeds
``retrieval_max_mutual_overlap`` is skipped as redundant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .camera_utils import frustum_samples, in_frustum, invert_c2w, transform_points
from .config import SceneMemoryConfig
from .frame_bank import FrameBank
from .static_layer import RenderResult, StaticLayer

__all__ = [
    "QuerySamples",
    "Selection",
    "candidate_coverage",
    "frustum_query_samples",
    "greedy_select",
    "surface_samples",
    "vote_candidates",
]


@dataclass
class QuerySamples:
    """Points the query will see: (S,3) world points, (S,3) query camera centre, (S,) query depth."""

    pts: np.ndarray
    centre: np.ndarray
    depth: np.ndarray


@dataclass
class Selection:
    fid: int
    score: float
    overlap: float
    gain: float


def _even_subsample(n: int, k: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def surface_samples(renders: list[RenderResult], c2ws: np.ndarray, Ks: np.ndarray, max_samples: int) -> QuerySamples | None:
    """Evenly spread drawn pixels of the renders, back-projected to world points."""
    per_view = []
    for r, c2w, K in zip(renders, c2ws, Ks):
        vv, uu = np.nonzero(r.mask)
        if vv.size:
            per_view.append((vv, uu, r.depth[vv, uu], c2w, K))
    total = sum(len(x[0]) for x in per_view)
    if total == 0:
        return None
    pts, cen, dep = [], [], []
    budget = max_samples
    for i, (vv, uu, z, c2w, K) in enumerate(per_view):
        share = budget if i == len(per_view) - 1 else round(max_samples * len(vv) / total)
        sel = _even_subsample(len(vv), max(1, min(share, budget)))
        budget -= len(sel)
        y = (vv[sel] - K[1, 2]) / K[1, 1]
        x = (uu[sel] - K[0, 2] - K[0, 1] * y) / K[0, 0]
        pc = np.stack([x, y, np.ones_like(x)], axis=1) * z[sel, None]
        pts.append(transform_points(c2w, pc))
        cen.append(np.broadcast_to(c2w[:3, 3], (len(sel), 3)))
        dep.append(z[sel].astype(np.float64))
        if budget <= 0:
            break
    return QuerySamples(np.concatenate(pts), np.concatenate(cen), np.concatenate(dep))


def frustum_query_samples(c2ws: np.ndarray, Ks: np.ndarray, size: tuple[int, int], s: float,
                          cfg: SceneMemoryConfig) -> QuerySamples:
    """Fixed frustum samples between ``frustum_near_rel * s`` and ``frustum_far_rel * s`` per pose."""
    pts, cen, dep = [], [], []
    per_pose = max(8, cfg.retrieval_samples // len(c2ws))
    n_depth = 8
    n_side = max(2, int(np.sqrt(per_pose / n_depth)))
    for c2w, K in zip(c2ws, Ks):
        pc = frustum_samples(K, size, cfg.frustum_near_rel * s, cfg.frustum_far_rel * s, n_side, n_depth)
        pts.append(transform_points(c2w, pc))
        cen.append(np.broadcast_to(c2w[:3, 3], (len(pc), 3)))
        dep.append(pc[:, 2])
    return QuerySamples(np.concatenate(pts), np.concatenate(cen), np.concatenate(dep))


def vote_candidates(layer: StaticLayer, renders: list[RenderResult], allowed: np.ndarray,
                    max_candidates: int) -> np.ndarray:
    """Frame ids voted for by the blocks drawn in the renders, most votes first (ties: newer first)."""
    vox = np.concatenate([r.voxel[r.mask] for r in renders]) if renders else np.zeros(0, np.int64)
    if vox.size == 0 or len(allowed) == 0:
        return np.zeros(0, np.int64)
    blocks, counts = np.unique(layer.block[vox], return_counts=True)
    ring = layer.ring[blocks]  # (B, R)
    w = np.broadcast_to(counts[:, None], ring.shape)
    keep = ring >= 0
    ids, wts = ring[keep], w[keep]
    ok = allowed[ids]
    votes = np.bincount(ids[ok], weights=wts[ok], minlength=len(allowed))
    cand = np.flatnonzero(votes > 0)
    order = np.lexsort((-cand, -votes[cand]))
    return cand[order[:max_candidates]]


def candidate_coverage(bank: FrameBank, fids: np.ndarray, q: QuerySamples, s: float, cfg: SceneMemoryConfig,
                       use_depth: bool) -> tuple[np.ndarray, np.ndarray]:
    """(M,S) bool visibility and (M,S) weighted coverage c_i(x) in [0, 1] of each candidate."""
    if use_depth:
        vis, z = bank.visibility(fids, q.pts, s, cfg.visibility_margin_rel)
    else:
        vis = in_frustum(q.pts, bank.c2w[fids], bank.K[fids], bank.size[fids])
        w2c = invert_c2w(bank.c2w[fids])
        z = (w2c[:, 2, 0, None] * q.pts[None, :, 0] + w2c[:, 2, 1, None] * q.pts[None, :, 1]
             + w2c[:, 2, 2, None] * q.pts[None, :, 2] + w2c[:, 2, 3, None])
    ray_q = q.pts - q.centre
    ray_q /= np.linalg.norm(ray_q, axis=1, keepdims=True) + 1e-12
    ray_i = q.pts[None, :, :] - bank.centre[fids][:, None, :]
    norm_i = np.sqrt((ray_i ** 2).sum(axis=2)) + 1e-12
    cos = np.clip((ray_i * ray_q[None]).sum(axis=2) / norm_i, 0.0, 1.0)
    w = cos / (1.0 + np.maximum(z, 0.0) / s)
    w_ref = 1.0 / (1.0 + q.depth / s)
    c = np.where(vis, np.clip(w / w_ref[None, :], 0.0, 1.0), 0.0)
    return vis, c


def _frustum_points(bank: FrameBank, fids: np.ndarray, near: float, far: float) -> np.ndarray:
    """(M, P, 3) world frustum samples of each frame (one sample pattern per distinct K and size)."""
    out = []
    groups: dict[bytes, np.ndarray] = {}
    for f in fids:
        key = bank.K[f].tobytes() + bank.size[f].tobytes()
        if key not in groups:
            groups[key] = frustum_samples(bank.K[f], tuple(bank.size[f]), near, far)
        out.append(groups[key])
    pc = np.stack(out)  # (M, P, 3) camera frame
    T = bank.c2w[fids]
    out = np.empty_like(pc)
    for i in range(3):
        out[..., i] = (T[:, i, 0, None] * pc[..., 0] + T[:, i, 1, None] * pc[..., 1] + T[:, i, 2, None] * pc[..., 2]
                       + T[:, i, 3, None])
    return out


def _mutual_overlap(bank: FrameBank, a: int, others: np.ndarray, s: float, cfg: SceneMemoryConfig) -> np.ndarray:
    """(len(others),) max of the two directed frustum overlaps between frame a and each other frame."""
    near, far = cfg.frustum_near_rel * s, cfg.frustum_far_rel * s
    pa = _frustum_points(bank, np.array([a]), near, far)[0]
    fwd = in_frustum(pa, bank.c2w[others], bank.K[others], bank.size[others]).mean(axis=1)
    po = _frustum_points(bank, others, near, far)  # (M, P, 3)
    back = in_frustum(po.reshape(-1, 3), bank.c2w[a], bank.K[a], tuple(bank.size[a])).reshape(len(others), -1).mean(axis=1)
    return np.maximum(fwd, back)


def greedy_select(bank: FrameBank, fids: np.ndarray, vis: np.ndarray, c: np.ndarray, t_query: int, k: int,
                  recency_penalty: float, min_overlap: float, s: float, cfg: SceneMemoryConfig) -> list[Selection]:
    """Greedy marginal-coverage selection (see the module docstring)."""
    if len(fids) == 0 or k <= 0:
        return []
    overlap = vis.mean(axis=1)
    age = np.maximum(t_query - bank.t[fids], 0) / max(t_query, 1)
    penalty = recency_penalty * age
    score = c.mean(axis=1) - penalty
    eligible = overlap >= min_overlap
    covered = np.zeros(c.shape[1])
    out: list[Selection] = []
    while len(out) < k and eligible.any():
        gain = np.maximum(c - covered[None, :], 0.0).mean(axis=1)
        obj = np.where(eligible, gain - penalty, -np.inf)
        j = int(np.argmax(obj))
        if gain[j] < cfg.retrieval_min_gain:
            break
        out.append(Selection(int(fids[j]), float(score[j]), float(overlap[j]), float(gain[j])))
        covered = np.maximum(covered, c[j])
        eligible[j] = False
        rest = np.flatnonzero(eligible)
        if rest.size:
            mutual = _mutual_overlap(bank, int(fids[j]), fids[rest], s, cfg)
            eligible[rest[mutual > cfg.retrieval_max_mutual_overlap]] = False
    return out
