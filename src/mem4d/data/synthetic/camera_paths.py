"""Smooth camera trajectories inside a free region of the scene (scene frame: z up, metres).

Kinds:
  * handheld: a slow walk with smooth positional jitter and a wandering view direction;
  * orbit: an arc around a target that the camera keeps looking at;
  * forward: moving along the view direction with a little sway and bob;
  * rotation: a fixed camera centre panning (pure rotation, exactly zero translation);
  * loop: a closed ellipse whose last frames revisit the first views;
  * closeup (only when asked for, never drawn at random: `EXTRA_PATH_KINDS`): a slow handheld
    drift 0.5-2 m from a wall or whatever stands before it, looking at one point of it, as a
    phone films a desk or a shelf (the drawn kinds look into the open space, 2-7 m away).

`camera_speed` scales the per-frame motion (about 3.5 cm and 1.2 degrees per frame at 1.0).
Paths are shrunk (speed reduced, recorded as `effective_speed`) when they do not fit in the
region, and shifted so that the camera looks into the open space of the scene.

Rotations are OpenCV cam2world rotations: columns = camera x (right), y (down), z (forward).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

PATH_KINDS = ("handheld", "orbit", "forward", "rotation", "loop")  # drawn at random when no kind is given
EXTRA_PATH_KINDS = ("closeup",)  # only when asked for, so that every seed's random draw stays as it was
CLOSEUP_DISTANCE = (0.5, 2.0)  # metres from the camera to the surface it looks at (log-uniform)
STEP = 0.035  # metres per frame at speed 1
TURN = math.radians(1.2)  # radians per frame at speed 1
UP = np.array([0.0, 0.0, 1.0])


@dataclass
class CameraPath:
    kind: str
    positions: np.ndarray  # (T, 3)
    rotations: np.ndarray  # (T, 3, 3) cam2world
    info: dict = field(default_factory=dict)

    @property
    def cam2world(self) -> np.ndarray:
        T = self.positions.shape[0]
        out = np.tile(np.eye(4), (T, 1, 1))
        out[:, :3, :3] = self.rotations
        out[:, :3, 3] = self.positions
        return out

    @property
    def forward(self) -> np.ndarray:
        return self.rotations[:, :, 2]


LOOP_OVERLAP = 1.08  # a "loop" path turns 1.08 times: the last 8% of the clip re-traces the start


def look_rotation(forward: np.ndarray, roll: np.ndarray | float = 0.0) -> np.ndarray:
    """cam2world rotations (…,3,3) looking along `forward` (…,3) with z up and a roll (radians)."""
    f = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(f, UP)
    norm = np.linalg.norm(right, axis=-1, keepdims=True)
    right = np.where(norm > 1e-6, right / np.maximum(norm, 1e-12), np.array([1.0, 0.0, 0.0]))
    down = np.cross(f, right)
    roll = np.asarray(roll, dtype=np.float64)[..., None]
    r2 = np.cos(roll) * right + np.sin(roll) * down
    d2 = -np.sin(roll) * right + np.cos(roll) * down
    return np.stack([r2, d2, f], axis=-1)


def yaw_pitch_dir(yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Unit view directions from yaw (about z, from +x) and pitch (positive = up)."""
    cp = np.cos(pitch)
    return np.stack([cp * np.cos(yaw), cp * np.sin(yaw), np.sin(pitch)], axis=-1)


def smooth_noise(rng: np.random.Generator, T: int, dims: int, timescale: float, n: int = 4) -> np.ndarray:
    """(T, dims) smooth random signal with unit-ish amplitude varying over ~timescale frames."""
    t = np.arange(T, dtype=np.float64)[:, None, None]
    freq = rng.uniform(0.3, 1.0, size=(1, dims, n)) / timescale
    phase = rng.uniform(0, 2 * math.pi, size=(1, dims, n))
    amp = rng.uniform(0.5, 1.0, size=(1, dims, n))
    sig = (amp * np.sin(2 * math.pi * freq * t + phase)).sum(-1)
    return sig / math.sqrt(0.5 * n * 0.6)


