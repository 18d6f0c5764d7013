"""A small deterministic analytic ray caster for the scene-memory acceptance tests (T1-T10).

SCENE_MEMORY.md section 3.7: a procedurally textured box room (6 x 3 x 6 units by default,
each face with its own sinusoid-plus-checker texture), optional moving spheres of distinct
colours and optional solid boxes (e.g. a partition wall), rendered by exact ray casting
(RGB, z-depth, instance ids, dynamic mask). OpenCV cameras, world y pointing down, the
camera of frame 0 at the room centre looking along +z.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mem4d.scene import Observation

__all__ = [
    "Box",
    "RenderedFrame",
    "Room",
    "Sphere",
    "intrinsics",
    "masked_psnr",
    "pan_path",
    "pan_return_path",
    "psnr",
    "yaw_pose",
]


def intrinsics(W: int = 128, H: int = 96, f: float | None = None) -> np.ndarray:
    """Pinhole K with the principal point at the image centre; f = 100 px at 128 wide (HFOV ~65 deg)."""
    f = 100.0 * W / 128.0 if f is None else f
    return np.array([[f, 0.0, (W - 1) / 2], [0.0, f, (H - 1) / 2], [0.0, 0.0, 1.0]])


def yaw_pose(yaw_deg: float, centre=(0.0, 0.0, 0.0), pitch_deg: float = 0.0) -> np.ndarray:
    """c2w of a camera at ``centre`` turned by ``yaw_deg`` about world y (positive = to the right)."""
    a, b = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    T = np.eye(4)
    T[:3, :3] = Ry @ Rx
    T[:3, 3] = centre
    return T


def pan_path(n: int = 40, max_deg: float = 120.0, translation=(0.5, -0.1, 0.3)) -> np.ndarray:
    """(n, 4, 4) poses panning 0 -> max_deg with a small translation (the spec's forward path)."""
    u = np.linspace(0.0, 1.0, n)
    return np.stack([yaw_pose(max_deg * x, np.asarray(translation) * x) for x in u])


def pan_return_path(n: int = 40, max_deg: float = 120.0) -> np.ndarray:
    """(2n, 4, 4): the forward pan, then the same poses in reverse. Mirror of index r is 2n-1-r."""
    fwd = pan_path(n, max_deg)
    return np.concatenate([fwd, fwd[::-1]])


@dataclass
class Sphere:
    centre0: tuple[float, float, float]
    radius: float
    colour_a: tuple[float, float, float]
    colour_b: tuple[float, float, float] | None = None  # band colour (None: plain)
    velocity: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world units per frame

    def centre(self, t: float) -> np.ndarray:
        return np.asarray(self.centre0, float) + np.asarray(self.velocity, float) * t


@dataclass
class Box:
    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: tuple[float, float, float] = (0.55, 0.5, 0.45)


@dataclass
class RenderedFrame:
    rgb: np.ndarray  # (H, W, 3) float32
    depth: np.ndarray  # (H, W) float32 z-depth
    instance_ids: np.ndarray  # (H, W) int32, -1 background, i = sphere i
    dynamic_mask: np.ndarray  # (H, W) bool
    static_depth: np.ndarray  # (H, W) depth of the static scene alone (room + boxes)


# per-face (base, alt) colours and texture periods: -x, +x, -y (ceiling), +y (floor), -z, +z
_FACES = [
    ((0.75, 0.45, 0.30), (0.55, 0.30, 0.20), 0.9, 0.7),
    ((0.30, 0.55, 0.70), (0.20, 0.38, 0.55), 0.8, 1.0),
    ((0.80, 0.80, 0.70), (0.62, 0.62, 0.52), 1.1, 0.9),
    ((0.45, 0.40, 0.30), (0.62, 0.55, 0.42), 0.7, 0.8),
    ((0.40, 0.65, 0.35), (0.28, 0.48, 0.25), 1.0, 0.75),
    ((0.70, 0.70, 0.35), (0.50, 0.50, 0.22), 0.85, 1.05),
]
_CHECKER = 0.5


def _face_texture(face: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    out = np.zeros(p1.shape + (3,), np.float64)
    for f, (base, alt, l1, l2) in enumerate(_FACES):
        sel = face == f
        if not sel.any():
            continue
        a, b = p1[sel], p2[sel]
        chk = ((np.floor(a / _CHECKER) + np.floor(b / _CHECKER)) % 2)[:, None]
        col = np.asarray(base) * (1 - chk) + np.asarray(alt) * chk
        wave = 0.8 + 0.2 * np.sin(2 * np.pi * a / l1 + f) * np.sin(2 * np.pi * b / l2)
        out[sel] = col * wave[:, None]
    return out


@dataclass
class Room:
    """A box room with optional spheres and boxes; `render` casts one ray per pixel centre."""

    half: tuple[float, float, float] = (3.0, 1.5, 3.0)
    spheres: list[Sphere] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)

    def render(self, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int], t: float = 0.0,
               depth_noise: float = 0.0, rng: np.random.Generator | None = None) -> RenderedFrame:
        H, W = size
        v, u = np.mgrid[0:H, 0:W].astype(np.float64)
        x = (u - K[0, 2]) / K[0, 0]
        y = (v - K[1, 2]) / K[1, 1]
        d_cam = np.stack([x, y, np.ones_like(x)], -1).reshape(-1, 3)
        d = d_cam @ c2w[:3, :3].T  # lambda along d is the camera z-depth
        o = c2w[:3, 3]
        n = len(d)
        half = np.asarray(self.half)
        # room interior: exit distance along each axis
        with np.errstate(divide="ignore", invalid="ignore"):
            lam_ax = (np.sign(d) * half - o) / d
        lam_ax = np.where(np.abs(d) < 1e-12, np.inf, lam_ax)
        axis = np.argmin(lam_ax, axis=1)
        lam = lam_ax[np.arange(n), axis]
        side = (d[np.arange(n), axis] > 0).astype(int)
        face = 2 * axis + side
        p = o + lam[:, None] * d
        other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        p1 = p[np.arange(n), other[:, 0]]
        p2 = p[np.arange(n), other[:, 1]]
        col = _face_texture(face, p1, p2)
        # solid boxes (static)
        for bi, box in enumerate(self.boxes):
            lo, hi = np.asarray(box.lo), np.asarray(box.hi)
            with np.errstate(divide="ignore", invalid="ignore"):
                t1, t2 = (lo - o) / d, (hi - o) / d
            tn = np.nanmax(np.minimum(t1, t2), axis=1)
            tf = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (tf >= tn) & (tn > 1e-6) & (tn < lam)
            if hit.any():
                ax = np.argmax(np.minimum(t1, t2)[hit], axis=1)
                q = o + tn[hit, None] * d[hit]
                oth = np.array([[1, 2], [0, 2], [0, 1]])[ax]
                a = q[np.arange(hit.sum()), oth[:, 0]]
                b = q[np.arange(hit.sum()), oth[:, 1]]
                chk = ((np.floor(a / 0.3) + np.floor(b / 0.3)) % 2)[:, None]
                wave = 0.85 + 0.15 * np.sin(2 * np.pi * a / 0.6 + bi)
                col[hit] = np.asarray(box.colour) * (0.8 + 0.2 * chk) * wave[:, None]
                lam = np.where(hit, tn, lam)
        static_lam = lam.copy()
        inst = np.full(n, -1, np.int32)
        for si, sp in enumerate(self.spheres):
            c = sp.centre(t)
            oc = o - c
            a = np.einsum("ij,ij->i", d, d)
            b = d @ oc
            cc = oc @ oc - sp.radius ** 2
            disc = b * b - a * cc
            ok = disc > 0
            ls = np.where(ok, (-b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
            hit = ok & (ls > 1e-6) & (ls < lam)
            if hit.any():
                q = o + ls[hit, None] * d[hit]
                nrm = (q - c) / sp.radius
                view = -d[hit] / np.linalg.norm(d[hit], axis=1, keepdims=True)
                shade = 0.7 + 0.3 * np.clip(np.einsum("ij,ij->i", nrm, view), 0, 1)
                base = np.asarray(sp.colour_a)
                if sp.colour_b is not None:
                    band = (np.floor((nrm[:, 1] + 1) * 2.5) % 2)[:, None]
                    base = base * (1 - band) + np.asarray(sp.colour_b) * band
                col[hit] = base * shade[:, None]
                lam = np.where(hit, ls, lam)
                inst[hit] = si
        depth = lam.copy()
        if depth_noise > 0:
            rng = rng or np.random.default_rng(0)
            depth = depth * (1.0 + depth_noise * rng.standard_normal(n))
        return RenderedFrame(
            rgb=np.clip(col, 0, 1).reshape(H, W, 3).astype(np.float32),
            depth=depth.reshape(H, W).astype(np.float32),
            instance_ids=inst.reshape(H, W),
            dynamic_mask=(inst >= 0).reshape(H, W),
            static_depth=static_lam.reshape(H, W).astype(np.float32),
        )

    def observation(self, t: int, c2w: np.ndarray, K: np.ndarray, size: tuple[int, int], *,
                    mask: bool = True, instances: bool = False, depth_noise: float = 0.0,
                    rng: np.random.Generator | None = None, **kw) -> Observation:
        """Renders a frame and wraps it as an `Observation` (with the GT dynamic mask if ``mask``)."""
        fr = self.render(c2w, K, size, t=t, depth_noise=depth_noise, rng=rng)
        return Observation(
            t=t, rgb=fr.rgb, K=K, c2w=c2w, depth=fr.depth,
            dynamic_mask=fr.dynamic_mask if mask else None,
            instance_ids=fr.instance_ids if instances else None, **kw)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR over the pixels where ``mask`` is set (images in [0, 1])."""
    if not mask.any():
        return float("nan")
    return psnr(a[mask], b[mask])
