"""Building blocks of the synthetic generator: intersections, textures, camera paths, layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mem4d.data.synthetic import PATH_KINDS
from mem4d.data.synthetic.camera_paths import make_camera_path
from mem4d.data.synthetic.generate import build_layout
from mem4d.data.synthetic.shapes import (
    BOX,
    CYLINDER,
    ROOM,
    SPHERE,
    intersect_box,
    intersect_cylinder,
    intersect_room,
    intersect_sphere,
    surface_box,
    surface_cylinder,
    surface_sphere,
)
from mem4d.data.synthetic.textures import (
    BANK_SIZE,
    ENTRY_TEXELS,
    TEXTURE_SIZE,
    bank,
    bank_pyramid,
    sample_bank,
)


def _v(*xs):
    return tuple(torch.tensor([float(x)]) for x in xs)


def test_intersections_known_values():
    inf = float("inf")
    assert intersect_sphere(_v(0, 0, -5), torch.tensor(1.0), _v(0, 0, 1)).item() == pytest.approx(4.0)
    assert intersect_sphere(_v(0, 0, -5), torch.tensor(1.0), _v(0, 0, 2)).item() == pytest.approx(
        2.0
    )  # t in units of d
    assert intersect_sphere(_v(0, 3, -5), torch.tensor(1.0), _v(0, 0, 1)).item() == inf
    assert intersect_box(_v(0, 0, -5), _v(1, 2, 1), _v(0.1, 0, 1)).item() == pytest.approx(4.0)
    assert intersect_box(_v(0, 0, 0), _v(1, 1, 1), _v(0, 0, 1)).item() == inf  # from inside: no hit
    assert intersect_box(_v(0, 3, -5), _v(1, 2, 1), _v(0.1, 0, 1)).item() == inf  # parallel to a slab, outside it
    assert intersect_cylinder(_v(-5, 0, 0), torch.tensor(1.0), torch.tensor(1.0), _v(1, 0, 0)).item() == pytest.approx(
        4.0
    )
    assert intersect_cylinder(
        _v(0.5, 0, 5), torch.tensor(1.0), torch.tensor(1.0), _v(0, 0, -1)
    ).item() == pytest.approx(4.0)
    assert intersect_cylinder(_v(-5, 0, 2), torch.tensor(1.0), torch.tensor(1.0), _v(1, 0, 0)).item() == inf
    assert intersect_room(_v(0.5, 0, 0), (2.0, 3.0, 4.0), _v(1, 0, 0)).item() == pytest.approx(1.5)
    assert intersect_room(_v(0, 0, 0), (2.0, 3.0, 4.0), _v(0, -1, 0)).item() == pytest.approx(3.0)


def test_random_hits_lie_on_the_surface():
    g = torch.Generator().manual_seed(0)
    n = 4000
    o = torch.rand(3, n, generator=g) * 8 - 4
    d = tuple(-o + 0.8 * torch.randn(3, n, generator=g))  # roughly towards the object
    o = tuple(o)
    size = torch.tensor([0.7, 1.1, 0.5])
    cases = {
        BOX: lambda: intersect_box(o, tuple(size), d),
        SPHERE: lambda: intersect_sphere(o, size[0], d),
        CYLINDER: lambda: intersect_cylinder(o, size[0], size[2], d),
    }
    for kind, fn in cases.items():
        t = fn()
        hit = torch.isfinite(t)
        assert 100 < int(hit.sum()) < n
        p = [oi[hit] + t[hit] * di[hit] for oi, di in zip(o, d)]
        if kind == BOX:
            level = torch.stack([p[i].abs() / size[i] for i in range(3)]).max(0).values
            normal = surface_box(p, tuple((1 / s).expand_as(p[0]) for s in size))[0]
        elif kind == SPHERE:
            level = torch.sqrt(p[0] ** 2 + p[1] ** 2 + p[2] ** 2) / size[0]
            normal = surface_sphere(p, size[0])[0]
        else:
            level = torch.maximum(torch.sqrt(p[0] ** 2 + p[1] ** 2) / size[0], p[2].abs() / size[2])
            normal = surface_cylinder(p, size[0], size[2])[0]
        torch.testing.assert_close(level, torch.ones_like(level), atol=1e-4, rtol=0)
        # the normal faces the ray origin (front faces only), and is a unit vector
        facing = sum(ni * di[hit] for ni, di in zip(normal, d))
        assert (facing < 1e-6).all()
        torch.testing.assert_close(sum(ni * ni for ni in normal), torch.ones_like(level), atol=1e-4, rtol=0)
        # hits come from outside: the origin is outside the solid
        outside = [oi[hit] for oi in o]
        if kind == SPHERE:
            assert (sum(c * c for c in outside) > size[0] ** 2).all()


def test_room_normals_point_inwards():
    p = (torch.tensor([2.0, 0.0, 0.1]), torch.tensor([0.3, -3.0, 0.0]), torch.tensor([0.0, 0.5, 4.0]))
    p = tuple(torch.stack([a, b, c]) for a, b, c in zip(*[[c[i] for c in p] for i in range(3)]))
    inv_size = tuple(torch.full((3,), 1 / s) for s in (2.0, 3.0, 4.0))
    normal, _, _, face = surface_box(p, inv_size, normal_sign=-torch.ones(3))
    n = torch.stack(normal, -1)
    torch.testing.assert_close(n, torch.tensor([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]]))
    assert face.tolist() == [1, 2, 5]


def test_texture_bank_is_deterministic_and_tileable():
    a, b = bank_pyramid(5), bank_pyramid(5)
    assert np.array_equal(a, b) and a.shape == (ENTRY_TEXELS, 3)
    for index in range(0, BANK_SIZE, 3):
        img = bank_pyramid(index)[: TEXTURE_SIZE**2].reshape(TEXTURE_SIZE, TEXTURE_SIZE, 3).astype(np.float64)
        for axis in (0, 1):  # the step across the wrap-around is no bigger than steps inside the texture
            seam = np.abs(img.take(0, axis) - img.take(-1, axis)).mean()
            inner = np.abs(np.diff(img, axis=axis)).mean(axis=(1 - axis, 2)).max()
            assert seam <= 1.2 * inner + 2.0, index
    # the lookup wraps continuously across the period boundary
    bank().ensure(7)
    entry = torch.full((2,), 7 * ENTRY_TEXELS, dtype=torch.int32)
    level = torch.zeros(2, dtype=torch.int32)
    r, g, b = sample_bank(entry, level, torch.tensor([0.9999, 1.0001]), torch.tensor([0.3, 0.3]))
    assert abs(float(r[0] - r[1])) < 8 and abs(float(g[0] - g[1])) < 8


def test_textures_have_contrast_except_plain():
    from mem4d.data.synthetic.textures import bank_kind

    for index in range(BANK_SIZE):
        img = bank_pyramid(index)[: TEXTURE_SIZE**2].astype(np.float64)
        if bank_kind(index) == "plain":
            assert img.std(axis=0).max() < 12
        else:
            assert img.std(axis=0).mean() > 6, index


@pytest.mark.parametrize("kind", PATH_KINDS)
def test_camera_paths_stay_in_their_region(kind):
    lo, hi = np.array([-2.5, -3.0, 0.9]), np.array([2.5, 3.0, 2.0])
    for seed in range(8):
        for speed in (0.5, 1.0, 3.0):
            path = make_camera_path(np.random.default_rng(seed), kind, 30, speed, lo, hi, lo - 0.6, hi + 1.0)
            assert (path.positions >= lo - 1e-9).all() and (path.positions <= hi + 1e-9).all()
            R = path.rotations
            np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)
            np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-9)
            assert np.abs(np.diff(path.positions, axis=0)).max() < 0.25  # smooth
            if kind == "rotation":
                assert np.ptp(path.positions, axis=0).max() == 0.0


def _inside(prim, point, margin=0.0):
    """Is `point` (scene frame) inside primitive `prim` at each frame? (T,) bool."""
    local2scene = prim.local2scene
    R, t = local2scene[:, :3, :3], local2scene[:, :3, 3]
    p = np.einsum("tji,tj->ti", R, point - t)
    s = prim.size + margin
    if prim.kind == BOX:
        return (np.abs(p) <= s).all(-1)
    if prim.kind == SPHERE:
        return np.linalg.norm(p, axis=-1) <= s[0]
    return (np.hypot(p[:, 0], p[:, 1]) <= s[0]) & (np.abs(p[:, 2]) <= s[2])


def test_cameras_are_never_inside_objects_or_outside_the_room():
    for seed in range(12):
        layout, _meta = build_layout(seed, 20, (48, 64))
        cams = layout.camera.positions
        for prim in layout.prims:
            if prim.kind == ROOM:
                half = prim.size
                centre = prim.local2scene[0, :3, 3]
                assert (np.abs(cams - centre) < half - 0.3).all()
                continue
            for t in range(len(cams)):
                assert not _inside(prim, cams[t], margin=0.15)[t], (seed, prim.name)


def test_layout_records_its_knobs():
    layout, meta = build_layout(
        0, 6, (32, 32), camera_path="loop", environment="courtyard", num_objects=4, fov_deg=70.0, camera_speed=1.5
    )
    assert meta["camera_path"] == "loop" and meta["environment"] == "courtyard"
    assert meta["fov_deg"] == 70.0 and meta["camera_speed"] == 1.5
    assert meta["num_objects"] == len(layout.objects) <= 4 and meta["requested_num_objects"] == 4
    assert {p.instance for p in layout.prims} == set(range(meta["num_objects"] + 1))
    assert math.isfinite(meta["effective_camera_speed"])