def room_exit_distance(points: np.ndarray, dirs: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Distance along dirs from points (inside the box lo..hi) to the box boundary."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(dirs > 0, (hi - points) / dirs, np.where(dirs < 0, (lo - points) / dirs, np.inf))
    return t.min(axis=-1)


def _fit(
    rel: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
    forward: np.ndarray | None,
    bounds_lo: np.ndarray,
    bounds_hi: np.ndarray,
    candidates: int = 12,
) -> tuple[float, np.ndarray]:
    """Scale (<= 1) and shift that put relative positions inside [lo, hi], preferring open views."""
    ext_lo, ext_hi = rel.min(0), rel.max(0)
    extent = ext_hi - ext_lo
    avail = hi - lo
    ratios = np.where(extent > 1e-9, avail / np.maximum(extent, 1e-9), np.inf)
    scale = float(min(1.0, ratios.min() * 0.98))
    shift_lo = lo - scale * ext_lo
    shift_hi = hi - scale * ext_hi
    shift_hi = np.maximum(shift_hi, shift_lo)
    shifts = shift_lo + rng.random((candidates, 3)) * (shift_hi - shift_lo)
    if forward is None:
        return scale, shifts[0]
    sub = np.linspace(0, rel.shape[0] - 1, min(rel.shape[0], 8)).astype(int)
    fwd = forward[sub].copy()
    fwd[:, 2] = np.minimum(fwd[:, 2], 0.0)  # measure the view into the room, not the ceiling
    scores = []
    for s in shifts:
        pts = scale * rel[sub] + s
        scores.append(np.log(np.maximum(room_exit_distance(pts, fwd, bounds_lo, bounds_hi), 1e-3)).mean())
    return scale, shifts[int(np.argmax(scores))]


def make_camera_path(
    rng: np.random.Generator,
    kind: str,
    num_frames: int,
    speed: float,
    region_lo: np.ndarray,
    region_hi: np.ndarray,
    bounds_lo: np.ndarray,
    bounds_hi: np.ndarray,
    loop_frames: int | None = None,
) -> CameraPath:
    """A path of `kind` with positions in [region_lo, region_hi] (the free space for the camera).

    bounds_lo/hi: the scene's enclosure (room walls or courtyard), used to look into open space.
    loop_frames: frames a "loop" path takes to close (None: the clip's length, so the clip's
        last frames revisit its first views). A clip shorter than that is an arc of the loop:
        training clips of a few frames would otherwise turn 45 degrees or more per frame.
    """
    if kind not in PATH_KINDS + EXTRA_PATH_KINDS:
        raise ValueError(f"unknown camera_path {kind!r}; expected one of {PATH_KINDS + EXTRA_PATH_KINDS} or None")
    T = num_frames
    t = np.arange(T, dtype=np.float64)
    step, turn = STEP * speed, TURN * speed
    region_lo = np.asarray(region_lo, dtype=np.float64)
    region_hi = np.asarray(region_hi, dtype=np.float64)
    centre = 0.5 * (region_lo + region_hi)
    base_height = rng.uniform(max(region_lo[2], 1.15), min(region_hi[2], 1.75)) if region_hi[2] > 1.15 else centre[2]
    info: dict = {}

    def jitter(dims, timescale, n=4):
        return smooth_noise(rng, T, dims, timescale, n)

    if kind in ("handheld", "forward", "rotation"):
        yaw0 = rng.uniform(-math.pi, math.pi)
        pitch0 = math.radians(rng.uniform(-18.0, -2.0))
        if kind == "handheld":
            drift_dir = yaw0 + rng.uniform(-1.7, 1.7)
            drift = step * 0.8 * np.array([math.cos(drift_dir), math.sin(drift_dir), 0.0])
            rel = t[:, None] * drift + (0.02 + 0.4 * step) * jitter(3, 18.0) * np.array([1.0, 1.0, 0.4])
            ang = jitter(3, 22.0)
            yaw = yaw0 + rng.uniform(-0.4, 0.4) * turn * t + math.radians(5.0) * speed**0.5 * ang[:, 0]
            pitch = pitch0 + math.radians(3.0) * ang[:, 1]
            roll = math.radians(2.0) * ang[:, 2]
        elif kind == "forward":
            fwd = np.array([math.cos(yaw0), math.sin(yaw0), 0.0])
            side = np.array([-math.sin(yaw0), math.cos(yaw0), 0.0])
            sway = jitter(2, 15.0)
            rel = (t * step)[:, None] * fwd + 0.04 * sway[:, :1] * side + 0.012 * sway[:, 1:] * UP
            ang = jitter(3, 20.0)
            yaw = yaw0 + math.radians(2.0) * ang[:, 0]
            pitch = pitch0 + math.radians(1.5) * ang[:, 1]
            roll = math.radians(1.0) * ang[:, 2]
        else:  # rotation: the centre never moves
            direction = rng.choice([-1.0, 1.0])
            rel = np.zeros((T, 3))
            ang = jitter(3, 25.0)
            yaw = yaw0 + direction * turn * t + math.radians(3.0) * ang[:, 0]
            pitch = pitch0 + math.radians(4.0) * ang[:, 1]
            roll = math.radians(1.5) * ang[:, 2]
        rot = look_rotation(yaw_pitch_dir(yaw, pitch), roll)
        lo_fit = np.array([region_lo[0], region_lo[1], max(region_lo[2], base_height - 0.3)])
        hi_fit = np.array([region_hi[0], region_hi[1], min(region_hi[2], base_height + 0.3)])
        scale, shift = _fit(rel, lo_fit, hi_fit, rng, rot[:, :, 2], bounds_lo, bounds_hi)
        positions = scale * rel + shift
        info["effective_speed"] = float(speed * scale) if kind != "rotation" else float(speed)
    elif kind == "orbit":
        radius = rng.uniform(1.5, 3.2)
        direction = rng.choice([-1.0, 1.0])
        theta0 = rng.uniform(-math.pi, math.pi)
        dtheta = step * 1.3 / radius
        theta = theta0 + direction * dtheta * t
        height = base_height - rng.uniform(0.4, 1.0)
        rel = np.stack([radius * np.cos(theta), radius * np.sin(theta), np.zeros(T)], -1)
        rel = rel + 0.01 * jitter(3, 15.0)
        target_rel = np.array([0.0, 0.0, height - base_height])
        lo_fit = np.array([region_lo[0], region_lo[1], max(region_lo[2], base_height - 0.15)])
        hi_fit = np.array([region_hi[0], region_hi[1], min(region_hi[2], base_height + 0.15)])
        scale, shift = _fit(np.vstack([rel, [[0.0, 0.0, 0.0]]]), lo_fit, hi_fit, rng, None, bounds_lo, bounds_hi)
        positions = scale * rel + shift
        target = shift + target_rel
        ang = jitter(2, 20.0)
        look = target - positions
        yaw = np.arctan2(look[:, 1], look[:, 0]) + math.radians(2.0) * ang[:, 0]
        pitch = np.arctan2(look[:, 2], np.linalg.norm(look[:, :2], axis=-1)) + math.radians(1.5) * ang[:, 1]
        rot = look_rotation(yaw_pitch_dir(yaw, pitch), math.radians(1.0) * ang[:, 1])
        info.update(effective_speed=float(speed * scale), orbit_radius=float(radius * scale), target=target.tolist())
    elif kind == "closeup":
        yaw0 = rng.uniform(-math.pi, math.pi)
        view = yaw_pitch_dir(np.array([yaw0]), np.array([math.radians(rng.uniform(-30.0, -5.0))]))[0]
        start = region_lo + rng.random(3) * (region_hi - region_lo)
        start[2] = base_height
        surface = start + room_exit_distance(start[None], view[None], bounds_lo, bounds_hi)[0] * view
        distance = math.exp(rng.uniform(*np.log(CLOSEUP_DISTANCE)))
        side = np.array([-math.sin(yaw0), math.cos(yaw0), 0.0])
        rel = (t * step * 0.5 * rng.choice([-1.0, 1.0]))[:, None] * side + (0.01 + 0.2 * step) * jitter(3, 18.0)
        positions = np.clip(surface - distance * view + rel, region_lo, region_hi)
        target = surface + 0.1 * jitter(3, 25.0)
        ang = jitter(1, 20.0)
        rot = look_rotation(target - positions, math.radians(2.0) * ang[:, 0])
        info.update(effective_speed=float(speed * 0.5), target=surface.tolist(),
                    distance=float(np.linalg.norm(surface - positions, axis=-1).mean()))
    else:  # loop
        L = int(loop_frames) if loop_frames is not None else T
        radius = float(np.clip(step * max(L, 2) / (2 * math.pi), 0.35, 3.0))
        aspect = rng.uniform(0.6, 1.0)
        direction = rng.choice([-1.0, 1.0])
        theta0 = rng.uniform(-math.pi, math.pi)
        theta = theta0 + direction * 2 * math.pi * LOOP_OVERLAP * t / max(L - 1, 1)
        rel = np.stack([radius * np.cos(theta), radius * aspect * np.sin(theta), 0.05 * np.sin(2 * theta)], -1)
        outward = rng.random() < 0.6
        offset = rng.uniform(-0.9, 0.9) if outward else rng.uniform(-0.3, 0.3)
        pitch0 = math.radians(rng.uniform(-15.0, -3.0))
        # periodic wobble: a function of theta so that revisited views repeat exactly
        wobble = math.radians(3.0) * np.sin(3 * theta + rng.uniform(0, 2 * math.pi))
        lo_fit = np.array([region_lo[0], region_lo[1], max(region_lo[2], base_height - 0.1)])
        hi_fit = np.array([region_hi[0], region_hi[1], min(region_hi[2], base_height + 0.1)])
        scale, shift = _fit(rel, lo_fit, hi_fit, rng, None, bounds_lo, bounds_hi)
        positions = scale * rel + shift
        radial = np.arctan2(rel[:, 1], rel[:, 0])
        yaw = radial + offset + (0.0 if outward else math.pi) + wobble
        pitch = pitch0 + 0.5 * wobble
        rot = look_rotation(yaw_pitch_dir(yaw, pitch), 0.5 * wobble)
        info.update(
            effective_speed=float(speed * scale),
            loop_radius=float(radius * scale),
            loop_frames=L,
            looking="outward" if outward else "inward",
        )
    return CameraPath(kind, positions, rot, info)
