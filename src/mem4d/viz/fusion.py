"""The static point cloud of a stream, fused frame by frame into a bounded voxel grid.

Each frame contributes its world points that are

* finite, with a valid (> 0) depth when a depth map is given,
* confident: ``conf >= conf_threshold`` (the model's confidence is ``1 + exp(.) >= 1``; a
  frame may bring its own threshold, as `mem4d reconstruct`'s per-frame ``auto`` does),
* static: ``dynamic_prob <= dynamic_threshold`` (0.5) when the model has a motion head
  (without one nothing is removed as moving).

Points are binned into cubic voxels of side ``voxel_size``; a voxel keeps the running mean of
its points' positions and colours and how many points fell in it. The grid is a sorted array
of 63-bit voxel keys (21 bits per axis, so +-2^20 voxels around the origin; points beyond are
dropped and counted), merged with each frame in O(N) - no Python loop over points.

Memory is bounded: when the grid would exceed ``max_voxels``, the voxel size doubles and the
voxels are merged (weighted by their counts), as often as needed; ``coarsenings`` counts how
often. 2 million voxels take about 72 MB. Left as ``None``, ``voxel_size`` is chosen on the
first frame with valid points: ``auto_pixels`` pixel footprints at that frame's median depth
(``auto_pixels * median_depth / fx``).

Example::

    fusion = VoxelFusion(voxel_size=None, conf_threshold=1.5)
    for out, rgb in frames:
        fusion.add(out.pts_world[0], rgb, conf=out.conf_world[0], dynamic_prob=..., depth=..., fx=...)
    xyz, colours, counts = fusion.points()
"""

from __future__ import annotations

import numpy as np

__all__ = ["VoxelFusion"]

_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1


def _keys(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.int64) + _OFFSET
    return (q[:, 0] << (2 * _BITS)) | (q[:, 1] << _BITS) | q[:, 2]


