"""The frame bank: every written frame's pose, intrinsics, time, thumbnail and latent handle.

Thumbnails are 1/``thumb_factor`` of full resolution: the colour is block-averaged (uint8)
and the depth is block-max-pooled, so a depth test "is point x in front of what this frame
saw" is conservative at depth edges. Full-resolution colour and depth are kept only for
frames in the working window and for episodic keyframes; `release_full` drops them.
Generator latents are opaque: they are stored as given under the frame id (their handle).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .camera_utils import invert_c2w, transform_points_batch
from .loop_correction import move_poses
from .types import FrameRef

__all__ = ["FrameBank", "make_thumbnail", "thumbnail_K"]


def make_thumbnail(rgb: np.ndarray, depth: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) float rgb, (H,W) depth -> (h,w,3) uint8 block mean, (h,w) float32 block max (0 = invalid)."""
    H, W = depth.shape
    h, w = max(1, H // factor), max(1, W // factor)
    f = factor if H >= factor and W >= factor else 1
    if f == 1:
        h, w = H, W
    r = rgb[: h * f, : w * f].reshape(h, f, w, f, 3).mean(axis=(1, 3))
    d = depth[: h * f, : w * f].reshape(h, f, w, f).max(axis=(1, 3))
    return np.clip(np.rint(r * 255.0), 0, 255).astype(np.uint8), d.astype(np.float32)


def thumbnail_K(K: np.ndarray, factor: int, full_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of a block-averaged thumbnail: u' = (u + 0.5) / f - 0.5."""
    H, W = full_size
    f = factor if H >= factor and W >= factor else 1
    Kt = K.copy()
    Kt[0, 0] /= f
    Kt[0, 1] /= f
    Kt[1, 1] /= f
    Kt[0, 2] = (K[0, 2] + 0.5) / f - 0.5
    Kt[1, 2] = (K[1, 2] + 0.5) / f - 0.5
    return Kt


class FrameBank:
    """Per-frame records in write order; frame id = index."""

    def __init__(self, thumb_factor: int = 4) -> None:
        self.thumb_factor = thumb_factor
        self.reset()

    def reset(self) -> None:
        self.n = 0
        cap = 64
        self.t = np.zeros(cap, np.int64)
        self.c2w = np.zeros((cap, 4, 4))
        self.K = np.zeros((cap, 3, 3))
        self.size = np.zeros((cap, 2), np.int64)
        self.thumb_K = np.zeros((cap, 3, 3))
        self.centre = np.zeros((cap, 3))
        self.source: list[str] = []
        self.thumb_rgb: list[np.ndarray] = []
        self.thumb_depth: list[np.ndarray] = []
        self.latents: dict[int, Any] = {}
        self.full: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    ARRAYS = ("t", "c2w", "K", "size", "thumb_K", "centre")

    def _ensure(self, n: int) -> None:
        cap = len(self.t)
        if n <= cap:
            return
        while cap < n:
            cap *= 2
        for name in self.ARRAYS:
            a = getattr(self, name)
            b = np.zeros((cap,) + a.shape[1:], a.dtype)
            b[: len(a)] = a
            setattr(self, name, b)

    def add(self, t: int, c2w: np.ndarray, K: np.ndarray, rgb: np.ndarray, depth: np.ndarray,
            source: str, latent: Any = None) -> int:
        """Stores a frame (full resolution kept until `release_full`); returns its id."""
        fid = self.n
        self._ensure(fid + 1)
        H, W = depth.shape
        self.t[fid] = t
        self.c2w[fid] = c2w
        self.K[fid] = K
        self.size[fid] = (H, W)
        self.thumb_K[fid] = thumbnail_K(K, self.thumb_factor, (H, W))
        self.centre[fid] = c2w[:3, 3]
        tr, td = make_thumbnail(rgb, depth, self.thumb_factor)
        self.thumb_rgb.append(tr)
        self.thumb_depth.append(td)
        self.source.append(source)
        if latent is not None:
            self.latents[fid] = latent
        self.full[fid] = (rgb.astype(np.float32, copy=False), depth.astype(np.float32, copy=False))
        self.n += 1
        return fid

    def move(self, fids: np.ndarray, R: np.ndarray, p: np.ndarray) -> None:
        """Re-poses frames ``fids`` (M,) by world-side rigid motions: ``cam2world <- [R | p] @ cam2world``
        with R (M, 3, 3) and p (M, 3) (a loop correction; `SceneMemory.close_loop`)."""
        self.c2w[fids] = move_poses(self.c2w[fids], R, p)
        self.centre[fids] = self.c2w[fids, :3, 3]

    def release_full(self, fid: int) -> None:
        self.full.pop(fid, None)

    def visibility(self, fids: np.ndarray, pts: np.ndarray, s: float, margin_rel: float,
                   margin_depth: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
        """Whether each of (S,3) world points was visible in each frame of ``fids`` (M,).

        Returns (M, S) bool visibility (inside the thumbnail, not behind the max-pooled depth
        by more than ``margin_rel * s + margin_depth * z``) and (M, S) camera depth z.
        """
        fids = np.asarray(fids, dtype=np.int64)
        M, S = len(fids), len(pts)
        if M == 0 or S == 0:
            return np.zeros((M, S), bool), np.zeros((M, S))
        w2c = invert_c2w(self.c2w[fids])  # (M, 4, 4)
        p = transform_points_batch(w2c, pts)
        z = p[..., 2]
        zs = np.where(z > 1e-9, z, 1.0)
        Kt = self.thumb_K[fids]
        u = np.rint((Kt[:, None, 0, 0] * p[..., 0] + Kt[:, None, 0, 1] * p[..., 1]) / zs + Kt[:, None, 0, 2]).astype(np.int64)
        v = np.rint(Kt[:, None, 1, 1] * p[..., 1] / zs + Kt[:, None, 1, 2]).astype(np.int64)
        shapes = {self.thumb_depth[f].shape for f in fids}
        if len(shapes) == 1:  # one gather over the stacked thumbnails
            h, w = shapes.pop()
            ok = (z > 1e-9) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
            flat = np.concatenate([self.thumb_depth[f].reshape(-1) for f in fids])
            lin = np.arange(M)[:, None] * (h * w) + np.clip(v, 0, h - 1) * w + np.clip(u, 0, w - 1)
            d = np.where(ok, flat[lin], 0.0)
        else:
            ok = np.zeros((M, S), bool)
            d = np.zeros((M, S))
            for row, f in enumerate(fids):
                h, w = self.thumb_depth[f].shape
                ok[row] = (z[row] > 1e-9) & (u[row] >= 0) & (u[row] < w) & (v[row] >= 0) & (v[row] < h)
                d[row, ok[row]] = self.thumb_depth[f][v[row, ok[row]], u[row, ok[row]]]
        vis = ok & (d > 0) & (z <= d + margin_rel * s + margin_depth * d)
        return vis, z

    def ref(self, fid: int, *, score: float = 0.0, overlap: float = 0.0, gain: float = 0.0,
            is_keyframe: bool = False, full: bool = True) -> FrameRef:
        """A `FrameRef`: full resolution when held (and ``full``), the thumbnail otherwise."""
        if full and fid in self.full:
            rgb, depth = self.full[fid]
            K = self.K[fid].copy()
        else:
            rgb = self.thumb_rgb[fid].astype(np.float32) / 255.0
            depth = self.thumb_depth[fid]
            K = self.thumb_K[fid].copy()
        latent = self.latents.get(fid)
        return FrameRef(
            frame_id=int(fid), t=int(self.t[fid]), c2w=self.c2w[fid].copy(), K=K, score=float(score),
            overlap=float(overlap), rgb_or_thumb=rgb, depth=depth,
            latent_handle=int(fid) if latent is not None else None, latent=latent,
            is_keyframe=is_keyframe, source=self.source[fid], gain=float(gain))

    def nbytes(self) -> int:
        total = sum(getattr(self, name)[: self.n].nbytes for name in self.ARRAYS)
        total += sum(a.nbytes for a in self.thumb_rgb) + sum(a.nbytes for a in self.thumb_depth)
        total += sum(r.nbytes + d.nbytes for r, d in self.full.values())
        for lat in self.latents.values():
            total += int(getattr(lat, "nbytes", 0) or 0)
        return int(total)
