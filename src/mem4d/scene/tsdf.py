"""Optional TSDF mode of the static layer (``static_mode="tsdf"``), spmem-style.

Same voxel hash, blocks, rings and renderer as `StaticLayer`; in addition every voxel keeps a
truncated signed distance (along the viewing ray, positive in front of the surface) and its
weight. Per write:

- every fused pixel updates the voxels on its ray within +-``tsdf_trunc_voxels`` voxel edges
  of the observed surface (O(pixels x band));
- every stored voxel in the frustum that lies clearly in front of the observed surface
  (by more than the truncation band, 3x3 min-depth test as in carving) is pulled towards
  +truncation: TSDF's implicit free-space carving, which removes subjects that moved away;
- the surface position and colour of a voxel come only from the samples at the surface.

A voxel is drawn when it holds a surface sample and its mean signed distance is within half a
voxel diagonal of zero (the zero crossing). Voxel positions are fused surface points, so renders
are as sharp as in points mode.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy.ndimage import minimum_filter

from .camera_utils import invert_c2w, transform_points
from .static_layer import IntegrateResult, StaticLayer
from .voxel_hash import pack_coords

__all__ = ["TSDFLayer"]


class TSDFLayer(StaticLayer):
    VOXEL_FIELDS = StaticLayer.VOXEL_FIELDS + ("sdf", "sdf_w")
    MERGE: ClassVar[dict[str, str]] = {**StaticLayer.MERGE, "sdf": "sdf_w", "sdf_w": "sum"}

    def _init_extra(self, cap: int) -> None:
        self.sdf = np.zeros(cap, np.float32)
        self.sdf_w = np.zeros(cap, np.float32)

    @property
    def voxels_per_pixel(self) -> int:  # type: ignore[override]
        return 2 * int(np.ceil(self.cfg.tsdf_trunc_voxels)) + 1

    @property
    def trunc(self) -> float:
        return self.cfg.tsdf_trunc_voxels * self.voxel_size

    def _update_sdf(self, pts: np.ndarray, sdf: np.ndarray, t: int) -> None:
        ijk, ok = self.voxel_coords(pts)
        if not ok.all():
            ijk, sdf = ijk[ok], sdf[ok]
        keys = pack_coords(ijk)
        ukeys, first, inv, cnt = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        ssum = np.bincount(inv.ravel(), weights=sdf, minlength=len(ukeys))
        slots, _ = self.slots_for(ukeys, ijk[first], t)
        before = int(self.renderable(slots).sum())
        w0 = self.sdf_w[slots].astype(np.float64)
        self.sdf[slots] = (self.sdf[slots] * w0 + ssum) / (w0 + cnt)
        self.sdf_w[slots] = w0 + cnt
        self.n_render += int(self.renderable(slots).sum()) - before

    def integrate(self, pts: np.ndarray, cols: np.ndarray, w: np.ndarray, t: int, frame_id: int,
                  c2w: np.ndarray, K: np.ndarray) -> IntegrateResult:
        res = super().integrate(pts, cols, w, t, frame_id, c2w, K)
        if len(pts) == 0:
            return res
        dirs = pts - c2w[:3, 3]
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-12
        n_side = int(np.ceil(self.cfg.tsdf_trunc_voxels))
        deltas = np.arange(-n_side, n_side + 1) * self.voxel_size
        band = (pts[None, :, :] + deltas[:, None, None] * dirs[None, :, :]).reshape(-1, 3)
        sdf = np.repeat(-deltas / self.trunc, len(pts)).clip(-1.0, 1.0)  # normalised, + in front
        self._update_sdf(band, sdf, t)
        return res

    def carve(self, depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, t: int, s: float) -> IntegrateResult:
        res = IntegrateResult()
        if self.n == 0:
            return res
        H, W = depth.shape
        idx = self.carve_candidates(c2w, K, (H, W), t)
        p = transform_points(invert_c2w(c2w), self.pos[idx])
        z = p[:, 2]
        zs = np.where(z > 1e-6, z, 1.0)
        u = np.rint(K[0, 0] * p[:, 0] / zs + K[0, 1] * p[:, 1] / zs + K[0, 2]).astype(np.int64)
        v = np.rint(K[1, 1] * p[:, 1] / zs + K[1, 2]).astype(np.int64)
        ok = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H) & (self.weight[idx] > 0)
        dmin = minimum_filter(depth, size=3, mode="nearest")
        d = np.zeros(len(idx))
        d[ok] = dmin[v[ok], u[ok]]
        free = ok & (d > 0) & (z < d - self.trunc - self.carve_margin(d, s))
        sl = idx[free]
        if sl.size:
            before = self.renderable(sl)
            w0 = self.sdf_w[sl].astype(np.float64)
            self.sdf[sl] = (self.sdf[sl] * w0 + 1.0) / (w0 + 1.0)
            self.sdf_w[sl] = w0 + 1.0
            self.misses[sl] += 1
            after = self.renderable(sl)
            res.missed = int(sl.size)
            res.carved = int((before & ~after).sum())
            self.n_render += int(after.sum()) - int(before.sum())
        return res

    def renderable(self, slots: np.ndarray) -> np.ndarray:
        half = 0.5 * np.sqrt(3.0) * self.voxel_size / self.trunc  # surface within half a voxel diagonal
        return (self.weight[slots] > 0) & (self.sdf_w[slots] > 0) & (np.abs(self.sdf[slots]) <= half + 1e-6)
