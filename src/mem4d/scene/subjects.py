"""Dynamic subjects: detection, per-subject records, constant-velocity Kalman, association, re-ID.

Detection (per write). With ``instance_ids`` each id >= 0 is one detection. Otherwise the
dynamic-mask pixels are grouped into 3D connected components: neighbouring pixels are linked
when their world points are closer than max(``cluster_radius_rel`` * s, 3 pixel footprints),
so two subjects that touch in the image but not in depth stay apart and distant subjects
(sparse pixel samples) do not fragment. Components whose world points then come closer than
``subject_merge_gap_rel`` * s are merged (an articulated subject's limbs crossing in front of
its body are separate pixel components but one subject; the default 0.05 keeps subjects that
are ~15 cm apart at s = 3 m, the T5 fixture's closest, distinct). Each detection has a centre, an extent, an
appearance embedding (square-rooted joint RGB histogram, unit norm; a masked-mean feature
embedding too when dense ``features`` are given), a crop and its mask.

The centre of the visible surface is biased towards the camera; with ``depth_completion`` it is
pushed back along the viewing ray by 2/3 of the lateral radius (exact for a sphere seen
whole, a blob-like assumption in general), which keeps velocity and re-entry predictions
unbiased when the viewpoint changes.

Records. Each subject keeps a constant-velocity Kalman filter (state: world position and
velocity per frame), its embedding, up to ``max_exemplars`` crops from view directions at
least ``exemplar_angle_deg`` apart, a track of past detections and a status:

- ``visible`` when detected this write;
- ``out_of_view`` when the predicted centre projects outside the current image;
- ``occluded`` when it projects inside but the observed depth there is in front of it;
- ``missing`` when inside, not occluded and not detected; after ``n_miss`` such writes
  ``lost``. Out-of-view and occluded records never expire unless ``subject_ttl`` is set.

Association (Hungarian, `scipy.optimize.linear_sum_assignment`) runs against every non-lost
record, out-of-view ones included (that is re-identification):
C_ij = w_a (1 - cos(e_i, f_j)) + w_p min(1, d_M(p_i, c_j) / g), with d_M the Mahalanobis
distance of detection j from record i's predicted position under the predicted covariance
plus measurement noise. Pairs with C >= ``assoc_threshold`` are not matched; unmatched
detections start new records. The embedding update is gated:
e <- normalise(e + alpha * g * (f - e)), g = visible fraction x detection confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .camera_utils import invert_c2w, transform_points
from .config import SceneMemoryConfig
from .types import DetectionReport, Exemplar, SubjectEvent, SubjectView

__all__ = [
    "Detection",
    "SubjectRecord",
    "SubjectTracker",
    "colour_embedding",
    "detect_subjects",
    "kalman_predict",
    "kalman_update",
]

_BIG = 1e6


def colour_embedding(pixels: np.ndarray, bins: int) -> np.ndarray:
    """(n,3) colours in [0,1] -> (bins^3,) unit-norm square-rooted joint histogram.

    The cosine of two such embeddings is the Bhattacharyya coefficient of the histograms.
    """
    q = np.clip((pixels * bins).astype(np.int64), 0, bins - 1)
    code = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    h = np.bincount(code, minlength=bins ** 3).astype(np.float64)
    h = np.sqrt(h / max(h.sum(), 1.0))
    return (h / max(np.linalg.norm(h), 1e-12)).astype(np.float32)


def kalman_predict(x: np.ndarray, P: np.ndarray, dt: float, accel_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity prediction over ``dt`` frames with white acceleration noise."""
    # Per axis the blocks are [[1, dt], [0, 1]] and q [[dt^3/3, dt^2/2], [dt^2/2, dt]].
    xp = x.copy()
    xp[:3] += dt * x[3:]
    Pp = P.copy()
    Pp[:3, :] += dt * P[3:, :]
    Pp[:, :3] += dt * Pp[:, 3:]
    q = accel_std ** 2
    i = np.arange(3)
    Pp[i, i] += q * dt ** 3 / 3
    Pp[i, i + 3] += q * dt ** 2 / 2
    Pp[i + 3, i] += q * dt ** 2 / 2
    Pp[i + 3, i + 3] += q * dt
    return xp, Pp


