"""Exact, vectorised ray casting of a `SceneLayout` into images and per-pixel ground truth.

Pipeline for a chunk of frames (all tensor ops, no loop over pixels or primitives):

1. Every pose is re-expressed in the world frame of the convention (camera of frame 0), and
   per (frame, primitive) the camera ray origin and the camera-to-local rotation are precomputed,
   so a pixel ray in a primitive's frame is `o + t (M @ [x, y, 1])` with `t` = z-depth.
2. Culling: the image is cut into square tiles; a (frame, tile, primitive) pair is kept only if
   the primitive's bounding sphere meets the tile's frustum and the tile lies in the screen
   rectangle of its (near-clipped, projected) local box. The room (inside of a box) is
   evaluated for every pixel and initialises the depth buffer. `cull=False` is the reference.
3. For each primitive kind, all kept pairs are intersected at once (analytic slab / quadric
   formulas on (pairs, tile pixels) tensors); the nearest hit per pixel wins (`index_reduce`
   with amin on depth, then on primitive index among the equal-depth candidates).
4. Shading per pixel: local hit point -> normal, surface texture coordinates (texture travels
   with the surface), mip-mapped texture lookup, Lambertian light (point light or sun) with a
   hemispheric ambient term, plus a directional fill light when the layout has one (the
   realistic appearance's window); rays that hit nothing see the sky.
5. Ground truth: z-depth, valid mask (hit within `max_depth`), instance ids, and scene flow
   `(P_{t+1} - P_t) p` for the local hit point p of a moving part with local2world poses P
   (= the world displacement of that surface point from t to t+1).

Per-pixel quantities are kept as separate contiguous (frames, pixels) tensors, gathered from
tables stored transposed (one `index_select` along dim 1), with int32 indices: on CPU this is
several times faster than gathering rows of (N, 3) tensors.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import Tensor

from .scene import SceneLayout
from .shapes import (
    BOX,
    CYLINDER,
    INF,
    ROOM,
    SPHERE,
    bounding_radius,
    intersect_box,
    intersect_cylinder,
    intersect_room,
    intersect_sphere,
    surface_box,
    surface_cylinder,
    surface_sphere,
)
from .textures import ENTRY_TEXELS, NUM_LEVELS, TEXTURE_SIZE, bank, sample_bank

NEAR = 1e-3
_PAIR_KINDS = (BOX, SPHERE, CYLINDER)
_BIG = 1 << 30


def intrinsics_from_fov(fov_x_deg: float, H: int, W: int) -> np.ndarray:
    """Square-pixel pinhole intrinsics with horizontal FoV, principal point at the image centre."""
    fx = (W / 2.0) / math.tan(math.radians(fov_x_deg) / 2.0)
    return np.array([[fx, 0.0, (W - 1) / 2.0], [0.0, fx, (H - 1) / 2.0], [0.0, 0.0, 1.0]])


class Renderer:
    """Renders a `SceneLayout` at a given resolution; `render()` returns images and ground truth."""

    def __init__(self, layout: SceneLayout, image_size: tuple[int, int], tile: int = 16, cull: bool = True):
        """cull=False tests every primitive against every pixel (a reference for the culling)."""
        H, W = image_size
        self.cull = cull
        self.H, self.W, self.tile = int(H), int(W), int(tile)
        self.layout = layout
        T = layout.num_frames
        self.T = T
        K = intrinsics_from_fov(layout.fov_x_deg, self.H, self.W)
        self.K = K
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        self.fx = float(fx)

        # --- local2world in the world frame of camera 0 (float64 for the set-up, float32 for rendering)
        cams = layout.camera.cam2world
        world0 = np.linalg.inv(cams[0])
        cams = world0 @ cams
        cams[0] = np.eye(4)
        self.cam2world = cams
        prims = layout.prims
        N = len(prims)
        self.N = N
        local2world = (
            np.stack([world0 @ p.local2scene for p in prims], axis=1) if N else np.zeros((T, 0, 4, 4))
        )  # (T, N, 4, 4)
        Rc, tc = cams[:, :3, :3], cams[:, :3, 3]
        Rn, tn = local2world[..., :3, :3], local2world[..., :3, 3]
        RnT = np.swapaxes(Rn, -1, -2)
        M = RnT @ Rc[:, None]  # camera -> local rotation
        o = np.einsum("tnij,tnj->tni", RnT, tc[:, None] - tn)  # camera centre in local frames
        centre_cam = np.einsum("tji,tnj->tni", Rc, tn - tc[:, None])  # local origins in camera frames
        self.M = torch.from_numpy(M.astype(np.float32))
        self.o = torch.from_numpy(o.astype(np.float32))
        self.centre_cam = torch.from_numpy(centre_cam.astype(np.float32))

        self.kind = torch.tensor([p.kind for p in prims], dtype=torch.long)
        self.size = torch.from_numpy(np.array([p.size for p in prims], dtype=np.float32).reshape(N, 3))
        self.radius = torch.tensor([bounding_radius(p.kind, p.size) for p in prims], dtype=torch.float32)
        self.instance = torch.tensor([p.instance for p in prims], dtype=torch.long)
        self.kinds_present = sorted({p.kind for p in prims})
        rooms = [i for i, p in enumerate(prims) if p.kind == ROOM]
        self.room = rooms[0] if rooms else None
        if len(rooms) > 1:
            raise ValueError("at most one ROOM primitive is supported")

        # --- lighting, in each primitive's local frame (T, N, 3)
        light = layout.light
        if light.kind == "point":
            lw = world0[:3, :3] @ light.vector + world0[:3, 3]
            light_local = np.einsum("tnij,tnj->tni", RnT, lw[None, None] - tn)
        else:
            lw = world0[:3, :3] @ (light.vector / np.linalg.norm(light.vector))
            light_local = np.einsum("tnij,j->tni", RnT, lw)
        up_world = world0[:3, :3] @ np.array([0.0, 0.0, 1.0])
        up_local = np.einsum("tnij,j->tni", RnT, up_world)
        self.up_cam = torch.from_numpy(np.einsum("tji,j->ti", Rc, up_world).astype(np.float32))  # (T, 3)
        self.sky = [float(v) for v in np.concatenate(layout.sky)] if layout.sky is not None else [0.0] * 6

        # --- packed tables: one row gather per pixel, then one column per quantity
        # per (frame, primitive): camera->local rotation (9), camera centre (3), light (3), up (3),
        # and the fill light's direction (3) when the layout has one
        frame_columns = [M.reshape(T, N, 9), o, light_local, up_local]
        self.fill_strength = 0.0
        if layout.fill_light is not None:
            fill = world0[:3, :3] @ (layout.fill_light / np.linalg.norm(layout.fill_light))
            frame_columns.append(np.einsum("tnij,j->tni", RnT, fill))
            self.fill_strength = float(layout.fill_strength)
        width = 9 + 3 * (len(frame_columns) - 1)
        self.frame_table = torch.from_numpy(np.concatenate(frame_columns, -1).reshape(T * N, width).astype(np.float32))
        # per primitive: half extents (3), their reciprocals (3), normal sign (-1: room, seen from inside), kind
        sizes = np.array([p.size for p in prims], dtype=np.float64).reshape(N, 3)
        self.prim_table = torch.from_numpy(
            np.concatenate(
                [
                    sizes,
                    1.0 / sizes,
                    np.array([[-1.0 if p.kind == ROOM else 1.0, p.kind] for p in prims]).reshape(N, 2),
                ],
                -1,
            ).astype(np.float32)
        )
        # per (primitive, face): texture entry, period, uv offset (2), colour gain (3), grey / 3, colour offset (3)
        for mat in layout.materials:
            bank().ensure(mat.bank_index)
        rows = []
        for p in prims:
            for f in range(6):
                mat = layout.materials[int(p.face_materials[f])]
                rows.append(
                    [
                        mat.bank_index * ENTRY_TEXELS,
                        mat.period * p.period_scale,
                        *p.uv_offsets[f],
                        *(mat.gain / 255.0),
                        mat.grey / (3 * 255.0),
                        *mat.offset,
                    ]
                )
        self.face_table = torch.tensor(rows, dtype=torch.float32).reshape(N * 6, 11)
        if N * 6 and float(self.face_table[:, 0].max()) >= 2**24:  # (rows, columns) until transposed below
            raise AssertionError("texture entry offsets must be exact in float32")
        # per (frame, primitive) motion to the next frame: local2world[t+1] - local2world[t] (3 x 4)
        step = np.zeros((T, N, 3, 4))
        if T > 1 and N:
            step[:-1] = local2world[1:, :, :3, :] - local2world[:-1, :, :3, :]
        self.step_table = torch.from_numpy(step.reshape(T * N, 12).astype(np.float32))
        self.surface_table = torch.from_numpy(local2world[:, :, :3, :].reshape(T * N, 12).astype(np.float32))
        # stored transposed (columns, rows): gathering along dim 1 gives contiguous per-column tensors
        for name in ("frame_table", "prim_table", "face_table", "step_table", "surface_table"):
            setattr(self, name, getattr(self, name).t().contiguous())

        # --- pixel rays in camera coordinates, z = 1; tile layout
        ts = self.tile
        self.nty, self.ntx = -(-self.H // ts), -(-self.W // ts)
        Hp, Wp = self.nty * ts, self.ntx * ts
        xs = (torch.arange(Wp, dtype=torch.float64) - cx) / fx
        ys = (torch.arange(Hp, dtype=torch.float64) - cy) / fy
        self.tile_x = xs.view(self.ntx, ts).float()  # (ntx, ts)
        self.tile_y = ys.view(self.nty, ts).float()  # (nty, ts)
        gy, gx = torch.meshgrid(ys[: self.H], xs[: self.W], indexing="ij")
        self.ray_x = gx.reshape(-1).float()  # (H*W,) camera ray (x, y, 1) of each pixel
        self.ray_y = gy.reshape(-1).float()
        self.ray_norm = torch.sqrt(gx * gx + gy * gy + 1.0).reshape(-1).float()
        # inward normals of the four planes bounding each tile's frustum (camera frame)
        half = 0.5
        u0 = torch.arange(self.ntx, dtype=torch.float64) * ts - half
        v0 = torch.arange(self.nty, dtype=torch.float64) * ts - half
        a0, a1 = (u0 - cx) / fx, (u0 + ts - cx) / fx  # x/z range per tile column
        b0, b1 = (v0 - cy) / fy, (v0 + ts - cy) / fy
        planes = torch.zeros(self.nty, self.ntx, 4, 3, dtype=torch.float64)
        planes[:, :, 0, 0], planes[:, :, 0, 2] = 1.0, -a0[None, :]
        planes[:, :, 1, 0], planes[:, :, 1, 2] = -1.0, a1[None, :]
        planes[:, :, 2, 1], planes[:, :, 2, 2] = 1.0, -b0[:, None]
        planes[:, :, 3, 1], planes[:, :, 3, 2] = -1.0, b1[:, None]
        planes = planes / planes.norm(dim=-1, keepdim=True)
        self.tile_planes = planes.reshape(-1, 4, 3).float()  # (ntiles, 4, 3)
        self.tile_col = torch.arange(self.ntx).repeat(self.nty)  # (ntiles,)
        self.tile_row = torch.arange(self.nty).repeat_interleave(self.ntx)
        self.tile_range = self._screen_tile_ranges(local2world, cams, K, prims)  # (T, N, 4)
        self.max_depth = float(layout.max_depth)

    def _screen_tile_ranges(self, local2world: np.ndarray, cams: np.ndarray, K: np.ndarray, prims) -> Tensor:
        """Per (frame, primitive): the tile columns and rows (c0, c1, r0, r1) its local box can cover.

        The box's 12 edges are clipped to the near plane and the surviving points projected: their
        bounding rectangle contains the primitive's image (empty range when it is all behind).
        """
        T, N = local2world.shape[:2]
        if N == 0:
            return torch.zeros(T, 0, 4, dtype=torch.long)
        half = np.array([p.size if p.kind != SPHERE else np.full(3, p.size[0]) for p in prims])  # (N, 3)
        half[:, 1] = np.where([p.kind == CYLINDER for p in prims], half[:, 0], half[:, 1])
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
        corners = signs[None] * half[:, None]  # (N, 8, 3) local
        world2cam = np.linalg.inv(cams)  # (T, 4, 4)
        local2cam = world2cam[:, None] @ local2world  # (T, N, 4, 4)
        pc = np.einsum("tnij,nkj->tnki", local2cam[..., :3, :3], corners) + local2cam[:, :, None, :3, 3]  # (T,N,8,3)
        edges = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if (a ^ b).bit_count() == 1])  # 12
        pa, pb = pc[:, :, edges[:, 0]], pc[:, :, edges[:, 1]]
        za, zb = pa[..., 2], pb[..., 2]
        near = 0.5 * NEAR
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (near - za) / (zb - za)
        crossing = ((za - near) * (zb - near) < 0)[..., None]
        cut = np.where(crossing, pa + np.nan_to_num(s)[..., None] * (pb - pa), 0.0)
        pts = np.concatenate([pc, cut], axis=2)  # (T, N, 20, 3)
        ok = np.concatenate([pc[..., 2] >= near, crossing[..., 0]], axis=2)
        z = np.maximum(pts[..., 2], near)
        u = K[0, 0] * pts[..., 0] / z + K[0, 2]
        v = K[1, 1] * pts[..., 1] / z + K[1, 2]
        lim = 1e6  # near-plane points project far off: keep them finite
        u, v = np.clip(u, -lim, lim), np.clip(v, -lim, lim)
        bounds = [
            np.where(ok, u, lim).min(-1),
            np.where(ok, u, -lim).max(-1),
            np.where(ok, v, lim).min(-1),
            np.where(ok, v, -lim).max(-1),
        ]
        out = np.stack([np.floor((b + 0.5) / self.tile) for b in bounds], -1)
        out[~ok.any(-1)] = np.array([1, 0, 1, 0])  # c0 > c1: no tile
        return torch.from_numpy(out.astype(np.int64))

    # ------------------------------------------------------------------ visibility

    def _depth_and_ids(self, f0: int, f1: int) -> tuple[Tensor, Tensor]:
        """Nearest hit depth (inf: none) and primitive index (-1: none) for frames f0..f1-1, (Tc, H, W)."""
        Tc, ts = f1 - f0, self.tile
        nty, ntx = self.nty, self.ntx
        ntiles, TP = nty * ntx, ts * ts
        M = self.M[f0:f1]
        o = self.o[f0:f1]
        size = self.size
        # tile-layout ray components, (Tc, nty, ntx, ts, ts) broadcastable
        if self.room is not None:
            r = self.room
            Mr, orr, hr = M[:, r], o[:, r], size[r]
            tx = self.tile_x.view(1, 1, ntx, 1, ts)
            ty = self.tile_y.view(1, nty, 1, ts, 1)
            comps = []
            for i in range(3):
                a = Mr[:, i, 0].view(-1, 1, 1, 1, 1) * tx + Mr[:, i, 2].view(-1, 1, 1, 1, 1)
                comps.append(a + Mr[:, i, 1].view(-1, 1, 1, 1, 1) * ty)
            oo = tuple(orr[:, i].view(-1, 1, 1, 1, 1) for i in range(3))
            zbuf = intersect_room(oo, (float(hr[0]), float(hr[1]), float(hr[2])), comps)
            zbuf = zbuf.reshape(Tc * ntiles, TP).contiguous()
        else:
            zbuf = torch.full((Tc * ntiles, TP), INF)
        ids = torch.full((Tc * ntiles, TP), _BIG, dtype=torch.int32)  # int32: faster indices downstream

        # culling: bounding sphere against tile frusta
        if self.N:
            cc = self.centre_cam[f0:f1]  # (Tc, N, 3)
            dist = torch.einsum("tnc,jkc->tjnk", cc, self.tile_planes)  # (Tc, ntiles, N, 4)
            keep = (dist >= -self.radius.view(1, 1, -1, 1)).all(-1)
            keep &= (cc[..., 2] > NEAR - self.radius).unsqueeze(1)
            rng = self.tile_range[f0:f1].unsqueeze(1)  # (Tc, 1, N, 4): screen rectangle in tiles
            col = self.tile_col.view(1, -1, 1)
            row = self.tile_row.view(1, -1, 1)
            keep &= (col >= rng[..., 0]) & (col <= rng[..., 1]) & (row >= rng[..., 2]) & (row <= rng[..., 3])
            if not self.cull:
                keep = torch.ones_like(keep)
            if self.room is not None:
                keep[:, :, self.room] = False
        results = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # index_reduce is "beta"
            for kind in _PAIR_KINDS:
                if not self.N:
                    break
                sel = keep & (self.kind == kind).view(1, 1, -1)
                tf, tj, tn = sel.nonzero(as_tuple=True)
                if tf.numel() == 0:
                    continue
                flat = (tf + f0) * self.N + tn
                Mp = self.M.view(-1, 3, 3).index_select(0, flat)  # (P, 3, 3)
                op = self.o.view(-1, 3).index_select(0, flat)
                sp = size.index_select(0, tn)
                tx = self.tile_x.index_select(0, tj % ntx).unsqueeze(1)  # (P, 1, ts)
                ty = self.tile_y.index_select(0, torch.div(tj, ntx, rounding_mode="floor")).unsqueeze(2)  # (P, ts, 1)
                d = []
                for i in range(3):
                    a = Mp[:, i, 0].view(-1, 1, 1) * tx + Mp[:, i, 2].view(-1, 1, 1)
                    d.append(a + Mp[:, i, 1].view(-1, 1, 1) * ty)
                oc = tuple(op[:, i].view(-1, 1, 1) for i in range(3))
                if kind == BOX:
                    t = intersect_box(oc, tuple(sp[:, i].view(-1, 1, 1) for i in range(3)), d, NEAR)
                elif kind == SPHERE:
                    t = intersect_sphere(oc, sp[:, 0].view(-1, 1, 1), d, NEAR)
                else:
                    t = intersect_cylinder(oc, sp[:, 0].view(-1, 1, 1), sp[:, 2].view(-1, 1, 1), d, NEAR)
                t = t.reshape(-1, TP)
                row = tf * ntiles + tj
                zbuf.index_reduce_(0, row, t, "amin")
                results.append((row, t, tn.int()))
            for row, t, tn in results:
                cand = torch.where((t == zbuf.index_select(0, row)) & (t < INF), tn.view(-1, 1), _BIG)
                ids.index_reduce_(0, row, cand, "amin")
        no_prim = ids == _BIG
        if self.room is not None:
            ids = torch.where(no_prim & torch.isfinite(zbuf), self.room, ids)
        ids = torch.where(ids == _BIG, -1, ids)

        def to_image(x: Tensor) -> Tensor:
            x = x.view(Tc, nty, ntx, ts, ts).permute(0, 1, 3, 2, 4).reshape(Tc, nty * ts, ntx * ts)
            return x[:, : self.H, : self.W].contiguous()

        return to_image(zbuf), to_image(ids)

    # ------------------------------------------------------------------ full render

    def render(self, frames: range | None = None, chunk_pixels: int = 65_536, surface_points: bool = False) -> dict:
        """Renders frames (default all) and returns a dict of (T, …) tensors.

        Keys: images (T,3,H,W), depth, valid, instance_ids, scene_flow (T,H,W,3), cam2world,
        intrinsics; with `surface_points` also `surface_points` (T,H,W,3): world points computed
        from each hit's local coordinates and the primitive's local2world (a check of depth and poses).
        """
        frames = range(self.T) if frames is None else frames
        T, H, W = len(frames), self.H, self.W
        out = {
            "images": torch.empty(T, 3, H, W),
            "depth": torch.empty(T, H, W),  # every chunk writes all of its pixels
            "valid": torch.empty(T, H, W, dtype=torch.bool),
            "instance_ids": torch.zeros(T, H, W, dtype=torch.long)
            if self.N == 0
            else torch.empty(T, H, W, dtype=torch.long),
            "scene_flow": torch.zeros(T, H, W, 3),
        }
        if surface_points:
            out["surface_points"] = torch.zeros(T, H, W, 3)
        step = max(1, chunk_pixels // max(1, H * W))
        start = 0
        while start < T:
            stop = min(T, start + step)
            fr = list(frames)[start:stop]
            if fr != list(range(fr[0], fr[0] + len(fr))):
                raise ValueError("frames must be a contiguous range")
            self._render_chunk(fr[0], fr[-1] + 1, out, start, surface_points)
            start = stop
        sel = list(frames)
        out["cam2world"] = torch.from_numpy(self.cam2world[sel].astype(np.float32))
        out["intrinsics"] = torch.from_numpy(np.broadcast_to(self.K, (T, 3, 3)).astype(np.float32).copy())
        return out

    def _render_chunk(self, f0: int, f1: int, out: dict, o0: int, want_points: bool) -> None:
        """Shades frames f0..f1-1 into out[...][o0:]; every per-pixel quantity is a (Tc, H*W) tensor."""
        Tc, H, W, N = f1 - f0, self.H, self.W, self.N
        HW = H * W
        z, ids = self._depth_and_ids(f0, f1)
        z = z.reshape(Tc, HW)
        ids = ids.reshape(Tc, HW)
        hit = ids >= 0
        any_miss = not bool(hit.all())
        n = ids.clamp_min(0) if any_miss else ids
        zs = torch.where(hit, z, 1.0) if any_miss else z  # finite everywhere (misses are overwritten)
        sl = slice(o0, o0 + Tc)
        if N == 0:
            n = torch.zeros_like(ids)
        tn = (n + (torch.arange(f0, f1, dtype=torch.int32) * N).view(Tc, 1)).view(-1)

        def columns(table_t: Tensor, index: Tensor) -> list[Tensor]:
            """Per-pixel rows of a table stored transposed (columns, rows): one (Tc, HW) tensor per column."""
            return list(table_t.index_select(1, index).view(table_t.shape[0], Tc, HW).unbind(0))

        dx, dy = self.ray_x, self.ray_y
        if N:
            Fc = columns(self.frame_table, tn)
            dl = [torch.addcmul(torch.addcmul(Fc[3 * i + 2], Fc[3 * i], dx), Fc[3 * i + 1], dy) for i in range(3)]
            p = [torch.addcmul(Fc[9 + i], zs, dl[i]) for i in range(3)]  # hit point, local frame
            Pc = columns(self.prim_table, n.view(-1))
            size = Pc[:3]
            nx = ny = nz = u = v = face = None
            if ROOM in self.kinds_present or BOX in self.kinds_present:
                (nx, ny, nz), u, v, face = surface_box(p, Pc[3:6], Pc[6] if self.room is not None else None)
            curved = [k for k in (SPHERE, CYLINDER) if k in self.kinds_present]
            kind = Pc[7].view(-1) if curved else None
            for k in curved:
                m = (kind == k).nonzero(as_tuple=True)[0]
                if m.numel() == 0:
                    continue
                if nx is None:  # no boxes at all: start from empty buffers
                    nx, ny, nz, u, v = (torch.zeros(Tc, HW) for _ in range(5))
                    face = torch.zeros(Tc, HW, dtype=torch.int32)
                pk = [c.view(-1).index_select(0, m) for c in p]
                r = size[0].view(-1).index_select(0, m)
                if k == SPHERE:
                    nk, uk, vk, fk = surface_sphere(pk, r)
                else:
                    nk, uk, vk, fk = surface_cylinder(pk, r, size[2].view(-1).index_select(0, m))
                for dst, src in zip((nx, ny, nz, u, v, face), (*nk, uk, vk, fk)):
                    dst.view(-1).index_copy_(0, m, src)
            Tf = columns(self.face_table, (n * 6 + face).view(-1))
            period = Tf[1]
            # mip level from the pixel footprint on the surface (geometric mean of its two axes,
            # the long one stretched by 1/cos at oblique incidence: little blur, little aliasing)
            cos = ((nx * dl[0] + ny * dl[1] + nz * dl[2]).abs() / self.ray_norm).clamp_min(0.05)
            footprint = zs * self.ray_norm / (self.fx * torch.sqrt(cos))
            level = torch.floor(torch.log2(footprint * TEXTURE_SIZE / period) + 0.3).clamp_(0, NUM_LEVELS - 1).int()
            r, g, b = sample_bank(
                Tf[0].int().view(-1), level.view(-1), (u / period + Tf[2]).view(-1), (v / period + Tf[3]).view(-1)
            )
            grey = (r + g + b).view(Tc, HW) * Tf[7]
            albedo = [torch.addcmul(Tf[8 + i] + grey, c.view(Tc, HW), Tf[4 + i]) for i, c in enumerate((r, g, b))]
            light = self.layout.light
            if light.kind == "point":
                lx, ly, lz = Fc[12] - p[0], Fc[13] - p[1], Fc[14] - p[2]
                dist2 = lx * lx + ly * ly + lz * lz
                lambert = (nx * lx + ny * ly + nz * lz).clamp_min(0) * torch.rsqrt(dist2) / (1 + light.falloff * dist2)
            else:
                lambert = (nx * Fc[12] + ny * Fc[13] + nz * Fc[14]).clamp_min(0)
            hemi = 0.8 + 0.2 * (nx * Fc[15] + ny * Fc[16] + nz * Fc[17])
            shade = light.ambient * hemi + light.diffuse * lambert
            if self.fill_strength:
                shade = shade + self.fill_strength * (nx * Fc[18] + ny * Fc[19] + nz * Fc[20]).clamp_min(0)
            rgb = [(c * shade).clamp_(0.0, 1.0) for c in albedo]
        else:
            rgb = [torch.zeros(Tc, HW) for _ in range(3)]
        if any_miss:
            up = self.up_cam[f0:f1]
            elev = (dx * up[:, :1] + dy * up[:, 1:2] + up[:, 2:3]) / self.ray_norm
            w = elev.clamp(0, 1).pow(0.6)
            sky = self.sky
            rgb = [torch.where(hit, c, sky[i] + (sky[3 + i] - sky[i]) * w) for i, c in enumerate(rgb)]
        images = out["images"][sl]
        for i in range(3):
            images[:, i] = rgb[i].view(Tc, H, W)
        valid = hit & (z <= self.max_depth)
        out["valid"][sl] = valid.view(Tc, H, W)
        out["depth"][sl] = torch.where(valid, z, 0.0).view(Tc, H, W)
        if N == 0:
            return
        inst = self.instance.index_select(0, n.view(-1)).view(Tc, HW)
        if any_miss:
            inst = torch.where(hit, inst, 0)
        out["instance_ids"][sl] = inst.view(Tc, H, W)
        # scene flow of points on moving primitives: (local2world[t+1] - local2world[t]) @ p_local
        dyn = (inst.view(-1) > 0).nonzero(as_tuple=True)[0]
        if dyn.numel():
            A = self.step_table.index_select(1, tn.index_select(0, dyn))  # (12, K)
            pk = [c.view(-1).index_select(0, dyn) for c in p]
            flow = torch.stack(
                [A[4 * i] * pk[0] + A[4 * i + 1] * pk[1] + A[4 * i + 2] * pk[2] + A[4 * i + 3] for i in range(3)], -1
            )
            out["scene_flow"][sl].view(-1, 3).index_copy_(0, dyn, flow)
        if want_points:
            S = columns(self.surface_table, tn)
            pts = torch.stack(
                [S[4 * i] * p[0] + S[4 * i + 1] * p[1] + S[4 * i + 2] * p[2] + S[4 * i + 3] for i in range(3)], -1
            )
            out["surface_points"][sl] = torch.where(hit.unsqueeze(-1), pts, 0.0).view(Tc, H, W, 3)