class VoxelFusion:
    """Confidence-filtered, moving-point-free, voxel-downsampled world points (see module docstring)."""

    def __init__(self, voxel_size: float | None = None, *, max_voxels: int = 2_000_000, conf_threshold: float = 1.5,
                 dynamic_threshold: float = 0.5, auto_pixels: float = 2.0) -> None:
        if voxel_size is not None and not (np.isfinite(voxel_size) and voxel_size > 0):
            raise ValueError(f"voxel_size must be > 0 metres (or None for automatic), got {voxel_size}")
        if not isinstance(max_voxels, (int, np.integer)) or max_voxels < 1:
            raise ValueError(f"max_voxels must be a positive integer, got {max_voxels!r}")
        if not np.isfinite(conf_threshold):
            raise ValueError(f"conf_threshold must be finite, got {conf_threshold}")
        self.voxel_size = None if voxel_size is None else float(voxel_size)
        self.max_voxels = int(max_voxels)
        self.conf_threshold = float(conf_threshold)
        self.dynamic_threshold = float(dynamic_threshold)
        self.auto_pixels = float(auto_pixels)
        self.coarsenings = 0
        self.frames = 0
        self.points_in = 0  # points offered (after filtering) over the stream
        self.points_out_of_range = 0
        self._keys = np.zeros(0, np.int64)
        self._xyz = np.zeros((0, 3), np.float32)  # running mean position per voxel
        self._rgb = np.zeros((0, 3), np.float32)  # running mean colour (0..255)
        self._count = np.zeros(0, np.uint32)

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._xyz.nbytes + self._rgb.nbytes + self._count.nbytes)

    def select(self, pts_world: np.ndarray, conf: np.ndarray | None = None, dynamic_prob: np.ndarray | None = None,
               depth: np.ndarray | None = None, conf_threshold: float | None = None) -> np.ndarray:
        """The (H, W) mask of pixels this fusion would keep (``conf_threshold``: this frame's, else the fusion's)."""
        mask = np.isfinite(pts_world).all(axis=-1)
        if conf is not None:
            mask &= conf >= (self.conf_threshold if conf_threshold is None else conf_threshold)
        if dynamic_prob is not None:
            mask &= ~(dynamic_prob > self.dynamic_threshold)
        if depth is not None:
            mask &= np.isfinite(depth) & (depth > 0)
        return mask

    def add(self, pts_world: np.ndarray, rgb: np.ndarray | None = None, *, conf: np.ndarray | None = None,
            dynamic_prob: np.ndarray | None = None, depth: np.ndarray | None = None, fx: float | None = None,
            conf_threshold: float | None = None) -> int:
        """Fuses one frame: pts_world (H, W, 3), rgb (H, W, 3) uint8, conf / dynamic_prob / depth (H, W).

        ``conf_threshold`` overrides the fusion's threshold for this frame. Returns the number of
        points that passed the filters.
        """
        pts_world = np.asarray(pts_world)
        mask = self.select(pts_world, conf, dynamic_prob, depth, conf_threshold)
        self.frames += 1
        if self.voxel_size is None:
            self._choose_voxel_size(mask, pts_world, depth, fx)
            if self.voxel_size is None:
                return 0
        pts = pts_world[mask].astype(np.float64)
        if pts.shape[0] == 0:
            return 0
        cols = (np.asarray(rgb)[mask].astype(np.float64) if rgb is not None
                else np.full((pts.shape[0], 3), 128.0))
        self.points_in += pts.shape[0]
        self._merge(pts, cols, np.ones(pts.shape[0], np.float64))
        while len(self) > self.max_voxels:
            self._coarsen()
        return int(pts.shape[0])

    def _choose_voxel_size(self, mask: np.ndarray, pts_world: np.ndarray, depth: np.ndarray | None,
                           fx: float | None) -> None:
        if not mask.any():
            return
        if depth is not None and fx is not None and fx > 0:
            d = float(np.median(depth[mask]))
            size = self.auto_pixels * d / float(fx)
        else:  # no camera: 1/500 of the spread of the points
            p = pts_world[mask]
            size = float(np.linalg.norm(np.percentile(p, 95, axis=0) - np.percentile(p, 5, axis=0))) / 500.0
        if np.isfinite(size) and size > 0:
            self.voxel_size = size

    def _merge(self, pts: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> None:
        """Adds weighted points (positions float64, colours 0..255) into the grid."""
        assert self.voxel_size is not None
        q = np.floor(pts / self.voxel_size)
        inside = (np.abs(q) < _OFFSET - 1).all(axis=1)
        if not inside.all():
            self.points_out_of_range += int((~inside).sum())
            q, pts, cols, weights = q[inside], pts[inside], cols[inside], weights[inside]
            if q.shape[0] == 0:
                return
        keys = _keys(q)
        uk, inv = np.unique(keys, return_inverse=True)
        inv = inv.reshape(-1)
        w = np.bincount(inv, weights=weights, minlength=uk.shape[0])
        sum_xyz = np.stack([np.bincount(inv, weights=pts[:, i] * weights, minlength=uk.shape[0]) for i in range(3)], -1)
        sum_rgb = np.stack([np.bincount(inv, weights=cols[:, i] * weights, minlength=uk.shape[0]) for i in range(3)], -1)
        n = len(self)
        pos = np.searchsorted(self._keys, uk)
        hit = pos < n
        hit[hit] = self._keys[pos[hit]] == uk[hit]
        if hit.any():
            at = pos[hit]
            old = self._count[at].astype(np.float64)
            total = old + w[hit]
            self._xyz[at] = ((self._xyz[at] * old[:, None] + sum_xyz[hit]) / total[:, None]).astype(np.float32)
            self._rgb[at] = ((self._rgb[at] * old[:, None] + sum_rgb[hit]) / total[:, None]).astype(np.float32)
            self._count[at] = np.minimum(total, np.iinfo(np.uint32).max).astype(np.uint32)
        miss = ~hit
        if miss.any():
            at = pos[miss]
            wm = w[miss]
            self._keys = np.insert(self._keys, at, uk[miss])
            self._xyz = np.insert(self._xyz, at, (sum_xyz[miss] / wm[:, None]).astype(np.float32), axis=0)
            self._rgb = np.insert(self._rgb, at, (sum_rgb[miss] / wm[:, None]).astype(np.float32), axis=0)
            self._count = np.insert(self._count, at, np.maximum(np.round(wm), 1).astype(np.uint32))

    def _coarsen(self) -> None:
        """Doubles the voxel size and merges voxels (weighted by their point counts)."""
        assert self.voxel_size is not None
        xyz, rgb, count = self._xyz.astype(np.float64), self._rgb.astype(np.float64), self._count.astype(np.float64)
        self.voxel_size *= 2.0
        self.coarsenings += 1
        self._keys = np.zeros(0, np.int64)
        self._xyz = np.zeros((0, 3), np.float32)
        self._rgb = np.zeros((0, 3), np.float32)
        self._count = np.zeros(0, np.uint32)
        self._merge(xyz, rgb, count)

    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xyz (N, 3) float32, rgb (N, 3) uint8, counts (N,) uint32) of the fused voxels."""
        rgb = np.clip(np.round(self._rgb), 0, 255).astype(np.uint8)
        return self._xyz.copy(), rgb, self._count.copy()