def kalman_update(x: np.ndarray, P: np.ndarray, z: np.ndarray, meas_var: float) -> tuple[np.ndarray, np.ndarray]:
    """Position measurement update (H = [I 0], R = meas_var I), Joseph form for stability."""
    H = np.zeros((3, 6))
    H[:, :3] = np.eye(3)
    S = P[:3, :3] + meas_var * np.eye(3)
    Kg = P[:, :3] @ np.linalg.inv(S)
    x = x + Kg @ (z - x[:3])
    IKH = np.eye(6) - Kg @ H
    P = IKH @ P @ IKH.T + meas_var * Kg @ Kg.T
    return x, 0.5 * (P + P.T)


@dataclass
class Detection:
    centroid: np.ndarray
    extent: np.ndarray
    embedding: np.ndarray
    feat_embedding: np.ndarray | None
    n_pixels: int
    bbox: tuple[int, int, int, int]
    crop: np.ndarray
    crop_mask: np.ndarray
    conf: float
    area: float  # pixel area x depth^2 / (fx fy): apparent size normalised for distance
    touches_border: bool
    view_dir: np.ndarray
    instance_id: int | None


def _components_from_mask(mask: np.ndarray, pts: np.ndarray, depth: np.ndarray, radius: float, f: float) -> np.ndarray:
    """(H,W) int labels (-1 = none) of 3D-connected components of the masked pixels."""
    H, W = mask.shape
    labels = np.full((H, W), -1, np.int64)
    nodes = np.flatnonzero(mask)
    if nodes.size == 0:
        return labels
    index = np.full(H * W, -1, np.int64)
    index[nodes] = np.arange(nodes.size)
    P = pts.reshape(-1, 3)
    Z = depth.reshape(-1)
    rows, cols = [], []
    for a, b in ((mask[:, :-1] & mask[:, 1:], 1), (mask[:-1, :] & mask[1:, :], W)):
        if a is None:
            continue
        if b == 1:
            src = (np.flatnonzero(np.pad(a, ((0, 0), (0, 1)))))
        else:
            src = (np.flatnonzero(np.pad(a, ((0, 1), (0, 0)))))
        dst = src + b
        dist = np.linalg.norm(P[src] - P[dst], axis=1)
        thr = np.maximum(radius, 3.0 * np.maximum(Z[src], Z[dst]) / f)
        ok = dist < thr
        rows.append(index[src[ok]])
        cols.append(index[dst[ok]])
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(nodes.size, nodes.size))
    _, lab = connected_components(graph, directed=False)
    labels.reshape(-1)[nodes] = lab
    return labels


def _merge_close_components(labels: np.ndarray, pts: np.ndarray, gap: float, samples: int = 256) -> np.ndarray:
    """Merges the components of `labels` whose world points come closer than `gap` (single
    linkage on at most `samples` points per component): the limbs of an articulated subject are
    separate components where they cross in front of its body, one subject in the world."""
    from scipy.spatial import cKDTree

    flat = labels.reshape(-1)
    sel = np.flatnonzero(flat >= 0)
    n = int(flat[sel].max()) + 1 if sel.size else 0
    if n < 2 or gap <= 0:
        return labels
    rng = np.random.default_rng(0)
    keep = []
    for lab in range(n):
        pix = sel[flat[sel] == lab]
        keep.append(pix if pix.size <= samples else rng.choice(pix, samples, replace=False))
    pix = np.concatenate(keep)
    pairs = cKDTree(pts.reshape(-1, 3)[pix]).query_pairs(gap, output_type="ndarray")
    a, b = flat[pix[pairs[:, 0]]], flat[pix[pairs[:, 1]]]
    cross = a != b
    graph = coo_matrix((np.ones(int(cross.sum())), (a[cross], b[cross])), shape=(n, n))
    _, merged = connected_components(graph, directed=False)
    out = labels.copy()
    out.reshape(-1)[sel] = merged[flat[sel]]
    return out


