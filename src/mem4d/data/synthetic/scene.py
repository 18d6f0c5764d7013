"""Scene layout sampling: environment, furniture, moving objects, materials, lighting.

Everything here is in the *scene frame* (z up, floor at z = 0, metres) with numpy float64; the
renderer re-expresses it in the world frame of the convention (camera of frame 0).

Environments:
  * room: the inside of a box (floor, ceiling, four walls; one primitive with a material per
    face) with a point light under the ceiling;
  * courtyard: a large ground slab, buildings (boxes) around an open yard with gaps between
    them, open sky (rays that hit nothing are invalid) and a sun.

Static furniture (tables, cabinets, crates, barrels, balls, pillars, lamps; trees, benches,
planters, cars, kiosks outdoors) is placed away from the camera path. Moving objects follow
ground paths crossing the camera's view (or circuits in front of it), keep clear of the
camera, the walls, the furniture and each other, and are visible in a good fraction of frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .camera_paths import CameraPath, make_camera_path
from .motion import (
    OBJECT_KINDS,
    GroundPath,
    MovingObject,
    make_rigid,
    make_walker,
    rigid,
    rot_z,
)
from .shapes import BOX, CYLINDER, ROOM, SPHERE, wrap_period
from .textures import Material, random_material

ENVIRONMENTS = ("room", "courtyard")
CAMERA_CLEARANCE = 0.9  # metres between the camera centre and a moving object's bounding cylinder
FURNITURE_CLEARANCE = 0.6


@dataclass
class Primitive:
    """One primitive: kind and size (see shapes), local2scene (T,4,4) local-to-scene, a material per face."""

    kind: int
    size: np.ndarray
    local2scene: np.ndarray  # (T, 4, 4)
    face_materials: np.ndarray  # (6,) int: material index per face id (see shapes.surface_*)
    uv_offsets: np.ndarray  # (6, 2) texture offsets per face, in periods
    instance: int = 0
    period_scale: float = 1.0
    name: str = ""


@dataclass
class Light:
    kind: str  # "point" or "sun"
    vector: np.ndarray  # position (point) or direction towards the light (sun), scene frame
    ambient: float
    diffuse: float
    falloff: float = 0.0  # point light: 1 / (1 + falloff * distance²)


@dataclass
class SceneLayout:
    environment: str
    camera: CameraPath
    fov_x_deg: float
    prims: list[Primitive]
    materials: list[Material]
    light: Light
    sky: tuple[np.ndarray, np.ndarray]  # horizon and zenith colours
    objects: list[MovingObject] = field(default_factory=list)
    furniture: list[str] = field(default_factory=list)
    max_depth: float = 80.0
    info: dict = field(default_factory=dict)
    # a second, directional light (a window; realistic appearance only): unit vector towards it, scene frame
    fill_light: np.ndarray | None = None
    fill_strength: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(self.camera.positions.shape[0])


@dataclass
class _Cylinder:
    """Vertical bounding cylinder used for clearance tests."""

    x: float
    y: float
    r: float
    z0: float
    z1: float
    back: float | None = None  # half depth towards the wall for items placed against one


class _Builder:
    def __init__(self, rng: np.random.Generator, T: int):
        self.rng = rng
        self.T = T
        self.prims: list[Primitive] = []
        self.materials: list[Material] = []

    def material(self, role: str, period: tuple[float, float]) -> int:
        self.materials.append(random_material(self.rng, role, period))
        return len(self.materials) - 1

    def add(self, kind: int, size, local2scene: np.ndarray, mats, instance: int = 0, name: str = "") -> Primitive:
        size = np.asarray(size, dtype=np.float64)
        if local2scene.ndim == 2:
            local2scene = np.broadcast_to(local2scene, (self.T, 4, 4))
        mats = np.broadcast_to(np.asarray(mats, dtype=np.int64), (6,)).copy()
        scale = 1.0
        if kind in (SPHERE, CYLINDER):  # whole number of texture periods around the circumference
            period = self.materials[int(mats[0])].period
            scale = wrap_period(period, 2 * math.pi * float(size[0])) / period
        prim = Primitive(kind, size, local2scene, mats, self.rng.random((6, 2)), instance, scale, name)
        self.prims.append(prim)
        return prim


def _placed(x: float, y: float, z: float, yaw: float = 0.0) -> np.ndarray:
    return rigid(rot_z(yaw), np.array([x, y, z]))


def _cyl_distance(points: np.ndarray, cx, cy, r, z0, z1) -> np.ndarray:
    """Distance from points (…,3) to vertical cylinders (broadcast), 0 inside."""
    horiz = np.hypot(points[..., 0] - cx, points[..., 1] - cy) - r
    vert = np.maximum(z0 - points[..., 2], points[..., 2] - z1)
    return np.hypot(np.maximum(horiz, 0.0), np.maximum(vert, 0.0))


# ----------------------------------------------------------------------------- environments


@dataclass
class _Env:
    kind: str
    bounds_lo: np.ndarray  # enclosure, used for views and wall clearance
    bounds_hi: np.ndarray
    cam_lo: np.ndarray  # camera region
    cam_hi: np.ndarray
    light: Light
    sky: tuple[np.ndarray, np.ndarray]
    info: dict


# (width range, ceiling range) of rooms in metres; "real": the rooms people film with a phone
ROOM_SCALES = {"default": ((5.0, 10.0), (2.6, 3.6)), "real": ((3.0, 8.0), (2.4, 3.0))}
# (half-extent range of the yard, building height range) in metres
COURTYARD_SCALES = {"default": ((6.0, 11.0), (4.0, 14.0)), "real": ((4.0, 16.0), (3.0, 20.0))}


def _make_room(b: _Builder, scale: str = "default") -> _Env:
    rng = b.rng
    (w0, w1), (h0, h1) = ROOM_SCALES[scale]
    X, Y, Hr = rng.uniform(w0, w1), rng.uniform(w0, w1), rng.uniform(h0, h1)
    walls = [b.material("wall", (1.0, 2.5)) for _ in range(int(rng.integers(1, 4)))]
    wall_of_face = [walls[int(rng.integers(len(walls)))] for _ in range(4)]
    floor = b.material("floor", (1.0, 3.0))
    ceiling = b.material("ceiling", (1.5, 3.0))
    b.add(ROOM, [X / 2, Y / 2, Hr / 2], _placed(0.0, 0.0, Hr / 2), wall_of_face + [floor, ceiling], name="room")
    light = Light(
        "point",
        np.array([rng.uniform(-X / 4, X / 4), rng.uniform(-Y / 4, Y / 4), Hr - 0.15]),
        ambient=rng.uniform(0.3, 0.45),
        diffuse=rng.uniform(0.75, 1.0),
        falloff=rng.uniform(0.02, 0.08),
    )
    margin = 0.6
    lo = np.array([-X / 2, -Y / 2, 0.0])
    hi = np.array([X / 2, Y / 2, Hr])
    cam_lo = np.array([-X / 2 + margin, -Y / 2 + margin, 0.9])
    cam_hi = np.array([X / 2 - margin, Y / 2 - margin, min(2.0, Hr - 0.5)])
    sky = (np.zeros(3), np.zeros(3))
    return _Env("room", lo, hi, cam_lo, cam_hi, light, sky, {"room_size": [float(X), float(Y), float(Hr)]})


def _make_courtyard(b: _Builder, scale: str = "default") -> _Env:
    rng = b.rng
    (a0, a1), (h0, h1) = COURTYARD_SCALES[scale]
    A, B = rng.uniform(a0, a1), rng.uniform(a0, a1)
    ground = b.material("ground", (2.0, 5.0))
    b.add(BOX, [60.0, 60.0, 0.5], _placed(0.0, 0.0, -0.5), ground, name="ground")
    facades = [b.material("facade", (2.0, 5.0)) for _ in range(int(rng.integers(2, 5)))]
    count = 0
    for side in range(4):
        half_len = A if side % 2 == 0 else B  # along the side
        dist = B if side % 2 == 0 else A  # from the centre to the side
        extent = half_len + rng.uniform(0.0, 6.0)
        edges = np.sort(rng.uniform(-extent, extent, size=int(rng.integers(0, 3)) * 2))
        cuts = [-extent, *edges.tolist(), extent]
        for k in range(0, len(cuts) - 1, 2):  # buildings on [cuts[k], cuts[k+1]], gaps between
            a0, a1 = cuts[k], cuts[k + 1]
            if a1 - a0 < 1.5:
                continue
            depth, height = rng.uniform(3.0, 8.0), rng.uniform(h0, h1)
            along, across = (a0 + a1) / 2, dist + depth / 2
            x, y = (along, across) if side % 2 == 0 else (across, along)
            sign = 1.0 if side < 2 else -1.0
            half = [(a1 - a0) / 2, depth / 2, height / 2] if side % 2 == 0 else [depth / 2, (a1 - a0) / 2, height / 2]
            b.add(
                BOX,
                half,
                _placed(sign * x, sign * y, height / 2),
                facades[int(rng.integers(len(facades)))],
                name="building",
            )
            count += 1
    elev, azim = math.radians(rng.uniform(30, 70)), rng.uniform(-math.pi, math.pi)
    sun = np.array([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    light = Light("sun", sun, ambient=rng.uniform(0.35, 0.5), diffuse=rng.uniform(0.6, 0.8))
    horizon = np.array([0.78, 0.84, 0.9]) + rng.uniform(-0.05, 0.05, 3)
    zenith = np.array([0.3, 0.5, 0.85]) + rng.uniform(-0.08, 0.08, 3)
    margin = 1.0
    lo = np.array([-A, -B, 0.0])
    hi = np.array([A, B, 12.0])
    cam_lo = np.array([-A + margin, -B + margin, 1.0])
    cam_hi = np.array([A - margin, B - margin, 2.0])
    return _Env(
        "courtyard",
        lo,
        hi,
        cam_lo,
        cam_hi,
        light,
        (horizon, zenith),
        {"courtyard_size": [float(2 * A), float(2 * B)], "buildings": count},
    )


# ----------------------------------------------------------------------------- furniture


def _furniture_item(b: _Builder, kind: str, x: float, y: float, yaw: float) -> tuple[list, _Cylinder]:
    """Adds the primitives of one item at (x, y); returns (prims, bounding cylinder)."""
    rng = b.rng
    prims = []
    back = None

    def mat(role="furniture", period=(0.4, 1.2)):
        return b.material(role, period)

    def at(dx, dy, z, extra_yaw=0.0):
        c, s = math.cos(yaw), math.sin(yaw)
        return _placed(x + c * dx - s * dy, y + s * dx + c * dy, z, yaw + extra_yaw)

    if kind == "table":
        hx, hy, top = rng.uniform(0.35, 0.8), rng.uniform(0.3, 0.5), rng.uniform(0.68, 0.8)
        m, legs = mat(), mat()
        prims.append(b.add(BOX, [hx, hy, 0.025], at(0, 0, top - 0.025), m, name="table"))
        for sx in (-1, 1):
            for sy in (-1, 1):
                prims.append(
                    b.add(
                        BOX,
                        [0.03, 0.03, (top - 0.05) / 2],
                        at(sx * (hx - 0.06), sy * (hy - 0.06), (top - 0.05) / 2),
                        legs,
                        name="table_leg",
                    )
                )
        r, z1 = math.hypot(hx, hy), top
    elif kind == "cabinet":
        hx, hy, hz = rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.35), rng.uniform(0.4, 1.0)
        prims.append(b.add(BOX, [hx, hy, hz], at(0, 0, hz), mat(), name="cabinet"))
        r, z1, back = math.hypot(hx, hy), 2 * hz, hy
    elif kind == "crate":
        h = rng.uniform(0.18, 0.45, size=3)
        m = mat()
        prims.append(b.add(BOX, h, at(0, 0, h[2]), m, name="crate"))
        z1 = 2 * h[2]
        if rng.random() < 0.4:
            h2 = h * rng.uniform(0.5, 0.8)
            prims.append(b.add(BOX, h2, at(0, 0, z1 + h2[2], rng.uniform(-0.5, 0.5)), mat(), name="crate"))
            z1 += 2 * h2[2]
        r = math.hypot(h[0], h[1])
    elif kind == "barrel":
        rr, hz = rng.uniform(0.2, 0.35), rng.uniform(0.3, 0.5)
        prims.append(b.add(CYLINDER, [rr, rr, hz], at(0, 0, hz), mat(), name="barrel"))
        r, z1 = rr, 2 * hz
    elif kind == "ball":
        rr = rng.uniform(0.15, 0.35)
        prims.append(b.add(SPHERE, [rr] * 3, at(0, 0, rr), mat(), name="ball"))
        r, z1 = rr, 2 * rr
    elif kind == "pillar":
        rr, height = rng.uniform(0.15, 0.3), rng.uniform(2.5, 5.0)
        prims.append(b.add(CYLINDER, [rr, rr, height / 2], at(0, 0, height / 2), mat(), name="pillar"))
        r, z1 = rr, height
    elif kind == "lamp":
        height = rng.uniform(1.2, 1.8)
        prims.append(b.add(CYLINDER, [0.03, 0.03, height / 2], at(0, 0, height / 2), mat(), name="lamp_pole"))
        prims.append(b.add(CYLINDER, [0.18, 0.18, 0.02], at(0, 0, 0.02), mat(), name="lamp_base"))
        rs = rng.uniform(0.12, 0.22)
        prims.append(b.add(SPHERE, [rs] * 3, at(0, 0, height + rs * 0.8), mat("object", (0.2, 0.5)), name="lamp_shade"))
        r, z1 = 0.22, height + 2 * rs
    elif kind == "tree":
        rt, ht = rng.uniform(0.12, 0.25), rng.uniform(1.6, 3.0)
        rc = rng.uniform(0.8, 1.6)
        prims.append(b.add(CYLINDER, [rt, rt, ht / 2], at(0, 0, ht / 2), mat("furniture", (0.5, 1.0)), name="trunk"))
        prims.append(b.add(SPHERE, [rc] * 3, at(0, 0, ht + 0.7 * rc), mat("object", (0.5, 1.2)), name="canopy"))
        r, z1 = rc, ht + 1.7 * rc
    elif kind == "bench":
        hx, hy = rng.uniform(0.6, 1.1), rng.uniform(0.2, 0.3)
        m = mat()
        prims.append(b.add(BOX, [hx, hy, 0.22], at(0, 0, 0.22), m, name="bench_seat"))
        prims.append(b.add(BOX, [hx, 0.04, 0.25], at(0, -hy + 0.04, 0.69), m, name="bench_back"))
        r, z1, back = math.hypot(hx, hy), 0.94, hy
    elif kind == "planter":
        h = rng.uniform(0.3, 0.6)
        rb = rng.uniform(0.35, 0.6)
        prims.append(b.add(BOX, [h, h, 0.25], at(0, 0, 0.25), mat(), name="planter"))
        prims.append(b.add(SPHERE, [rb] * 3, at(0, 0, 0.5 + 0.6 * rb), mat("object", (0.3, 0.8)), name="bush"))
        r, z1 = max(math.sqrt(2) * h, rb), 0.5 + 1.6 * rb
    elif kind == "car":
        L, Wd = rng.uniform(1.8, 2.3), rng.uniform(0.8, 0.95)
        body, cabin, wheel = mat("object", (0.6, 1.5)), mat("furniture", (0.5, 1.2)), mat("furniture", (0.3, 0.6))
        prims.append(b.add(BOX, [L, Wd, 0.32], at(0, 0, 0.62), body, name="car_body"))
        prims.append(b.add(BOX, [0.55 * L, 0.9 * Wd, 0.28], at(-0.1 * L, 0, 1.22), cabin, name="car_cabin"))
        for sx in (-1, 1):
            for sy in (-1, 1):
                wheel2scene = at(sx * 0.65 * L, sy * (Wd - 0.05), 0.33) @ rigid(
                    np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]), np.zeros(3)
                )
                prims.append(b.add(CYLINDER, [0.33, 0.33, 0.1], wheel2scene, wheel, name="car_wheel"))
        r, z1, back = math.hypot(L, Wd + 0.05), 1.5, Wd + 0.1
    elif kind == "kiosk":
        h = rng.uniform(0.8, 1.5, size=2)
        hz = rng.uniform(1.1, 1.6)
        prims.append(b.add(BOX, [h[0], h[1], hz], at(0, 0, hz), mat("facade", (1.0, 2.5)), name="kiosk"))
        prims.append(b.add(BOX, [h[0] + 0.2, h[1] + 0.2, 0.06], at(0, 0, 2 * hz + 0.06), mat(), name="kiosk_roof"))
        r, z1, back = math.hypot(h[0] + 0.2, h[1] + 0.2), 2 * hz + 0.12, h[1] + 0.2
    else:
        raise ValueError(f"unknown furniture kind {kind!r}")
    return prims, _Cylinder(x, y, r, 0.0, z1, back)


ROOM_FURNITURE = ("table", "cabinet", "crate", "barrel", "ball", "pillar", "lamp", "crate", "cabinet")
COURTYARD_FURNITURE = ("tree", "bench", "planter", "car", "kiosk", "pillar", "crate", "barrel", "ball", "tree")


def _place_furniture(b: _Builder, env: _Env, cam_pos: np.ndarray, count: int) -> tuple[list[str], list[_Cylinder]]:
    rng = b.rng
    kinds = ROOM_FURNITURE if env.kind == "room" else COURTYARD_FURNITURE
    placed: list[_Cylinder] = []
    names: list[str] = []
    cam_sub = cam_pos[:: max(1, cam_pos.shape[0] // 64)]
    for _ in range(count):
        kind = kinds[int(rng.integers(len(kinds)))]
        for _attempt in range(25):
            n_prims, n_mats = len(b.prims), len(b.materials)
            against_wall = kind in ("cabinet", "bench", "kiosk", "car") or rng.random() < 0.35
            lo, hi = env.bounds_lo[:2], env.bounds_hi[:2]
            if against_wall:
                wall = int(rng.integers(4))
                yaw = [-0.5, 0.5, 0.0, 1.0][wall] * math.pi  # local -y (the back) towards the wall
                x, y = rng.uniform(lo[0] + 0.5, hi[0] - 0.5), rng.uniform(lo[1] + 0.5, hi[1] - 0.5)
            else:
                yaw = rng.uniform(-math.pi, math.pi)
                x, y = rng.uniform(lo[0] + 0.5, hi[0] - 0.5), rng.uniform(lo[1] + 0.5, hi[1] - 0.5)
            prims, cyl = _furniture_item(b, kind, x, y, yaw)
            r_along = cyl.r
            if against_wall:  # slide it against the wall now that its size is known
                gap = (cyl.back if cyl.back is not None else cyl.r) + 0.02
                if wall == 0:
                    cyl.x = lo[0] + gap
                elif wall == 1:
                    cyl.x = hi[0] - gap
                elif wall == 2:
                    cyl.y = lo[1] + gap
                else:
                    cyl.y = hi[1] - gap
                shift = np.array([cyl.x - x, cyl.y - y, 0.0])
                for p in prims:
                    p.local2scene = p.local2scene.copy()
                    p.local2scene[:, :3, 3] += shift
                r_along = cyl.r if cyl.back is None else math.sqrt(max(cyl.r**2 - cyl.back**2, 0.0))
            rx, ry = (cyl.r, cyl.r) if not against_wall else ((0.0, r_along) if wall < 2 else (r_along, 0.0))
            ok = (lo[0] + rx <= cyl.x <= hi[0] - rx) and (lo[1] + ry <= cyl.y <= hi[1] - ry)
            if env.kind == "room":
                ok = ok and cyl.z1 < env.bounds_hi[2] - 0.05
                if kind == "pillar":  # floor to ceiling
                    for p in prims:
                        p.size = p.size.copy()
                        p.size[2] = env.bounds_hi[2] / 2
                        p.local2scene = p.local2scene.copy()
                        p.local2scene[:, 2, 3] = env.bounds_hi[2] / 2
                    cyl.z1 = env.bounds_hi[2]
                    ok = (lo[0] + cyl.r <= cyl.x <= hi[0] - cyl.r) and (lo[1] + cyl.r <= cyl.y <= hi[1] - cyl.r)
            ok = ok and _cyl_distance(cam_sub, cyl.x, cyl.y, cyl.r, cyl.z0, cyl.z1).min() > FURNITURE_CLEARANCE
            ok = ok and all(math.hypot(cyl.x - o.x, cyl.y - o.y) > cyl.r + o.r + 0.05 for o in placed)
            if ok:
                placed.append(cyl)
                names.append(kind)
                break
            del b.prims[n_prims:]
            del b.materials[n_mats:]
    return names, placed


# ----------------------------------------------------------------------------- moving objects


@dataclass
class CircuitPath(GroundPath):
    """An ellipse around `anchor` (radii a, b, rotated by `tilt`), walked at constant angular speed."""

    a: float = 1.0
    b: float = 1.0
    tilt: float = 0.0
    omega: float = 0.02
    theta0: float = 0.0

    def position(self, t: np.ndarray) -> np.ndarray:
        th = self.theta0 + self.omega * t
        local = np.stack([self.a * np.cos(th), self.b * np.sin(th)], -1)
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        return self.anchor + local @ np.array([[c, s], [-s, c]])

    def velocity_at(self, t: np.ndarray) -> np.ndarray:
        h = 0.25
        return (self.position(t + h) - self.position(t - h)) / (2 * h)


# upper bounds of each kind's bounding cylinder (radius, bottom, top above the ground or flying height)
BOUNDS = {
    "walker": (0.57, 0.0, 1.94),
    "slider": (0.57, 0.0, 1.0),
    "roller": (0.4, 0.0, 0.8),
    "bouncer": (0.52, 0.0, 1.45),
    "flyer": (0.61, -0.76, 0.76),
    "cart": (0.57, 0.0, 0.6),
}


def _probe(kind: str, path: GroundPath, T: int, fly_height: float) -> MovingObject:
    """The largest bounding cylinder an object of `kind` on `path` can have (no parts)."""
    r, z0, z1 = BOUNDS[kind]
    xy = path.position(np.arange(T, dtype=np.float64))
    base = fly_height if kind == "flyer" else 0.0
    z = np.tile([base + z0, base + z1], (T, 1))
    return MovingObject(kind, [], xy, r, z)


SPEEDS = {  # metres per frame at object_speed 1
    "walker": (0.02, 0.045),
    "slider": (0.02, 0.06),
    "roller": (0.02, 0.06),
    "bouncer": (0.01, 0.04),
    "flyer": (0.01, 0.04),
    "cart": (0.02, 0.05),
}


def _visible_fraction(obj: MovingObject, cam: CameraPath, tan_x: float, tan_y: float) -> float:
    c = obj.centre
    rel = np.einsum("tji,tj->ti", cam.rotations, c - cam.positions)  # world -> camera
    z = rel[:, 2]
    vis = (z > 0.3) & (np.abs(rel[:, 0]) < tan_x * z * 0.95) & (np.abs(rel[:, 1]) < tan_y * z * 0.95)
    return float(vis.mean())


def _object_violations(
    obj: MovingObject, env: _Env, cam: CameraPath, furniture: list[_Cylinder], others: list[MovingObject]
) -> tuple[bool, int]:
    """(hard violation: camera inside or object outside the enclosure, number of soft collisions)."""
    xy, r, z = obj.centre_xy, obj.radius, obj.z_range
    lo, hi = env.bounds_lo[:2] + r + 0.05, env.bounds_hi[:2] - r - 0.05
    inside = bool(((xy >= lo) & (xy <= hi)).all())
    cam_d = _cyl_distance(cam.positions, xy[:, 0], xy[:, 1], r, z[:, 0], z[:, 1])
    hard = (not inside) or bool((cam_d < CAMERA_CLEARANCE).any())
    soft = 0
    for f in furniture:
        overlap = (np.hypot(xy[:, 0] - f.x, xy[:, 1] - f.y) < r + f.r + 0.02) & (z[:, 0] < f.z1) & (z[:, 1] > f.z0)
        soft += int(overlap.any())
    for o in others:
        overlap = (
            (np.linalg.norm(xy - o.centre_xy, axis=-1) < r + o.radius + 0.02)
            & (z[:, 0] < o.z_range[:, 1])
            & (z[:, 1] > o.z_range[:, 0])
        )
        soft += int(overlap.any())
    return hard, soft


def _place_objects(
    b: _Builder,
    env: _Env,
    cam: CameraPath,
    fov_x: float,
    fov_y: float,
    furniture: list[_Cylinder],
    num_objects: int,
    object_speed: float,
    num_walkers: int,
) -> list[MovingObject]:
    rng = b.rng
    T = cam.positions.shape[0]
    tan_x, tan_y = math.tan(fov_x / 2), math.tan(fov_y / 2)
    placed: list[MovingObject] = []
    lo, hi = env.bounds_lo, env.bounds_hi
    for k in range(num_objects):
        kind = "walker" if k < num_walkers else OBJECT_KINDS[1 + int(rng.integers(len(OBJECT_KINDS) - 1))]
        best, best_key = None, None
        for attempt in range(40):
            tc = float(rng.integers(T))
            ci = int(tc)
            fwd = cam.rotations[ci][:, 2].copy()
            fwd[2] = 0.0
            if np.linalg.norm(fwd) < 1e-3:
                fwd = np.array([1.0, 0.0, 0.0])
            fwd /= np.linalg.norm(fwd)
            side = np.array([-fwd[1], fwd[0]])
            far = 4.0 if env.kind == "room" else 8.0
            with np.errstate(divide="ignore", invalid="ignore"):
                room_t = np.where(
                    fwd[:2] > 0,
                    (hi[:2] - cam.positions[ci, :2]) / fwd[:2],
                    np.where(fwd[:2] < 0, (lo[:2] - cam.positions[ci, :2]) / fwd[:2], np.inf),
                ).min()
            dist = rng.uniform(1.3, max(1.4, min(far, room_t - 0.6)))
            anchor = cam.positions[ci, :2] + fwd[:2] * dist + side * rng.uniform(-0.35, 0.35) * dist
            speed = rng.uniform(*SPEEDS[kind]) * object_speed * (0.97**attempt)
            circuit = attempt >= 20 or rng.random() < 0.25
            if circuit:
                ra = rng.uniform(0.5, 1.8)
                rb = ra * rng.uniform(0.5, 1.0)
                path: GroundPath = CircuitPath(
                    anchor,
                    0.0,
                    np.zeros(2),
                    0.0,
                    1.0,
                    0.0,
                    a=ra,
                    b=rb,
                    tilt=rng.uniform(0, math.pi),
                    omega=rng.choice([-1, 1]) * speed / (0.5 * (ra + rb)),
                    theta0=rng.uniform(0, 2 * math.pi),
                )
                path.anchor = anchor - path.position(np.array([tc]))[0] + anchor  # pass through anchor at tc
            else:
                if rng.random() < 0.6:  # cross the view
                    ang = math.atan2(side[1], side[0]) + rng.uniform(-0.7, 0.7) + (math.pi if rng.random() < 0.5 else 0)
                else:
                    ang = rng.uniform(-math.pi, math.pi)
                vel = speed * np.array([math.cos(ang), math.sin(ang)])
                path = GroundPath(
                    anchor, tc, vel, rng.uniform(0.0, 0.5), rng.uniform(30.0, 80.0), rng.uniform(0, 2 * math.pi)
                )
            fly = rng.uniform(0.7, min(1.9, hi[2] - 0.6))
            # check a conservative bounding cylinder of the kind first; build the object once at the end
            probe = _probe(kind, path, T, fly)
            hard, soft = _object_violations(probe, env, cam, furniture, placed)
            vis = _visible_fraction(probe, cam, tan_x, tan_y)
            good_vis = vis >= 0.3
            key = (hard, soft, not good_vis, -vis)
            if best_key is None or key < best_key:
                best, best_key = (path, fly), key
            if not hard and soft == 0 and good_vis:
                break
        if best is None or best_key[0]:
            continue  # no placement keeps the camera out of the object: leave it out
        path, fly = best
        obj = make_walker(rng, path, T) if kind == "walker" else make_rigid(rng, kind, path, T, fly_height=fly)
        if _object_violations(obj, env, cam, furniture, placed)[0]:
            continue
        placed.append(obj)
    return placed


# ----------------------------------------------------------------------------- the scene


def sample_layout(
    rngs: dict[str, np.random.Generator],
    T: int,
    *,
    environment: str,
    camera_path: str,
    camera_speed: float,
    fov_x_deg: float,
    aspect: float,
    num_objects: int,
    num_furniture: int,
    object_speed: float,
    num_walkers: int,
    loop_frames: int | None = None,
    scale: str = "default",
) -> SceneLayout:
    """Samples a full scene layout; `rngs` holds one independent generator per part of the scene.

    scale: "default" or "real" (room and courtyard sizes of real places, see ROOM_SCALES); both
    draw the same random numbers, so the rest of the scene is drawn alike.
    """
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {ENVIRONMENTS} or None")
    if scale not in ROOM_SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {sorted(ROOM_SCALES)}")
    b = _Builder(rngs["env"], T)
    env = _make_room(b, scale) if environment == "room" else _make_courtyard(b, scale)
    cam = make_camera_path(
        rngs["camera"], camera_path, T, camera_speed, env.cam_lo, env.cam_hi, env.bounds_lo, env.bounds_hi,
        loop_frames=loop_frames,
    )
    b.rng = rngs["furniture"]
    furniture_names, cylinders = _place_furniture(b, env, cam.positions, num_furniture)
    b.rng = rngs["objects"]
    fov_x = math.radians(fov_x_deg)
    fov_y = 2 * math.atan(math.tan(fov_x / 2) * aspect)
    objects = _place_objects(b, env, cam, fov_x, fov_y, cylinders, num_objects, object_speed, num_walkers)
    for k, obj in enumerate(objects, start=1):
        slots = [b.material("object", (0.25, 0.8)) for _ in range(obj.num_slots)]
        for part in obj.parts:
            b.add(part.kind, part.size, part.local2scene, slots[part.slot], instance=k, name=f"{obj.kind}:{part.name}")
    info = dict(env.info)
    info["camera"] = dict(cam.info)
    return SceneLayout(
        environment, cam, fov_x_deg, b.prims, b.materials, env.light, env.sky, objects, furniture_names, info=info
    )
