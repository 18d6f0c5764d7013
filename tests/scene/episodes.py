"""Randomised subject episodes for T5 / T5c: subjects in view, camera away for N frames, back.

Each episode: the camera looks at 2-3 moving spheres for ``VISIBLE`` frames, turns 180 degrees
for N frames (the subjects are out of view; they keep moving at constant velocity), and turns
back for ``BACK`` frames. Only the GT dynamic mask is given (no tracker ids), so the memory
has to detect, associate and re-identify on its own. Ground-truth subjects are matched to
detections by the nearest true centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mem4d.scene import Observation, SceneMemory, SceneMemoryConfig
from mem4d.scene.camera_utils import project_points

from .fixtures import Room, Sphere, intrinsics, yaw_pose

SIZE = (36, 48)
K = intrinsics(48, 36)
VISIBLE, BACK = 6, 3
# (main colour, band colour): distinct appearances
PALETTE = [((0.9, 0.15, 0.15), (0.95, 0.85, 0.2)), ((0.15, 0.35, 0.95), (0.9, 0.9, 0.95)),
           ((0.2, 0.85, 0.3), (0.1, 0.3, 0.1)), ((0.95, 0.5, 0.1), (0.3, 0.1, 0.5)),
           ((0.7, 0.2, 0.9), (0.95, 0.95, 0.3)), ((0.1, 0.8, 0.85), (0.9, 0.3, 0.5))]


@dataclass
class EpisodeResult:
    n_subjects: int
    correct: int = 0
    swaps: int = 0
    kept: bool = True
    centre_errors: list[float] = field(default_factory=list)  # in units of s
    threshold: float = 0.0  # 0.05 + 0.01 * N / 10 (units of s)


def _valid(spheres: list[Sphere], cam: np.ndarray, N: int) -> bool:
    total = VISIBLE + N + BACK
    H, W = SIZE
    for t in sorted({0, VISIBLE - 1, VISIBLE + N, total - 1, *range(0, total, 10)}):
        cs = np.array([s.centre(t) for s in spheres])
        if (np.abs(cs) > np.array([2.7, 1.2, 2.7])).any():
            return False
        u, v, z = project_points(cs, cam, K)
        if (z < 1.0).any():  # stay in front: never inside the "away" view
            return False
        in_view = t < VISIBLE or t >= VISIBLE + N
        if in_view and not ((u > 6) & (u < W - 6) & (v > 6) & (v < H - 6)).all():
            return False
        for a in range(len(spheres)):
            for b in range(a + 1, len(spheres)):
                if not in_view:
                    continue  # unseen subjects may pass through each other
                if np.linalg.norm(cs[a] - cs[b]) < spheres[a].radius + spheres[b].radius + 0.15:
                    return False
                ra, rb = K[0, 0] * spheres[a].radius / z[a], K[0, 0] * spheres[b].radius / z[b]
                if np.hypot(u[a] - u[b], v[a] - v[b]) < ra + rb + 2:
                    return False
    return True


def random_episode(rng: np.random.Generator, N: int) -> tuple[np.ndarray, float, list[Sphere]]:
    """2-3 spheres of distinct colours at constant velocity, in view at the start and on return."""
    total = VISIBLE + N + BACK
    for _ in range(2000):
        n = int(rng.integers(2, 4))
        yaw = float(rng.uniform(0, 360))
        cam = yaw_pose(yaw, (rng.uniform(-0.2, 0.2), 0.0, rng.uniform(-0.2, 0.2)))
        cols = rng.choice(len(PALETTE), n, replace=False)
        spheres = []
        for k in range(n):
            c = cam[:3, :3] @ np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.2, 0.5), rng.uniform(1.6, 2.3)]) + cam[:3, 3]
            ang, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.001, min(0.004, 0.5 / total))
            vel = (np.cos(ang) * speed, 0.0, np.sin(ang) * speed)
            spheres.append(Sphere(tuple(c), float(rng.uniform(0.2, 0.3)), *PALETTE[cols[k]], velocity=vel))
        if _valid(spheres, cam, N):
            return cam, yaw, spheres
    raise RuntimeError("could not sample a valid episode")


def crossing_episode(rng: np.random.Generator, N: int) -> tuple[np.ndarray, float, list[Sphere]]:
    """Two identical spheres at different depths that swap sides while the camera is away."""
    for _ in range(2000):
        yaw = float(rng.uniform(0, 360))
        cam = yaw_pose(yaw, (rng.uniform(-0.2, 0.2), 0.0, rng.uniform(-0.2, 0.2)))
        R, o = cam[:3, :3], cam[:3, 3]
        d, z0, h = rng.uniform(0.4, 0.8), rng.uniform(1.5, 1.9), rng.uniform(-0.1, 0.4)
        t_cross = rng.uniform(VISIBLE + 0.2 * N, VISIBLE + 0.6 * N)  # they pass each other while unseen
        colours = PALETTE[int(rng.integers(len(PALETTE)))]
        spheres = []
        for side, dz in ((-1.0, 0.0), (1.0, 0.7)):
            c = R @ np.array([side * d, h, z0 + dz]) + o
            vel = R @ np.array([-side * d / t_cross, 0.0, rng.uniform(-0.002, 0.002)])
            spheres.append(Sphere(tuple(c), 0.25, *colours, velocity=tuple(vel)))
        if _valid(spheres, cam, N):
            return cam, yaw, spheres
    raise RuntimeError("could not sample a valid crossing episode")


def run_episode(cam: np.ndarray, yaw: float, spheres: list[Sphere], N: int,
                config: SceneMemoryConfig | None = None) -> EpisodeResult:
    room = Room(spheres=spheres)
    away = yaw_pose(yaw + 180.0, cam[:3, 3])
    mem = SceneMemory(config or SceneMemoryConfig())
    res = EpisodeResult(n_subjects=len(spheres), threshold=0.05 + 0.01 * N / 10)
    ids: dict[int, int] = {}
    away_frame = None
    t = 0
    for phase, pose, n_frames in (("visible", cam, VISIBLE), ("away", away, N), ("back", cam, BACK)):
        for k in range(n_frames):
            if phase == "away":
                # the subjects stay in front of the looking-at camera, so every away frame shows
                # the same static wall: render it once
                if away_frame is None:
                    away_frame = room.render(pose, K, SIZE, t=t)
                    assert not away_frame.dynamic_mask.any()
                fr = away_frame
            else:
                fr = room.render(pose, K, SIZE, t=t)
            if phase == "back" and k == 0:  # re-entry: what does the memory predict?
                views = {sv.id: sv for sv in mem.subjects(t)}
                s = mem.scene_scale
                for g, sid in ids.items():
                    sv = views.get(sid)
                    if sv is None or sv.status not in ("out_of_view", "occluded"):
                        res.kept = False
                        continue
                    res.centre_errors.append(float(np.linalg.norm(sv.pred_center_world - spheres[g].centre(t)) / s))
            rep = mem.write(Observation(t=t, rgb=fr.rgb, K=K, c2w=pose, depth=fr.depth, dynamic_mask=fr.dynamic_mask))
            if phase != "away":
                centres = np.array([s.centre(t) for s in spheres])
                seen = {}
                for det in rep.detections:
                    seen[int(np.argmin(np.linalg.norm(centres - det.centroid, axis=1)))] = det.subject_id
                if phase == "visible" and k == VISIBLE - 1:
                    ids = dict(seen)
                    assert len(ids) == len(spheres), "every subject must be detected before the camera turns"
                if phase == "back" and k == 0:
                    for g, sid in ids.items():
                        if seen.get(g) == sid:
                            res.correct += 1
                        elif seen.get(g) in ids.values():
                            res.swaps += 1
            t += 1
    return res
