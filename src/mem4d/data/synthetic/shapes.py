"""Analytic ray–primitive intersection and surface parameterisation, in each primitive's local frame.

Primitives (local frame, z up):
  * BOX: axis-aligned box centred at the origin, `size` = half extents; hit from outside.
  * SPHERE: centred at the origin, radius `size[0]`.
  * CYLINDER: axis z, radius `size[0]`, half height `size[2]`, with caps; hit from outside.
  * ROOM: the inside of a box (half extents `size`); the ray leaves it (far slab distance).

Rays are `o + t d` with non-normalised directions, given as separate component tensors
`dx, dy, dz` (any broadcastable shapes) so every operation is a flat elementwise kernel;
`o` and `size` components broadcast the same way. Intersections return the ray parameter `t`
(`inf` where the ray misses or the hit is closer than `near`).

`surface_box / surface_sphere / surface_cylinder` give the outward normal (inward for ROOM)
and texture coordinates in metres along the surface, plus a face id that selects the face's
material and texture offset.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ROOM, BOX, SPHERE, CYLINDER = 0, 1, 2, 3
KIND_NAMES = {ROOM: "room", BOX: "box", SPHERE: "sphere", CYLINDER: "cylinder"}
INF = float("inf")


def _slabs(o: tuple[Tensor, Tensor, Tensor], h: tuple[Tensor, Tensor, Tensor], d: tuple[Tensor, Tensor, Tensor]):
    """Entry and exit distances of rays through the slabs |x_i| <= h_i (d_i = 0 inside a slab: no limit)."""
    near = far = None
    for oi, hi, di in zip(o, h, d):
        inv = torch.reciprocal(di)
        t1 = (-hi - oi) * inv
        t2 = (hi - oi) * inv
        lo = torch.minimum(t1, t2)
        hi_ = torch.maximum(t1, t2)
        near = lo if near is None else torch.maximum(near, lo)
        far = hi_ if far is None else torch.minimum(far, hi_)
    return near, far


def intersect_box(o, h, d, near: float = 1e-4) -> Tensor:
    """Entry distance of rays into boxes (from outside). o, h, d: 3-tuples of broadcastable tensors."""
    t_near, t_far = _slabs(o, h, d)
    hit = (t_near <= t_far) & (t_near > near)
    return torch.where(hit, t_near, INF)


def intersect_room(o, h, d) -> Tensor:
    """Exit distance of rays from the inside of boxes (the room's walls)."""
    far = None
    for oi, hi, di in zip(o, h, d):
        inv = torch.reciprocal(di)
        side = torch.where(di >= 0, hi, -hi)
        ti = (side - oi) * inv  # exact for d = 0 too (inf): the origin is strictly inside
        far = ti if far is None else torch.minimum(far, ti)
    return far


def intersect_sphere(o, r, d, near: float = 1e-4) -> Tensor:
    """First hit of rays with spheres of radius r centred at the origin."""
    ox, oy, oz = o
    dx, dy, dz = d
    a = dx * dx + dy * dy + dz * dz
    b = dx * ox + dy * oy + dz * oz
    c = ox * ox + oy * oy + oz * oz - r * r
    disc = b * b - a * c
    t = (-b - torch.sqrt(disc.clamp_min(0.0))) / a
    return torch.where((disc >= 0) & (t > near), t, INF)


def intersect_cylinder(o, r, hz, d, near: float = 1e-4) -> Tensor:
    """First hit of rays with capped cylinders (axis z, radius r, half height hz)."""
    ox, oy, oz = o
    dx, dy, dz = d
    a = dx * dx + dy * dy
    b = dx * ox + dy * oy
    c = ox * ox + oy * oy - r * r
    disc = b * b - a * c
    t_side = (-b - torch.sqrt(disc.clamp_min(0.0))) / a
    z_side = oz + t_side * dz
    side_ok = (disc >= 0) & (t_side > near) & (z_side.abs() <= hz)
    # the cap facing the ray
    cap = torch.where(dz > 0, -hz, hz)
    t_cap = (cap - oz) / dz
    cx = ox + t_cap * dx
    cy = oy + t_cap * dy
    cap_ok = (cx * cx + cy * cy <= r * r) & (t_cap > near)
    t = torch.where(side_ok, t_side, INF)
    return torch.minimum(t, torch.where(cap_ok, t_cap, INF))


def surface_box(
    p: tuple[Tensor, Tensor, Tensor], inv_size: tuple[Tensor, Tensor, Tensor], normal_sign: Tensor | None = None
):
    """BOX / ROOM surface at local points p (component tuple): normal components, (u, v) in metres, face id.

    inv_size: reciprocal half extents. The face is the one the point is closest to, relative to
    the half extents; `normal_sign` (-1 for ROOM, broadcastable) flips the normal inwards.
    Face id = 2 * axis + (coordinate > 0).
    """
    px, py, pz = p
    ax, ay, az = px.abs() * inv_size[0], py.abs() * inv_size[1], pz.abs() * inv_size[2]
    is_x = (ax >= ay) & (ax >= az)
    is_z = (az > ay) & (az > ax)
    coord = torch.where(is_x, px, torch.where(is_z, pz, py))
    positive = coord > 0
    sign = positive.float() * 2.0 - 1.0
    if normal_sign is not None:
        sign = sign * normal_sign
    is_y = ~(is_x | is_z)
    normal = (is_x * sign, is_y * sign, is_z * sign)
    # in-plane coordinates: x-faces (y, z), y-faces (x, z), z-faces (x, y)
    u = torch.where(is_x, py, px)
    v = torch.where(is_z, py, pz)
    face = is_y.int() * 2 + is_z.int() * 4 + positive.int()
    return normal, u, v, face


def surface_sphere(p, r: Tensor):
    """SPHERE surface: normal, (u, v) = (longitude, colatitude) arc lengths in metres, face 0."""
    inv = 1.0 / r
    nx, ny, nz = p[0] * inv, p[1] * inv, p[2] * inv
    u = torch.atan2(ny, nx) * r
    v = torch.acos(nz.clamp(-1.0, 1.0)) * r
    return (nx, ny, nz), u, v, torch.zeros_like(nx, dtype=torch.int32)


def surface_cylinder(p, r: Tensor, hz: Tensor):
    """CYLINDER surface: side (u = arc length, v = height) or caps (u, v = x, y); faces 0 side, 1/2 caps."""
    px, py, pz = p
    radial = torch.sqrt(px * px + py * py)
    on_cap = (pz.abs() / hz) > (radial / r)
    top = pz >= 0
    inv = 1.0 / r
    zero = torch.zeros_like(px)
    nx = torch.where(on_cap, zero, px * inv)
    ny = torch.where(on_cap, zero, py * inv)
    nz = torch.where(on_cap, torch.where(top, 1.0, -1.0), zero)
    u = torch.where(on_cap, px, torch.atan2(py, px) * r)
    v = torch.where(on_cap, py, pz)
    face = torch.where(on_cap, 1 + top.int(), 0)
    return (nx, ny, nz), u, v, face


def wrap_period(period: float, circumference: float) -> float:
    """The period closest to `period` that divides `circumference` (seamless wrap around curves)."""
    n = max(1, round(circumference / period))
    return circumference / n


def bounding_radius(kind: int, size) -> float:
    """Radius of a sphere around the local origin that contains the primitive."""
    sx, sy, sz = (float(s) for s in size)
    if kind in (BOX, ROOM):
        return math.sqrt(sx * sx + sy * sy + sz * sz)
    if kind == SPHERE:
        return sx
    if kind == CYLINDER:
        return math.sqrt(sx * sx + sz * sz)
    raise ValueError(f"unknown primitive kind {kind}")
