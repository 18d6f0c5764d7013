"""Episodic keyframes: sparse, full-resolution frames promoted when the view is new.

Policy (SCENE_MEMORY.md 3.5): a frame is promoted when

- its largest overlap with an existing keyframe is below ``keyframe_overlap`` (tau_kf); the
  overlap is the share of the frame's static surface points (a fixed subsample of its depth)
  that the keyframe saw, tested against the keyframe's frustum and its stored depth, so a
  wall in between counts as not overlapping; or
- the mean absolute colour difference to the last keyframe on co-visible static points
  exceeds ``keyframe_photometric`` (tau_d: lighting change, new generated content); or
- a subject event fired (new, entered, exited, reidentified, lost).

At most ``max_keyframes`` (K_max) are kept: beyond that the most redundant keyframe, the one
with the highest overlap with another keyframe (older first on ties), is evicted. Pairwise
overlaps are kept in a matrix updated when a keyframe is added (O(K) per promotion).
"""

from __future__ import annotations

import numpy as np

from .camera_utils import invert_c2w, transform_points
from .config import SceneMemoryConfig
from .frame_bank import FrameBank

__all__ = ["KeyframeSet"]


class KeyframeSet:
    def __init__(self, config: SceneMemoryConfig) -> None:
        self.cfg = config
        self.reset()

    def reset(self) -> None:
        self.ids: list[int] = []
        self.samples: dict[int, np.ndarray] = {}
        self.ov = np.zeros((0, 0))  # symmetric pairwise overlap, rows/cols follow self.ids
        self.last_id: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def move(self, fid: int, R: np.ndarray, p: np.ndarray) -> None:
        """Moves keyframe ``fid``'s stored surface points by ``R @ x + p`` (a loop correction)."""
        if fid in self.samples:
            self.samples[fid] = self.samples[fid] @ R.T + p

    def overlaps(self, pts: np.ndarray, bank: FrameBank, s: float) -> np.ndarray:
        """(K,) share of the (S,3) points each keyframe saw."""
        return self.overlaps_with(pts, bank, s, self.ids)

    def overlaps_with(self, pts: np.ndarray, bank: FrameBank, s: float, ids: list[int]) -> np.ndarray:
        if not ids or len(pts) == 0:
            return np.zeros(len(ids))
        vis, _ = bank.visibility(np.asarray(ids), pts, s, self.cfg.visibility_margin_rel)
        return vis.mean(axis=1)

    def photometric_difference(self, pts: np.ndarray, cols: np.ndarray, bank: FrameBank, s: float) -> float | None:
        """Mean |rgb difference| to the last keyframe on co-visible points (None if too few)."""
        if self.last_id is None or self.last_id not in bank.full or len(pts) == 0:
            return None
        rgb, depth = bank.full[self.last_id]
        K = bank.K[self.last_id]
        p = transform_points(invert_c2w(bank.c2w[self.last_id]), pts)
        z = p[:, 2]
        zs = np.where(z > 1e-9, z, 1.0)
        u = np.rint(K[0, 0] * p[:, 0] / zs + K[0, 1] * p[:, 1] / zs + K[0, 2]).astype(np.int64)
        v = np.rint(K[1, 1] * p[:, 1] / zs + K[1, 2]).astype(np.int64)
        H, W = depth.shape
        ok = (z > 1e-9) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        d = np.zeros(len(pts))
        d[ok] = depth[v[ok], u[ok]]
        ok &= (d > 0) & (np.abs(z - d) <= self.cfg.visibility_margin_rel * s + 0.02 * d)
        if ok.sum() < max(8, 0.1 * len(pts)):
            return None
        return float(np.abs(rgb[v[ok], u[ok]] - cols[ok]).mean())

    def decide(self, pts: np.ndarray, cols: np.ndarray, bank: FrameBank, s: float,
               subject_event: bool) -> tuple[bool, str | None, float]:
        """Whether the frame with static sample points ``pts`` (colours ``cols``) becomes a keyframe.

        Returns (promote, reason, max_overlap). Reasons: "first", "overlap", "photometric",
        "subject_event".
        """
        if not self.ids:
            return True, "first", 0.0
        # the newest keyframe usually overlaps already: then the others need not be tested
        ov = self.overlaps_with(pts, bank, s, [self.ids[-1]])
        if not (len(pts) and ov.max() >= self.cfg.keyframe_overlap):
            ov = self.overlaps(pts, bank, s)
        max_ov = float(ov.max()) if ov.size else 0.0
        if len(pts) and max_ov < self.cfg.keyframe_overlap:
            return True, "overlap", max_ov
        diff = self.photometric_difference(pts, cols, bank, s)
        if diff is not None and diff > self.cfg.keyframe_photometric:
            return True, "photometric", max_ov
        if subject_event and self.cfg.keyframe_on_subject_event:
            return True, "subject_event", max_ov
        return False, None, max_ov

    def add(self, fid: int, pts: np.ndarray, bank: FrameBank, s: float) -> list[int]:
        """Adds a keyframe; returns the ids evicted to stay within K_max."""
        k = len(self.ids)
        ov = np.zeros((k + 1, k + 1))
        ov[:k, :k] = self.ov
        if k:
            fwd = self.overlaps(pts, bank, s)  # new frame's points seen by the others
            back = np.zeros(k)
            for j, other in enumerate(self.ids):
                sp = self.samples[other]
                if len(sp):
                    vis, _ = bank.visibility(np.array([fid]), sp, s, self.cfg.visibility_margin_rel)
                    back[j] = vis.mean()
            sym = np.maximum(fwd, back)
            ov[k, :k] = sym
            ov[:k, k] = sym
        self.ids.append(fid)
        self.samples[fid] = pts
        self.ov = ov
        self.last_id = fid
        evicted = []
        while len(self.ids) > self.cfg.max_keyframes:
            red = self.ov.copy()
            np.fill_diagonal(red, -1.0)
            j = int(np.argmax(red.max(axis=1)))  # ids are in time order: ties evict the older
            evicted.append(self.ids.pop(j))
            self.samples.pop(evicted[-1], None)
            self.ov = np.delete(np.delete(self.ov, j, axis=0), j, axis=1)
        if self.last_id in evicted:
            self.last_id = self.ids[-1] if self.ids else None
        return evicted
