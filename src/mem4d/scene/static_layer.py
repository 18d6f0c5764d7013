"""The static layer: voxel-hashed fused points with free-space carving and a z-buffer renderer.

Each voxel keeps the running (weighted) mean of the points and colours that fell into it, a
hit count (frames that hit it), a miss count (frames whose rays passed through it), the
newest frame time that fed it and the weighted mean of those times (which share of a loop
correction moves it, `move_voxels`). Voxels are grouped into blocks of ``block_size``^3; a block
keeps its newest time (for least-recently-seen eviction), its voxel count, and a capped ring
of the frame ids that observed it (VMem-style, used by vote-based retrieval).

Per write the cost is O(pixels) for fusion plus O(voxels in the frustum) for carving;
rendering projects only voxels of blocks inside the view frustum and keeps the nearest voxel
per pixel (1-pixel z-buffer splat), optionally filling single-pixel holes from the nearest
8-neighbour. Nothing is ever rebuilt from past frames: a loop correction moves the fused
voxels themselves (`move_voxels`, O(voxels)), as surfel maps are deformed (ElasticFusion).

Carving (Curless-Levoy style free-space evidence without a TSDF): a voxel gets a miss when
a later frame's depth, taken as the minimum over the 3x3 pixels around the voxel's projection
(so sub-pixel projection and steep surfaces do not fake misses), lies more than ``margin``
behind it. A voxel is drawn only when hits / (hits + misses) >= ``carve_ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.ndimage import minimum_filter

from .camera_utils import invert_c2w, transform_points
from .config import SceneMemoryConfig
from .voxel_hash import COORD_LIMIT, HashTable, pack_coords, unpack_keys

__all__ = ["IntegrateResult", "RenderResult", "StaticLayer", "frustum_cull_spheres", "zbuffer_splat"]


@dataclass
class RenderResult:
    """One view: (H,W,3) rgb, (H,W) depth, (H,W) bool mask, (H,W) int32 source_t and voxel slot."""

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    source_t: np.ndarray
    voxel: np.ndarray  # (H, W) int64 voxel slot drawn at the pixel, -1 if none


@dataclass
class IntegrateResult:
    added: int = 0
    updated: int = 0
    missed: int = 0
    carved: int = 0
    evicted: int = 0


def frustum_cull_spheres(centres_world: np.ndarray, radius: float, c2w: np.ndarray, K: np.ndarray,
                         size: tuple[int, int], near: float) -> np.ndarray:
    """(N,) bool: spheres of ``radius`` around (N, 3) centres that may intersect the view frustum.

    Conservative plane test against the four side planes (through the camera centre, at the
    image's outer pixel edges) and the near plane; skew is ignored.
    """
    if len(centres_world) == 0:
        return np.zeros(0, dtype=bool)
    H, W = size
    p = transform_points(invert_c2w(c2w), centres_world)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    a_l, a_r = (-0.5 - cx) / fx, (W - 0.5 - cx) / fx
    b_t, b_b = (-0.5 - cy) / fy, (H - 0.5 - cy) / fy
    ok = p[:, 2] >= near - radius
    for n in ((1.0, 0.0, -a_l), (-1.0, 0.0, a_r), (0.0, 1.0, -b_t), (0.0, -1.0, b_b)):
        nv = np.asarray(n) / np.linalg.norm(n)
        ok &= p[:, 0] * nv[0] + p[:, 1] * nv[1] + p[:, 2] * nv[2] >= -radius
    return ok


def zbuffer_splat(u: np.ndarray, v: np.ndarray, z: np.ndarray, size: tuple[int, int],
                  surface_tol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Nearest point per pixel. Returns (pixel linear index, index into the inputs) of the winners.

    ``u``, ``v`` are float pixel coordinates (rounded to the nearest pixel centre), ``z`` > 0.
    With ``surface_tol`` > 0, every point within that depth of the pixel's nearest point counts
    as the same surface and the one projecting closest to the pixel centre wins: picking the
    strictly nearest would favour one side of an oblique surface and shift texture by a
    fraction of a pixel, which accumulates when generated frames are written back. Remaining
    ties keep the earlier input, which makes renders deterministic.
    """
    H, W = size
    ui = np.rint(u).astype(np.int64)
    vi = np.rint(v).astype(np.int64)
    inside = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    src = np.flatnonzero(inside)
    pix = vi[src] * W + ui[src]
    zs = z[src]
    zbuf = np.full(H * W, np.inf)
    np.minimum.at(zbuf, pix, zs)
    cand = np.flatnonzero(zs <= zbuf[pix] + surface_tol)  # the front surface at each pixel
    if surface_tol > 0:
        d2 = (u[src[cand]] - ui[src[cand]]) ** 2 + (v[src[cand]] - vi[src[cand]]) ** 2
        dbuf = np.full(H * W, np.inf)
        np.minimum.at(dbuf, pix[cand], d2)
        cand = cand[d2 == dbuf[pix[cand]]]
    first = np.full(H * W, np.iinfo(np.int64).max)
    np.minimum.at(first, pix[cand], cand)  # tie-break: earliest input wins
    pix_w = np.flatnonzero(first != np.iinfo(np.int64).max)
    win = first[pix_w]
    return pix_w, src[win]


_NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def fill_single_holes(depth: np.ndarray, index: np.ndarray, min_neighbours: int = 5) -> np.ndarray:
    """For empty pixels with >= ``min_neighbours`` drawn 8-neighbours, the index of the nearest one.

    ``index`` (H, W) holds what was drawn (>= 0) or -1. Returns a new index map; splat gaps
    inside surfaces close, silhouettes do not grow (they have fewer drawn neighbours).
    """
    H, W = depth.shape
    drawn = index >= 0
    pad_d = np.pad(np.where(drawn, depth, np.inf), 1, constant_values=np.inf)
    pad_i = np.pad(index, 1, constant_values=-1)
    count = np.zeros((H, W), dtype=np.int32)
    best_d = np.full((H, W), np.inf)
    best_i = np.full((H, W), -1, dtype=index.dtype)
    for dy, dx in _NEIGHBOURS:
        d = pad_d[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
        i = pad_i[1 + dy:1 + dy + H, 1 + dx:1 + dx + W]
        count += np.isfinite(d)
        better = d < best_d
        best_d = np.where(better, d, best_d)
        best_i = np.where(better, i, best_i)
    fill = ~drawn & (count >= min_neighbours)
    return np.where(fill, best_i, index)


def _group_mean(a: np.ndarray, w: np.ndarray, start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Means of the rows of ``a`` (N, ...) over the runs that begin at ``start`` (G,) and hold
    ``count`` (G,) rows, weighted by ``w`` (N,); the plain mean where a run's weights sum to 0."""
    shape = (-1,) + (1,) * (a.ndim - 1)
    den = np.add.reduceat(w, start)
    weighted = np.add.reduceat(a * w.reshape(shape), start, axis=0) / np.where(den > 0, den, 1.0).reshape(shape)
    plain = np.add.reduceat(a, start, axis=0) / count.reshape(shape)
    return np.where((den > 0).reshape(shape), weighted, plain)


class StaticLayer:
    """Voxel-hashed fused points of the static scene (see the module docstring)."""

    def __init__(self, config: SceneMemoryConfig) -> None:
        self.cfg = config
        self.voxel_size: float | None = None
        self.reset()

    # ------------------------------------------------------------------ storage
    def reset(self) -> None:
        self.n = 0
        self.nb = 0
        self.n_render = 0  # renderable voxels, maintained incrementally
        self.table = HashTable()
        self.btable = HashTable()
        cap = 1024
        self.key = np.zeros(cap, np.int64)
        self.pos = np.zeros((cap, 3), np.float32)
        self.col = np.zeros((cap, 3), np.float32)
        self.weight = np.zeros(cap, np.float32)
        self.hits = np.zeros(cap, np.int32)
        self.misses = np.zeros(cap, np.int32)
        self.last_t = np.zeros(cap, np.int32)
        self.t_obs = np.zeros(cap, np.float32)
        self.block = np.zeros(cap, np.int32)
        self._init_extra(cap)
        bcap = 256
        self.bkey = np.zeros(bcap, np.int64)
        self.bcoord = np.zeros((bcap, 3), np.int64)
        self.bcount = np.zeros(bcap, np.int32)
        self.blast_t = np.zeros(bcap, np.int32)
        self.ring = np.full((bcap, self.cfg.ring_size), -1, np.int32)
        self.ring_desc = np.zeros((bcap, self.cfg.ring_size, 6), np.float32)
        self.ring_head = np.zeros(bcap, np.int32)

    def _init_extra(self, cap: int) -> None:
        """Hook for subclasses with extra per-voxel fields."""

    VOXEL_FIELDS = ("key", "pos", "col", "weight", "hits", "misses", "last_t", "t_obs", "block")
    # how `move_voxels` merges voxels that land in one: a weighted mean (by the named field), a sum or a max
    MERGE: ClassVar[dict[str, str]] = {"pos": "weight", "col": "weight", "t_obs": "weight", "weight": "sum",
                                       "hits": "sum", "misses": "sum", "last_t": "max"}
    BLOCK_FIELDS = ("bkey", "bcoord", "bcount", "blast_t", "ring", "ring_desc", "ring_head")

    def _voxel_fields(self) -> tuple[str, ...]:
        return self.VOXEL_FIELDS

    _FILL: ClassVar[dict[str, int]] = {"ring": -1}  # empty ring slots are -1; everything else starts at 0

    @classmethod
    def _grow_array(cls, a: np.ndarray, cap: int, name: str = "") -> np.ndarray:
        out = np.full((cap,) + a.shape[1:], cls._FILL.get(name, 0), a.dtype)
        out[: len(a)] = a
        return out

    def _ensure_voxels(self, n: int) -> None:
        cap = len(self.key)
        if n <= cap:
            return
        while cap < n:
            cap *= 2
        for name in self._voxel_fields():
            setattr(self, name, self._grow_array(getattr(self, name), cap, name))

    def _ensure_blocks(self, n: int) -> None:
        cap = len(self.bkey)
        if n <= cap:
            return
        while cap < n:
            cap *= 2
        for name in self.BLOCK_FIELDS:
            setattr(self, name, self._grow_array(getattr(self, name), cap, name))

    @property
    def block_edge(self) -> float:
        assert self.voxel_size is not None
        return self.cfg.block_size * self.voxel_size

    def block_centres(self, slots: np.ndarray | None = None) -> np.ndarray:
        c = self.bcoord[: self.nb] if slots is None else self.bcoord[slots]
        return (c + 0.5) * self.block_edge

    @property
    def block_radius(self) -> float:
        return 0.5 * np.sqrt(3.0) * self.block_edge

    def nbytes(self) -> int:
        total = self.table.nbytes + self.btable.nbytes
        for name in self._voxel_fields():
            total += getattr(self, name)[: self.n].nbytes
        for name in self.BLOCK_FIELDS:
            total += getattr(self, name)[: self.nb].nbytes
        return int(total)

    # ------------------------------------------------------------------ keys and blocks
    def voxel_coords(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P,3) world points -> (P,3) int64 voxel coordinates and (P,) bool in-range flags."""
        ijk = np.floor(pts / self.voxel_size).astype(np.int64)
        return ijk, self._in_range(ijk)

    def _in_range(self, ijk: np.ndarray) -> np.ndarray:
        """(P,) whether (P,3) voxel coordinates, and their block, fit the hash's key range."""
        return (np.abs(ijk) < COORD_LIMIT - self.cfg.block_size).all(axis=1)

    def _block_slots(self, ijk: np.ndarray, t: int) -> np.ndarray:
        """Block slot of each voxel coordinate, allocating missing blocks."""
        bc = np.floor_divide(ijk, self.cfg.block_size)
        bkeys = pack_coords(bc)
        ukeys, first, inv = np.unique(bkeys, return_index=True, return_inverse=True)
        slots = self.btable.lookup(ukeys)
        new = np.flatnonzero(slots < 0)
        if new.size:
            start = self.nb
            self._ensure_blocks(start + new.size)
            ns = np.arange(start, start + new.size, dtype=np.int32)
            self.bkey[ns] = ukeys[new]
            self.bcoord[ns] = bc[first[new]]
            self.bcount[ns] = 0
            self.blast_t[ns] = t
            self.ring[ns] = -1
            self.ring_desc[ns] = 0
            self.ring_head[ns] = 0
            self.btable.insert(ukeys[new], ns)
            slots[new] = ns
            self.nb += new.size
        return slots[inv.ravel()]

    # ------------------------------------------------------------------ fusion
    def integrate(self, pts: np.ndarray, cols: np.ndarray, w: np.ndarray, t: int, frame_id: int,
                  c2w: np.ndarray, K: np.ndarray) -> IntegrateResult:
        """Fuses (P,3) world points with (P,3) colours and (P,) weights observed at time ``t``.

        O(P log P) (one sort of the voxel keys); touches only the hit voxels and their blocks.
        """
        res = IntegrateResult()
        if len(pts) == 0:
            return res
        ijk, ok = self.voxel_coords(pts)
        if not ok.all():
            ijk, pts, cols, w = ijk[ok], pts[ok], cols[ok], w[ok]
        keys = pack_coords(ijk)
        # group by voxel with one sort; weighted sums of (w, w*xyz, w*rgb) in one reduceat
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        start = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
        ukeys, first = sk[start], order[start]
        data = np.empty((len(pts), 7))
        data[:, 0] = w
        data[:, 1:4] = pts * w[:, None]
        data[:, 4:7] = cols * w[:, None]
        sums = np.add.reduceat(data[order], start, axis=0)
        wsum, psum, csum = sums[:, 0], sums[:, 1:4], sums[:, 4:7]
        slots, new = self.slots_for(ukeys, ijk[first], t)
        before = int(self.renderable(slots).sum())
        old = ~new
        so = slots[old]
        if so.size:  # existing voxels: running weighted means
            W0 = self.weight[so].astype(np.float64)
            W1 = W0 + wsum[old]
            self.pos[so] = ((self.pos[so] * W0[:, None] + psum[old]) / W1[:, None]).astype(np.float32)
            self.col[so] = ((self.col[so] * W0[:, None] + csum[old]) / W1[:, None]).astype(np.float32)
            self.t_obs[so] = (self.t_obs[so] * W0 + t * wsum[old]) / W1
            self.weight[so] = W1
            self.hits[so] += 1
        sn = slots[new]
        k = int(sn.size)
        if k:
            self.pos[sn] = psum[new] / wsum[new][:, None]
            self.col[sn] = csum[new] / wsum[new][:, None]
            self.weight[sn] = wsum[new]
            self.hits[sn] = 1
        self.last_t[slots] = t
        self.n_render += int(self.renderable(slots).sum()) - before
        res.added, res.updated = k, int(so.size)
        touched_blocks = np.unique(self.block[slots])
        self.blast_t[touched_blocks] = t
        self._update_rings(touched_blocks, frame_id, c2w, K)
        return res

    def slots_for(self, ukeys: np.ndarray, ijk: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots of unique voxel keys (with their coordinates), creating empty voxels for new keys.

        Returns (slots (m,) int64, new (m,) bool). New voxels start with zero weight, hits and
        misses, so they are not drawn until something is fused into them.
        """
        slots = self.table.lookup(ukeys).astype(np.int64)
        new = slots < 0
        k = int(new.sum())
        if k:
            start = self.n
            self._ensure_voxels(start + k)
            ns = np.arange(start, start + k)
            self.key[ns] = ukeys[new]
            for name in self._voxel_fields():
                if name != "key":
                    getattr(self, name)[ns] = 0
            self.last_t[ns] = t
            self.t_obs[ns] = t
            self.block[ns] = self._block_slots(ijk[new], t)
            np.add.at(self.bcount, self.block[ns], 1)
            self.table.insert(ukeys[new], ns.astype(np.int32))
            self.n += k
            slots[new] = ns
        return slots, new

    def _update_rings(self, blocks: np.ndarray, frame_id: int, c2w: np.ndarray, K: np.ndarray) -> None:
        """Adds ``frame_id`` to each block's ring of observing frames.

        Each entry keeps a view descriptor of the block as that frame saw it: unit direction
        from the camera, log distance, and normalised image position ((u - cx) / fx, (v - cy) / fy).
        A free slot is used if there is one. Otherwise the new frame replaces the most similar
        entry (sum of the descriptor differences), so the ring keeps a diverse set of views and a
        newer view supersedes an older near-duplicate; the common case of a near-duplicate of the
        newest entry is checked first and costs O(1) per block.
        """
        if blocks.size == 0:
            return
        centres = self.block_centres(blocks)
        d = centres - c2w[:3, 3]
        dist = np.sqrt(np.einsum("ij,ij->i", d, d)) + 1e-12
        cam = transform_points(invert_c2w(c2w), centres)
        zc = np.where(cam[:, 2] > 1e-9, cam[:, 2], 1e-9)
        desc = np.empty((len(blocks), 6), np.float32)
        desc[:, :3] = d / dist[:, None]
        desc[:, 3] = 0.5 * np.log(dist)
        desc[:, 4] = cam[:, 0] / zc
        desc[:, 5] = cam[:, 1] / zc
        ring = self.ring[blocks]
        empty = ring < 0
        slot = np.argmax(empty, axis=1)
        full = ~empty.any(axis=1)
        head = self.ring_head[blocks]
        head_desc = self.ring_desc[blocks, head]
        same = full & (np.abs(head_desc - desc).sum(axis=1) < 0.05)
        slot[same] = head[same]
        rest = np.flatnonzero(full & ~same)
        if rest.size:
            dissim = np.abs(self.ring_desc[blocks[rest]] - desc[rest, None, :]).sum(axis=2)
            slot[rest] = np.argmin(dissim, axis=1)
        self.ring[blocks, slot] = frame_id
        self.ring_desc[blocks, slot] = desc
        self.ring_head[blocks] = slot

    # ------------------------------------------------------------------ carving
    def carve_margin(self, depth: np.ndarray, s: float) -> np.ndarray:
        c = self.cfg
        return c.carve_margin_rel * s + c.carve_margin_voxels * self.voxel_size + c.carve_margin_depth * depth

    def visible_voxels(self, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int], near: float) -> np.ndarray:
        """Slots of voxels whose block intersects the view frustum."""
        if self.n == 0:
            return np.zeros(0, np.int64)
        bvis = frustum_cull_spheres(self.block_centres(), self.block_radius, c2w, K, size, near)
        bvis &= self.bcount[: self.nb] > 0
        return np.flatnonzero(bvis[self.block[: self.n]])

    voxels_per_pixel = 1  # voxels a fused pixel creates (a TSDF band creates more)

    def carve_candidates(self, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int], t: int) -> np.ndarray:
        """Voxels in the frustum to test this write: at most ``carve_budget`` x pixels of them.

        When more are in view, a strided subset is tested, its offset rotating with ``t``, so
        every voxel is still tested every few frames while the cost per write stays O(pixels).
        """
        idx = self.visible_voxels(c2w, K, size, near=1e-6)
        budget = max(1, int(self.cfg.carve_budget * self.voxels_per_pixel * size[0] * size[1]))
        if idx.size > budget:
            stride = int(np.ceil(idx.size / budget))
            idx = idx[t % stride:: stride]
        return idx

    def carve(self, depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, t: int, s: float) -> IntegrateResult:
        """Counts a miss for every stored voxel a ray of this frame passed through (see module doc)."""
        res = IntegrateResult()
        if self.n == 0:
            return res
        H, W = depth.shape
        idx = self.carve_candidates(c2w, K, (H, W), t)
        if idx.size == 0:
            return res
        w2c = invert_c2w(c2w)
        p = transform_points(w2c, self.pos[idx])
        z = p[:, 2]
        front = z > 1e-6
        idx, p, z = idx[front], p[front], z[front]
        u = np.rint(K[0, 0] * p[:, 0] / z + K[0, 1] * p[:, 1] / z + K[0, 2]).astype(np.int64)
        v = np.rint(K[1, 1] * p[:, 1] / z + K[1, 2]).astype(np.int64)
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        idx, z, u, v = idx[inside], z[inside], u[inside], v[inside]
        dmin = minimum_filter(depth, size=3, mode="nearest")  # invalid (0) neighbours forbid carving
        d = dmin[v, u]
        miss = (d > 0) & (z < d - self.carve_margin(d, s))
        hit_idx = idx[miss]
        if hit_idx.size:
            before = self.renderable(hit_idx)
            self.misses[hit_idx] += 1
            after = self.renderable(hit_idx)
            res.missed = int(hit_idx.size)
            res.carved = int((before & ~after).sum())
            self.n_render += int(after.sum()) - int(before.sum())
        return res

    # ------------------------------------------------------------------ render
    def renderable(self, slots: np.ndarray) -> np.ndarray:
        h = self.hits[slots].astype(np.float32)
        return (h > 0) & (h >= self.cfg.carve_ratio * (h + self.misses[slots]))

    def render(self, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int], s: float,
               fill_holes: bool | None = None) -> RenderResult:
        """Draws the renderable voxels from one camera with a 1-pixel z-buffer splat."""
        H, W = size
        rgb = np.zeros((H, W, 3), np.float32)
        depth = np.zeros((H, W), np.float32)
        source_t = np.full((H, W), -1, np.int32)
        voxel = np.full((H, W), -1, np.int64)
        near = self.cfg.render_near_rel * s
        if self.n:
            idx = self.visible_voxels(c2w, K, size, near)
            idx = idx[self.renderable(idx)]
            if idx.size:
                w2c = invert_c2w(c2w)
                p = transform_points(w2c, self.render_positions(idx))
                z = p[:, 2]
                front = z > near
                idx, p, z = idx[front], p[front], z[front]
                u = K[0, 0] * p[:, 0] / z + K[0, 1] * p[:, 1] / z + K[0, 2]
                v = K[1, 1] * p[:, 1] / z + K[1, 2]
                pix, win = zbuffer_splat(u, v, z, size, surface_tol=self.cfg.render_surface_voxels * self.voxel_size)
                flat = voxel.reshape(-1)
                flat[pix] = idx[win]
                zflat = depth.reshape(-1)
                zflat[pix] = z[win]
                if self.cfg.fill_holes if fill_holes is None else fill_holes:
                    voxel = fill_single_holes(depth, voxel)
                    filled = (voxel >= 0) & (depth == 0)
                    if filled.any():
                        # depth of a filled pixel: its voxel's depth along this pixel's view
                        fz = self.render_positions(voxel[filled]) @ w2c[2, :3] + w2c[2, 3]
                        depth[filled] = np.maximum(fz, near)
        mask = voxel >= 0
        sel = voxel[mask]
        rgb[mask] = self.col[sel]
        source_t[mask] = self.last_t[sel]
        return RenderResult(rgb=rgb, depth=depth, mask=mask, source_t=source_t, voxel=voxel)

    def render_positions(self, slots: np.ndarray) -> np.ndarray:
        return self.pos[slots]

    # ------------------------------------------------------------------ eviction
    def evict_if_needed(self) -> int:
        """Evicts least-recently-seen blocks when ``max_voxels`` is exceeded; returns voxels removed."""
        cap = self.cfg.max_voxels
        if cap is None or self.n <= cap:
            return 0
        target = int((1.0 - self.cfg.evict_fraction) * cap)
        order = np.lexsort((np.arange(self.nb), self.blast_t[: self.nb]))  # oldest first, stable
        cum = np.cumsum(self.bcount[order])
        n_evict_blocks = int(np.searchsorted(cum, self.n - target, side="left")) + 1
        evict_b = np.zeros(self.nb, bool)
        evict_b[order[:n_evict_blocks]] = True
        return self._compact(~evict_b[self.block[: self.n]], ~evict_b)

    def _compact(self, keep_vox: np.ndarray, keep_blk: np.ndarray) -> int:
        removed = int((~keep_vox).sum())
        bmap = np.full(self.nb, -1, np.int32)
        bmap[keep_blk] = np.arange(int(keep_blk.sum()), dtype=np.int32)
        for name in self.BLOCK_FIELDS:
            arr = getattr(self, name)
            setattr(self, name, self._grow_array(arr[: self.nb][keep_blk], max(256, len(arr)), name))
        self.nb = int(keep_blk.sum())
        for name in self._voxel_fields():
            arr = getattr(self, name)
            setattr(self, name, self._grow_array(arr[: self.n][keep_vox], max(1024, len(arr)), name))
        self.n = int(keep_vox.sum())
        self.block[: self.n] = bmap[self.block[: self.n]]
        self.bcount[: self.nb] = np.bincount(self.block[: self.n], minlength=self.nb)
        self.table.rebuild(self.key[: self.n], np.arange(self.n, dtype=np.int32))
        self.btable.rebuild(self.bkey[: self.nb], np.arange(self.nb, dtype=np.int32))
        self.n_render = self.count_renderable()
        return removed

    # ------------------------------------------------------------------ loop corrections
    def move_voxels(self, R: np.ndarray, p: np.ndarray) -> None:
        """Moves every voxel's point by its own rigid motion, ``R[i] @ x + p[i]``, and rebuilds the hash.

        Args:
            R: (n, 3, 3) rotations and p: (n, 3) translations, one per stored voxel (in slot
                order; e.g. the share of a loop correction its ``t_obs`` calls for).

        A voxel that holds no fused point (a TSDF band voxel) moves its centre. Voxels that land in
        one are merged (``MERGE``: weighted means, sums, maxima); each block is rebuilt from the
        voxels that land in it and keeps the ring of observing frames of the block its first
        voxel came from. O(n log n); the hit / miss ratios, hence what is drawn, move with the voxels.
        """
        n = self.n
        if n == 0:
            return
        if R.shape != (n, 3, 3) or p.shape != (n, 3):
            raise ValueError(f"move_voxels needs (n, 3, 3) rotations and (n, 3) translations for n = {n} voxels, "
                             f"got {R.shape} and {p.shape}")
        v, cell = self.voxel_size, unpack_keys(self.key[:n])
        x = np.where((self.weight[:n] > 0)[:, None], self.pos[:n].astype(np.float64), (cell + 0.5) * v)
        moved = np.einsum("nij,nj->ni", R, x) + p
        # the new cell from the old one and the displacement, the point's offset in its cell clipped
        # into it (a float32 mean on a cell face must not change cells when nothing moves)
        inside = np.clip(x - cell * v, 0.0, v * (1 - 1e-6))
        ijk = cell + np.floor((inside + moved - x) / v).astype(np.int64)
        ok = self._in_range(ijk)
        keys = pack_coords(ijk)
        sel = np.flatnonzero(ok)
        order = sel[np.argsort(keys[sel], kind="stable")]
        sk = keys[order]
        start = np.flatnonzero(np.concatenate(([True], sk[1:] != sk[:-1])))
        first = order[start]
        count = np.diff(np.append(start, len(order)))
        old = {name: getattr(self, name)[:n] for name in self._voxel_fields()}
        old["pos"] = np.where((self.weight[:n] > 0)[:, None], moved, 0.0)
        merged: dict[str, np.ndarray] = {}
        for name, how in self.MERGE.items():
            a = old[name][order].astype(np.float64)
            if how == "sum":
                merged[name] = np.add.reduceat(a, start, axis=0)
            elif how == "max":
                merged[name] = np.maximum.reduceat(a, start, axis=0)
            else:
                merged[name] = _group_mean(a, old[how][order].astype(np.float64), start, count)
        # blocks: rebuilt from the moved voxels, each inheriting the old block of its first voxel
        vcoord = ijk[first]
        bc = np.floor_divide(vcoord, self.cfg.block_size)
        ubkeys, bfirst, binv = np.unique(pack_coords(bc), return_index=True, return_inverse=True)
        binv = binv.ravel()
        src = old["block"][first[bfirst]]
        blast = np.zeros(len(ubkeys), np.int64)
        np.maximum.at(blast, binv, self.blast_t[old["block"][first]])
        blocks = {"bkey": ubkeys, "bcoord": bc[bfirst], "bcount": np.bincount(binv, minlength=len(ubkeys)),
                  "blast_t": blast, "ring": self.ring[src], "ring_desc": self.ring_desc[src],
                  "ring_head": self.ring_head[src]}
        self.nb = len(ubkeys)
        for name in self.BLOCK_FIELDS:
            arr = getattr(self, name)
            setattr(self, name, self._grow_array(blocks[name].astype(arr.dtype), max(256, len(arr), self.nb), name))
        m = len(first)
        voxels = {**merged, "key": sk[start], "block": binv}
        for name in self._voxel_fields():
            arr = getattr(self, name)
            value = voxels[name] if name in voxels else arr[:n][first]
            setattr(self, name, self._grow_array(np.asarray(value).astype(arr.dtype), max(1024, len(arr)), name))
        self.n = m
        self.table.rebuild(self.key[:m], np.arange(m, dtype=np.int32))
        self.btable.rebuild(self.bkey[: self.nb], np.arange(self.nb, dtype=np.int32))
        self.n_render = self.count_renderable()

    def count_renderable(self) -> int:
        """O(N) recount (the incremental ``n_render`` must always equal it)."""
        return int(self.renderable(np.arange(self.n)).sum()) if self.n else 0

    # ------------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {name: getattr(self, name)[: self.n].copy() for name in self._voxel_fields()}
        out.update({name: getattr(self, name)[: self.nb].copy() for name in self.BLOCK_FIELDS})
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray], voxel_size: float | None) -> None:
        self.reset()
        self.voxel_size = voxel_size
        self.n = len(arrays["key"])
        self.nb = len(arrays["bkey"])
        self._ensure_voxels(max(self.n, 1))
        self._ensure_blocks(max(self.nb, 1))
        for name in self._voxel_fields():
            # memories saved before voxels kept their mean observation time: the newest one
            getattr(self, name)[: self.n] = arrays["last_t"] if name == "t_obs" and name not in arrays else arrays[name]
        for name in self.BLOCK_FIELDS:
            getattr(self, name)[: self.nb] = arrays[name]
        self.table.rebuild(self.key[: self.n], np.arange(self.n, dtype=np.int32))
        self.btable.rebuild(self.bkey[: self.nb], np.arange(self.nb, dtype=np.int32))
        self.n_render = self.count_renderable()
