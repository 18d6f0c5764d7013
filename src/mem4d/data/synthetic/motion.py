"""Moving objects: rigid bodies with smooth trajectories and articulated walkers.

A `MovingObject` is a set of primitive parts with per-frame poses `local2scene` (T, 4, 4) in the scene frame
(z up, metres). Rigid objects have one rigid motion for all parts; articulated ones (the
walker: torso, head, two legs, two arms; the cart: body and two spinning wheels) move their
parts relative to a root that follows a ground path. The exact per-part poses are the ground
truth for scene flow (`local2scene[t+1] @ inv(local2scene[t])` carries a surface point from t to t+1).

Every object also has a bounding vertical cylinder per frame (centre xy, radius, z range),
used by the scene sampler to keep objects away from the camera, the walls and the furniture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .shapes import BOX, CYLINDER, SPHERE

OBJECT_KINDS = ("walker", "slider", "roller", "bouncer", "flyer", "cart")


@dataclass
class Part:
    kind: int  # shapes.BOX / SPHERE / CYLINDER
    size: np.ndarray  # (3,) see shapes
    local2scene: np.ndarray  # (T, 4, 4) local-to-scene
    slot: int = 0  # material slot within the object
    name: str = ""


@dataclass
class MovingObject:
    kind: str
    parts: list[Part]
    centre_xy: np.ndarray  # (T, 2) bounding cylinder axis
    radius: float  # bounding cylinder radius
    z_range: np.ndarray  # (T, 2) bottom and top
    num_slots: int = 1
    info: dict = field(default_factory=dict)

    @property
    def centre(self) -> np.ndarray:
        """(T, 3) centre of the bounding cylinder."""
        return np.concatenate([self.centre_xy, self.z_range.mean(-1, keepdims=True)], axis=-1)


@dataclass
class GroundPath:
    """p(t) = anchor + velocity (t - t_anchor) + lateral sinusoidal wiggle, on the ground."""

    anchor: np.ndarray  # (2,)
    t_anchor: float
    velocity: np.ndarray  # (2,) metres per frame
    wiggle: float  # lateral amplitude in metres
    wiggle_period: float  # frames
    wiggle_phase: float

    def _side(self) -> np.ndarray:
        v = self.velocity
        n = np.linalg.norm(v)
        return np.array([-v[1], v[0]]) / n if n > 1e-9 else np.zeros(2)

    def position(self, t: np.ndarray) -> np.ndarray:
        s = t - self.t_anchor
        w = 2 * math.pi / self.wiggle_period
        lateral = self.wiggle * (np.sin(w * s + self.wiggle_phase) - math.sin(self.wiggle_phase))
        return self.anchor + s[:, None] * self.velocity + lateral[:, None] * self._side()

    def velocity_at(self, t: np.ndarray) -> np.ndarray:
        s = t - self.t_anchor
        w = 2 * math.pi / self.wiggle_period
        return self.velocity + (self.wiggle * w * np.cos(w * s + self.wiggle_phase))[:, None] * self._side()


def rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(…,4,4) from rotations (…,3,3) and translations (…,3)."""
    out = np.zeros(R.shape[:-2] + (4, 4))
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def rot_z(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def rot_y(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_x(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: rotations (…,3,3) about unit axes (…,3) by angles (…)."""
    axis = np.asarray(axis, dtype=np.float64)
    angle = np.asarray(angle, dtype=np.float64)[..., None, None]
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    K = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + np.sin(angle) * K + (1 - np.cos(angle)) * (K @ K)


def _heading(path: GroundPath, T: int) -> np.ndarray:
    v = path.velocity_at(np.arange(T, dtype=np.float64))
    return np.unwrap(np.arctan2(v[:, 1], v[:, 0]))


def _distance(path: GroundPath, T: int) -> np.ndarray:
    """Arc length travelled from frame 0, per frame."""
    fine = np.arange(0, max(T - 1, 0) * 4 + 1, dtype=np.float64) / 4.0
    p = path.position(fine)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=-1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    return cum[::4][:T]


def make_walker(rng: np.random.Generator, path: GroundPath, T: int, ground_z: float = 0.0) -> MovingObject:
    """Torso + head + two legs + two arms, legs and arms swinging with the distance walked."""
    H = rng.uniform(1.45, 1.9)
    t = np.arange(T, dtype=np.float64)
    xy = path.position(t)
    yaw = _heading(path, T)
    stride = 0.8 * H  # distance per full gait cycle
    phase = 2 * math.pi * _distance(path, T) / stride + rng.uniform(0, 2 * math.pi)
    amp = rng.uniform(0.35, 0.5)
    hip = 0.48 * H
    bob = 0.012 * H * np.cos(2 * phase)
    root = rigid(rot_z(yaw), np.concatenate([xy, np.full((T, 1), ground_z)], -1))

    def local(R: np.ndarray, joint: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """root @ [joint translation] @ R @ [offset translation]."""
        M = rigid(R, np.broadcast_to(joint, R.shape[:-2] + (3,)) + np.einsum("tij,j->ti", R, offset))
        return root @ M

    parts = []
    leg_half = np.array([0.06 * H, 0.06 * H, 0.235 * H])
    arm_half = np.array([0.038 * H, 0.038 * H, 0.19 * H])
    torso_half = np.array([0.09 * H, 0.16 * H, 0.16 * H])
    lean = rng.uniform(0.0, 0.08)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        swing = sign * amp * np.sin(phase)
        joint = np.stack([np.zeros(T), np.full(T, sign * 0.075 * H), hip + 0.2 * bob], -1)
        parts.append(
            Part(
                BOX,
                leg_half,
                local(rot_y(swing), joint, np.array([0.0, 0.0, -leg_half[2]])),
                slot=1,
                name=f"{side}_leg",
            )
        )
        joint = np.stack(
            [np.zeros(T), np.full(T, sign * (torso_half[1] + arm_half[0] + 0.005)), hip + 0.30 * H + bob], -1
        )
        parts.append(
            Part(
                BOX,
                arm_half,
                local(rot_y(-0.8 * swing), joint, np.array([0.0, 0.0, -arm_half[2] + 0.02 * H])),
                slot=2,
                name=f"{side}_arm",
            )
        )
    torso_R = rot_y(np.full(T, lean) + 0.02 * np.sin(2 * phase))
    joint = np.stack([np.zeros(T), np.zeros(T), hip + bob], -1)
    parts.append(
        Part(
            BOX,
            torso_half,
            local(torso_R, joint, np.array([0.0, 0.0, torso_half[2] + 0.005 * H])),
            slot=0,
            name="torso",
        )
    )
    head_r = 0.075 * H
    parts.append(
        Part(
            SPHERE,
            np.full(3, head_r),
            local(
                torso_R @ rot_z(0.15 * np.sin(0.5 * phase)),
                joint,
                np.array([0.0, 0.0, 2 * torso_half[2] + head_r + 0.03 * H]),
            ),
            slot=3,
            name="head",
        )
    )
    z = np.stack([np.full(T, ground_z), np.full(T, ground_z + 1.02 * H)], -1)
    return MovingObject("walker", parts, xy, 0.3 * H, z, num_slots=4, info={"height": float(H)})


def make_rigid(
    rng: np.random.Generator,
    kind: str,
    path: GroundPath,
    T: int,
    ground_z: float = 0.0,
    fly_height: float | None = None,
) -> MovingObject:
    """A rigid object (slider, roller, bouncer, flyer) or a cart with spinning wheels."""
    t = np.arange(T, dtype=np.float64)
    xy = path.position(t)
    yaw = _heading(path, T)
    if kind == "slider":
        shape = BOX if rng.random() < 0.6 else CYLINDER
        if shape == BOX:
            size = np.array([rng.uniform(0.15, 0.4), rng.uniform(0.15, 0.4), rng.uniform(0.12, 0.45)])
            radius = float(np.hypot(size[0], size[1]))
        else:
            size = np.array([rng.uniform(0.15, 0.35)] * 2 + [rng.uniform(0.15, 0.5)])
            radius = float(size[0])
        spin = rng.uniform(-0.05, 0.05) * t if rng.random() < 0.5 else 0.0
        R = rot_z(yaw + spin)
        centre = np.concatenate([xy, np.full((T, 1), ground_z + size[2])], -1)
        parts = [Part(shape, size, rigid(R, centre))]
        z = np.stack([np.full(T, ground_z), np.full(T, ground_z + 2 * size[2])], -1)
    elif kind == "roller":
        r = rng.uniform(0.15, 0.4)
        p = np.concatenate([xy, np.full((T, 1), ground_z + r)], -1)
        R = np.empty((T, 3, 3))
        R[0] = rot_z(rng.uniform(0, 2 * math.pi)) @ rot_x(rng.uniform(0, 2 * math.pi))
        for i in range(1, T):
            step = p[i] - p[i - 1]
            dist = float(np.linalg.norm(step))
            if dist < 1e-12:
                R[i] = R[i - 1]
                continue
            axis = np.cross(np.array([0.0, 0.0, 1.0]), step / dist)
            R[i] = axis_angle(axis, dist / r) @ R[i - 1]
        parts = [Part(SPHERE, np.full(3, r), rigid(R, p))]
        radius = r
        z = np.stack([np.full(T, ground_z), np.full(T, ground_z + 2 * r)], -1)
    elif kind == "bouncer":
        shape = SPHERE if rng.random() < 0.5 else BOX
        size = np.full(3, rng.uniform(0.15, 0.3)) if shape == SPHERE else rng.uniform(0.12, 0.28, size=3)
        hop = rng.uniform(0.2, 0.6)
        period = rng.uniform(10.0, 24.0)
        height = ground_z + size[2] + hop * np.abs(np.sin(math.pi * t / period + rng.uniform(0, math.pi)))
        R = rot_z(yaw + rng.uniform(-0.04, 0.04) * t) @ rot_y(rng.uniform(-0.04, 0.04) * t)
        parts = [Part(shape, size, rigid(R, np.concatenate([xy, height[:, None]], -1)))]
        radius = float(np.linalg.norm(size))
        z = np.stack([height - radius, height + radius], -1)
    elif kind == "flyer":
        shape = [BOX, SPHERE, CYLINDER][int(rng.integers(3))]
        if shape == CYLINDER:
            size = np.array([rng.uniform(0.12, 0.3)] * 2 + [rng.uniform(0.1, 0.35)])
        elif shape == SPHERE:
            size = np.full(3, rng.uniform(0.15, 0.35))
        else:
            size = rng.uniform(0.1, 0.35, size=3)
        h0 = fly_height if fly_height is not None else rng.uniform(0.8, 1.8)
        height = h0 + 0.15 * np.sin(2 * math.pi * t / rng.uniform(20, 50) + rng.uniform(0, 2 * math.pi))
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        R = axis_angle(np.broadcast_to(axis, (T, 3)), rng.uniform(0.02, 0.07) * t + rng.uniform(0, 2 * math.pi))
        R = R @ rot_x(rng.uniform(0, math.pi))
        parts = [Part(shape, size, rigid(R, np.concatenate([xy, height[:, None]], -1)))]
        radius = float(np.linalg.norm(size)) if shape != SPHERE else float(size[0])
        z = np.stack([height - radius, height + radius], -1)
    elif kind == "cart":
        wheel_r = rng.uniform(0.12, 0.22)
        body = np.array([rng.uniform(0.25, 0.45), rng.uniform(0.15, 0.25), rng.uniform(0.08, 0.18)])
        wheel_w = 0.04
        root = rigid(rot_z(yaw), np.concatenate([xy, np.full((T, 1), ground_z)], -1))
        body2scene = root @ rigid(np.eye(3), np.array([0.0, 0.0, wheel_r + body[2]]))
        parts = [
            Part(
                BOX,
                body,
                np.broadcast_to(body2scene, (T, 4, 4)).copy() if body2scene.ndim == 2 else body2scene,
                slot=0,
                name="body",
            )
        ]
        spin = _distance(path, T) / wheel_r
        for sign in (1.0, -1.0):
            # cylinder axis (local z) along the cart's lateral axis, spinning as it rolls
            R = rot_x(np.full(T, -sign * math.pi / 2)) @ rot_z(sign * spin)
            offset = np.array([0.0, sign * (body[1] + wheel_w + 0.01), wheel_r])
            parts.append(
                Part(
                    CYLINDER,
                    np.array([wheel_r, wheel_r, wheel_w]),
                    root @ rigid(R, np.broadcast_to(offset, (T, 3))),
                    slot=1,
                    name="wheel",
                )
            )
        radius = float(np.hypot(body[0], body[1] + 2 * wheel_w + 0.01))
        z = np.stack([np.full(T, ground_z), np.full(T, ground_z + wheel_r + 2 * body[2])], -1)
        return MovingObject(kind, parts, xy, radius, z, num_slots=2)
    else:
        raise ValueError(f"unknown object kind {kind!r}; expected one of {OBJECT_KINDS}")
    return MovingObject(kind, parts, xy, radius, z, num_slots=1)