def detect_subjects(rgb: np.ndarray, pts: np.ndarray, depth: np.ndarray, valid: np.ndarray,
                    dynamic: np.ndarray | None, instance_ids: np.ndarray | None, conf_ok: np.ndarray,
                    features: np.ndarray | None, K: np.ndarray, c2w: np.ndarray, s: float,
                    cfg: SceneMemoryConfig) -> list[Detection]:
    """Subject detections of one frame (see the module docstring)."""
    H, W = depth.shape
    if instance_ids is not None:
        labels = np.where(valid & (instance_ids >= 0), instance_ids, -1).astype(np.int64)
        from_ids = True
    elif dynamic is not None:
        labels = _components_from_mask(dynamic & valid, pts, depth, cfg.cluster_radius_rel * s, float(K[0, 0]))
        labels = _merge_close_components(labels, pts, cfg.subject_merge_gap_rel * s)
        from_ids = False
    else:
        return []
    flat = labels.reshape(-1)
    sel = np.flatnonzero(flat >= 0)
    if sel.size == 0:
        return []
    ids, counts = np.unique(flat[sel], return_counts=True)
    order = np.argsort(flat[sel], kind="stable")
    groups = np.split(sel[order], np.cumsum(counts)[:-1])
    cam = c2w[:3, 3]
    P = pts.reshape(-1, 3)
    Z = depth.reshape(-1)
    C = rgb.reshape(-1, 3)
    ok_conf = conf_ok.reshape(-1)
    out: list[Detection] = []
    for lab, pix in zip(ids, groups):
        if pix.size < cfg.min_subject_pixels:
            continue
        pp = P[pix].astype(np.float64)
        c = pp.mean(axis=0)
        d = c - cam
        dn = d / max(np.linalg.norm(d), 1e-12)
        off = pp - c
        lat = off - (off @ dn)[:, None] * dn
        r_lat = float(np.sqrt(2.0 * np.mean(np.sum(lat ** 2, axis=1))))
        if cfg.depth_completion:
            c = c + dn * (2.0 / 3.0) * r_lat
        lo, hi = np.percentile(pp, [2, 98], axis=0)
        extent = np.maximum(0.5 * (hi - lo), r_lat)
        vv, uu = np.divmod(pix, W)
        u0, v0, u1, v1 = int(uu.min()), int(vv.min()), int(uu.max()) + 1, int(vv.max()) + 1
        crop = rgb[v0:v1, u0:u1].copy()
        cmask = np.zeros((v1 - v0, u1 - u0), bool)
        cmask[vv - v0, uu - u0] = True
        emb = colour_embedding(C[pix], cfg.hist_bins)
        femb = None
        if features is not None:
            fh, fw = features.shape[:2]
            fv = np.minimum((vv * fh) // H, fh - 1)
            fu = np.minimum((uu * fw) // W, fw - 1)
            fm = features[fv, fu].astype(np.float64).mean(axis=0)
            femb = (fm / max(np.linalg.norm(fm), 1e-12)).astype(np.float32)
        zbar = float(Z[pix].mean())
        area = pix.size * zbar ** 2 / (K[0, 0] * K[1, 1])
        border = bool((uu.min() == 0) or (vv.min() == 0) or (uu.max() == W - 1) or (vv.max() == H - 1))
        out.append(Detection(
            centroid=c, extent=extent, embedding=emb, feat_embedding=femb, n_pixels=int(pix.size),
            bbox=(u0, v0, u1, v1), crop=crop, crop_mask=cmask, conf=float(ok_conf[pix].mean()),
            area=area, touches_border=border, view_dir=dn, instance_id=int(lab) if from_ids else None))
    return out


@dataclass
class SubjectRecord:
    id: int
    x: np.ndarray  # (6,) position and velocity per frame
    P: np.ndarray  # (6, 6)
    t_state: int
    embedding: np.ndarray
    feat_embedding: np.ndarray | None
    extent: np.ndarray
    status: str
    first_seen_t: int
    last_seen_t: int
    area_ref: float
    miss_count: int = 0
    exemplars: list[Exemplar] = field(default_factory=list)
    track_t: list[int] = field(default_factory=list)
    track_c: list[np.ndarray] = field(default_factory=list)
    track_e: list[np.ndarray] = field(default_factory=list)

    def predict(self, t: int, accel_std: float) -> tuple[np.ndarray, np.ndarray]:
        return kalman_predict(self.x, self.P, float(t - self.t_state), accel_std)


class SubjectTracker:
    """Persistent subject records (see the module docstring)."""

    def __init__(self, config: SceneMemoryConfig) -> None:
        self.cfg = config
        self.reset()

    def reset(self) -> None:
        self.records: dict[int, SubjectRecord] = {}
        self.next_id = 0

    def move(self, motion: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        """Moves every record's world quantities by the rigid motion of their time (a loop correction).

        ``motion(times)`` gives, for (N,) times, rotations (N, 3, 3) and translations (N, 3): the
        filter's state (position moved, velocity and covariance turned) by its time, each track
        centroid by its own, each exemplar's view direction turned by its own.
        """
        for rec in self.records.values():
            (R,), (p,) = motion(np.array([rec.t_state]))
            rec.x = np.concatenate([R @ rec.x[:3] + p, R @ rec.x[3:]])
            T = np.zeros((6, 6))
            T[:3, :3] = T[3:, 3:] = R
            rec.P = T @ rec.P @ T.T
            if rec.track_t:
                Rs, ps = motion(np.asarray(rec.track_t))
                rec.track_c = [Ri @ c + pi for Ri, c, pi in zip(Rs, rec.track_c, ps)]
            if rec.exemplars:
                Rs, _ = motion(np.array([ex.t for ex in rec.exemplars]))
                for Ri, ex in zip(Rs, rec.exemplars):
                    ex.view_dir = Ri @ ex.view_dir

    def _appearance_cost(self, rec: SubjectRecord, det: Detection) -> float:
        cos = float(rec.embedding @ det.embedding)
        if rec.feat_embedding is not None and det.feat_embedding is not None \
                and rec.feat_embedding.shape == det.feat_embedding.shape:
            cos = 0.5 * (cos + float(rec.feat_embedding @ det.feat_embedding))
        return 1.0 - min(max(cos, -1.0), 1.0)

    def _meas_var(self, det: Detection, vis: float, s: float) -> float:
        sigma = self.cfg.meas_noise_rel * s / np.sqrt(max(vis, 0.1))
        if det.touches_border:
            sigma *= 10.0  # a truncated subject's centre is biased: trust it little for motion
        return float(sigma ** 2)

    def step(self, dets: list[Detection], t: int, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int],
             depth: np.ndarray, s: float) -> tuple[list[SubjectEvent], list[DetectionReport]]:
        """Associates this frame's detections with the records and updates every status."""
        cfg = self.cfg
        accel = cfg.accel_noise_rel * s
        active = [r for r in self.records.values() if r.status != "lost" or cfg.reid_lost]
        preds = [r.predict(t, accel) for r in active]
        cost = np.full((len(active), len(dets)), _BIG)
        meas_var0 = (cfg.meas_noise_rel * s) ** 2
        for i, (rec, (xp, Pp)) in enumerate(zip(active, preds)):
            Sinv = np.linalg.inv(Pp[:3, :3] + meas_var0 * np.eye(3))
            for j, det in enumerate(dets):
                dlt = det.centroid - xp[:3]
                dm = float(np.sqrt(max(dlt @ Sinv @ dlt, 0.0)))
                cst = cfg.assoc_w_app * self._appearance_cost(rec, det) + cfg.assoc_w_motion * min(1.0, dm / cfg.assoc_gate)
                if cst < cfg.assoc_threshold:
                    cost[i, j] = cst
        matched_rec: dict[int, int] = {}
        match_cost: dict[int, float] = {}
        if cost.size:
            ri, ci = linear_sum_assignment(cost)
            for i, j in zip(ri, ci):
                if cost[i, j] < _BIG:
                    matched_rec[j] = i
                    match_cost[j] = float(cost[i, j])
        events: list[SubjectEvent] = []
        reports: list[DetectionReport] = []
        seen_ids = set()
        for j, det in enumerate(dets):
            if j in matched_rec:
                rec = active[matched_rec[j]]
                xp, Pp = preds[matched_rec[j]]
                events.extend(self._update(rec, det, t, xp, Pp, s))
                is_new = False
            else:
                rec = self._new_record(det, t, s)
                events.append(SubjectEvent("new", rec.id, t))
                is_new = True
            seen_ids.add(rec.id)
            reports.append(DetectionReport(subject_id=rec.id, centroid=det.centroid.copy(), extent=det.extent.copy(),
                                           n_pixels=det.n_pixels, bbox=det.bbox, instance_id=det.instance_id,
                                           cost=match_cost.get(j, 0.0), is_new=is_new))
        for rec in self.records.values():
            if rec.id not in seen_ids and rec.status != "lost":
                events.extend(self._unseen(rec, t, c2w, K, size, depth, s))
        return events, reports

    def _new_record(self, det: Detection, t: int, s: float) -> SubjectRecord:
        cfg = self.cfg
        P = np.zeros((6, 6))
        P[:3, :3] = self._meas_var(det, 1.0, s) * np.eye(3)
        P[3:, 3:] = (cfg.init_vel_std_rel * s) ** 2 * np.eye(3)
        rec = SubjectRecord(
            id=self.next_id, x=np.concatenate([det.centroid, np.zeros(3)]), P=P, t_state=t,
            embedding=det.embedding.copy(), feat_embedding=None if det.feat_embedding is None else det.feat_embedding.copy(),
            extent=det.extent.copy(), status="visible", first_seen_t=t, last_seen_t=t, area_ref=det.area)
        self.next_id += 1
        self._add_track(rec, det, t)
        self._maybe_add_exemplar(rec, det, t)
        self.records[rec.id] = rec
        return rec

    def _add_track(self, rec: SubjectRecord, det: Detection, t: int) -> None:
        rec.track_t.append(int(t))
        rec.track_c.append(det.centroid.copy())
        rec.track_e.append(det.extent.copy())
        if len(rec.track_t) > self.cfg.track_len:
            del rec.track_t[0], rec.track_c[0], rec.track_e[0]

    def _maybe_add_exemplar(self, rec: SubjectRecord, det: Detection, t: int) -> None:
        if det.touches_border or len(rec.exemplars) >= self.cfg.max_exemplars:
            return
        cos_thr = np.cos(np.deg2rad(self.cfg.exemplar_angle_deg))
        if all(float(e.view_dir @ det.view_dir) < cos_thr for e in rec.exemplars):
            rec.exemplars.append(Exemplar(t=int(t), crop=det.crop, mask=det.crop_mask,
                                          view_dir=det.view_dir.copy(), bbox=det.bbox))

    def _update(self, rec: SubjectRecord, det: Detection, t: int, xp: np.ndarray, Pp: np.ndarray, s: float) -> list[SubjectEvent]:
        cfg = self.cfg
        events = []
        prev = rec.status
        if prev != "visible":
            if prev == "out_of_view":
                events.append(SubjectEvent("entered", rec.id, t, t - rec.last_seen_t))
            events.append(SubjectEvent("reidentified", rec.id, t, t - rec.last_seen_t))
        vis = float(np.clip(det.area / max(rec.area_ref, 1e-12), 0.0, 1.0))
        if not det.touches_border:
            rec.area_ref = 0.8 * rec.area_ref + 0.2 * det.area
            rec.extent = 0.7 * rec.extent + 0.3 * det.extent
        rec.x, rec.P = kalman_update(xp, Pp, det.centroid, self._meas_var(det, vis, s))
        rec.t_state = t
        g = vis * det.conf
        e = rec.embedding + cfg.embed_alpha * g * (det.embedding - rec.embedding)
        rec.embedding = (e / max(np.linalg.norm(e), 1e-12)).astype(np.float32)
        if det.feat_embedding is not None:
            if rec.feat_embedding is None or rec.feat_embedding.shape != det.feat_embedding.shape:
                rec.feat_embedding = det.feat_embedding.copy()
            else:
                f = rec.feat_embedding + cfg.embed_alpha * g * (det.feat_embedding - rec.feat_embedding)
                rec.feat_embedding = (f / max(np.linalg.norm(f), 1e-12)).astype(np.float32)
        rec.status = "visible"
        rec.last_seen_t = t
        rec.miss_count = 0
        self._add_track(rec, det, t)
        self._maybe_add_exemplar(rec, det, t)
        return events

    def _unseen(self, rec: SubjectRecord, t: int, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int],
                depth: np.ndarray, s: float) -> list[SubjectEvent]:
        cfg = self.cfg
        xp, _ = rec.predict(t, cfg.accel_noise_rel * s)
        status = self.locate(xp[:3], rec.extent, c2w, K, size, depth, s)
        prev = rec.status
        if status == "missing":
            rec.miss_count += 1
            if rec.miss_count >= cfg.n_miss:
                status = "lost"
        if cfg.subject_ttl is not None and t - rec.last_seen_t > cfg.subject_ttl:
            status = "lost"
        rec.status = status
        events = []
        if prev == "visible" and status == "out_of_view":
            events.append(SubjectEvent("exited", rec.id, t))
        elif prev == "visible" and status == "occluded":
            events.append(SubjectEvent("occluded", rec.id, t))
        if status == "lost" and prev != "lost":
            events.append(SubjectEvent("lost", rec.id, t, t - rec.last_seen_t))
        return events

    @staticmethod
    def project(centre: np.ndarray, c2w: np.ndarray, K: np.ndarray) -> np.ndarray:
        p = transform_points(invert_c2w(c2w), centre[None])[0]
        z = p[2]
        zs = z if abs(z) > 1e-12 else 1e-12
        return np.array([K[0, 0] * p[0] / zs + K[0, 1] * p[1] / zs + K[0, 2], K[1, 1] * p[1] / zs + K[1, 2], z])

    def locate(self, centre: np.ndarray, extent: np.ndarray, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int],
               depth: np.ndarray | None, s: float) -> str:
        """"out_of_view", "occluded" or "missing" for a subject predicted at ``centre``."""
        H, W = size
        u, v, z = self.project(centre, c2w, K)
        if z <= 0 or not (-0.5 <= u < W - 0.5 and -0.5 <= v < H - 0.5):
            return "out_of_view"
        if depth is not None:
            d = float(depth[round(v), round(u)])
            if d > 0 and d < z - max(float(np.max(extent)), self.cfg.cluster_radius_rel * s):
                return "occluded"
        return "missing"

    def view(self, rec: SubjectRecord, t: int, s: float, c2w: np.ndarray | None = None, K: np.ndarray | None = None,
             size: tuple[int, int] | None = None, static_depth: np.ndarray | None = None) -> SubjectView:
        """The record predicted to time ``t`` (and projected into a camera when given)."""
        xp, Pp = rec.predict(max(t, rec.t_state), self.cfg.accel_noise_rel * s)
        sv = SubjectView(
            id=rec.id, status=rec.status, first_seen_t=rec.first_seen_t, last_seen_t=rec.last_seen_t,
            embedding=rec.embedding.copy(), exemplars=list(rec.exemplars),
            track={"t": np.asarray(rec.track_t, np.int64), "centroid": np.asarray(rec.track_c, np.float64).reshape(-1, 3),
                   "extent": np.asarray(rec.track_e, np.float64).reshape(-1, 3)},
            pred_center_world=xp[:3].copy(), pred_cov=Pp[:3, :3].copy(), velocity=xp[3:].copy(), extent=rec.extent.copy(),
            feature_embedding=None if rec.feat_embedding is None else rec.feat_embedding.copy())
        if c2w is not None and K is not None and size is not None:
            H, W = size
            uvz = self.project(xp[:3], c2w, K)
            sv.pred_uvz = uvz
            sv.in_fov = bool(uvz[2] > 0 and -0.5 <= uvz[0] < W - 0.5 and -0.5 <= uvz[1] < H - 0.5)
            sv.occluded_by_static = False
            if sv.in_fov and static_depth is not None:
                d = float(static_depth[round(uvz[1]), round(uvz[0])])
                sv.occluded_by_static = bool(0 < d < uvz[2] - max(float(np.max(rec.extent)), self.cfg.cluster_radius_rel * s))
            corners = xp[:3] + rec.extent * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
            pc = transform_points(invert_c2w(c2w), corners)
            front = pc[:, 2] > 1e-6
            if front.any():
                pf = pc[front]
                us = K[0, 0] * pf[:, 0] / pf[:, 2] + K[0, 1] * pf[:, 1] / pf[:, 2] + K[0, 2]
                vs = K[1, 1] * pf[:, 1] / pf[:, 2] + K[1, 2]
                box = (max(float(us.min()), 0.0), max(float(vs.min()), 0.0), min(float(us.max()), W - 1.0), min(float(vs.max()), H - 1.0))
                sv.pred_bbox_2d = box if box[0] <= box[2] and box[1] <= box[3] else None
        return sv
