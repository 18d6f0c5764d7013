"""The realistic appearance of synthetic scenes: each part changes the images and never the ground
truth, the default look is unchanged, clips are deterministic, photo textures load and tile, and
a missing photo package falls back to procedural textures with a warning."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mem4d.data.synthetic import make_scene
from mem4d.data.synthetic import textures as tex
from mem4d.data.synthetic.appearance import Appearance, real_fov_deg, resolve_appearance
from mem4d.data.synthetic.camera_effects import (
    CameraEffects,
    apply_camera_effects,
    image_motion,
    jpeg_round_trip,
    motion_blur,
    vignetting_gain,
)
from mem4d.data.synthetic.natural_textures import dead_leaves, pink_noise
from mem4d.data.synthetic.photos import CROPS_PER_PHOTO, PHOTO_SOURCES, load_photo, periodic_component
from mem4d.geometry.camera import project
from mem4d.geometry.se3 import se3_inverse, transform_points

PARTS = [f.name for f in dataclasses.fields(Appearance)]
GT = ("depth", "valid", "intrinsics", "cam2world", "dynamic_mask", "instance_ids", "scene_flow")


def _only(part: str) -> dict:
    return {name: name == part for name in PARTS}


def _seam_ok(img: np.ndarray) -> bool:
    """The step across the wrap-around is no bigger than steps inside the texture (as for the bank)."""
    img = img.astype(np.float64)
    for axis in (0, 1):
        seam = np.abs(img.take(0, axis) - img.take(-1, axis)).mean()
        inner = np.abs(np.diff(img, axis=axis)).mean(axis=(1 - axis, 2)).max()
        if seam > 1.2 * inner + 2.0 / 255:
            return False
    return True


def test_default_look_is_unchanged():
    # sums of a default scene measured before the realistic appearance existed
    s = make_scene(0, 3, (24, 32))
    expected = [[364.8576, 319.4209, 263.4308], [363.4653, 318.8324, 263.1318], [364.4997, 319.0860, 264.0530]]
    torch.testing.assert_close(s.images.sum(dim=(2, 3)), torch.tensor(expected), rtol=1e-5, atol=1e-3)
    depth_sums = torch.tensor([5123.6528, 5130.0903, 5246.4248])
    torch.testing.assert_close(s.depth.sum(dim=(1, 2)), depth_sums, rtol=1e-5, atol=1e-3)
    c = make_scene(5, 2, (24, 32), environment="courtyard")
    expected = [[252.9937, 239.6770, 220.4795], [256.9923, 246.4107, 227.3325]]
    torch.testing.assert_close(c.images.sum(dim=(2, 3)), torch.tensor(expected), rtol=1e-5, atol=1e-3)
    assert "appearance" not in s.meta
    # None, "default" and every part switched off are all the default look, bit for bit
    for look in (None, "default", {p: False for p in PARTS}):
        other = make_scene(0, 3, (24, 32), appearance=look)
        for name, value in s.tensors().items():
            assert torch.equal(value, getattr(other, name)), (look, name)


@pytest.mark.parametrize("part", [p for p in PARTS if p != "real_scale"])
def test_each_part_changes_images_and_not_ground_truth(part):
    kwargs = dict(camera_speed=2.0, environment="room", num_objects=2)
    base = make_scene(3, 4, (48, 64), **kwargs)
    look = make_scene(3, 4, (48, 64), appearance=_only(part), validate=True, **kwargs)
    assert not torch.equal(base.images, look.images), part
    assert look.images.min() >= 0 and look.images.max() <= 1
    for name in GT:
        assert torch.equal(getattr(base, name), getattr(look, name)), (part, name)
    assert look.meta["appearance"]["parts"] == _only(part)


def test_real_scale_draws_real_cameras_and_rooms():
    fovs, rooms = [], []
    for seed in range(12):
        s = make_scene(seed, 2, (24, 32), appearance=_only("real_scale"), environment="room", validate=True)
        fovs.append(s.meta["fov_deg"])
        rooms.append(s.meta["scene"]["room_size"])
        # the horizontal FoV is what the intrinsics say
        fov = 2 * math.degrees(math.atan(16 / float(s.intrinsics[0, 0, 0])))
        assert math.isclose(fov, s.meta["fov_deg"], rel_tol=1e-4)
    rooms = np.array(rooms)
    assert 55 <= min(fovs) and max(fovs) <= 100 and len({round(f) for f in fovs}) > 4
    assert (rooms[:, :2] >= 3.0).all() and (rooms[:, :2] <= 8.0).all()
    assert (rooms[:, 2] >= 2.4).all() and (rooms[:, 2] <= 3.0).all()
    default_rooms = np.array(
        [make_scene(s, 1, (16, 16), environment="room").meta["scene"]["room_size"] for s in range(12)]
    )
    assert rooms[:, :2].mean() < default_rooms[:, :2].mean() - 1.0  # real rooms are smaller than the default ones
    # a portrait frame's horizontal side is its short one: a narrower horizontal FoV for the same camera
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    land, port = real_fov_deg(rng_a, (96, 128)), real_fov_deg(rng_b, (128, 96))
    assert port < land and math.isclose(math.tan(math.radians(port) / 2), math.tan(math.radians(land) / 2) * 0.75)


def test_realistic_clip_is_deterministic_with_exact_ground_truth():
    kwargs = dict(appearance="realistic", camera_speed=2.0, camera_path="handheld")
    a = make_scene(21, 5, (48, 64), validate=True, **kwargs)
    b = make_scene(21, 5, (48, 64), **kwargs)
    for name, value in a.tensors().items():
        assert torch.equal(value, getattr(b, name)), name
    assert a.meta == b.meta
    assert not torch.equal(a.images, make_scene(22, 5, (48, 64), appearance="realistic").images)
    textures = a.meta["appearance"]["textures"]
    assert sum(textures.values()) > 0 and set(a.meta["appearance"]["camera"]) >= {"shutter", "jpeg_quality"}
    # static surfaces reproject onto the same surface in the next frame (the depth and poses are exact)
    t0, t1 = 0, 1
    K = a.intrinsics[t0]
    H, W = a.depth.shape[1:]
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    ok = a.valid[t0] & ~a.dynamic_mask[t0]
    rays = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
    pts = rays * a.depth[t0, ..., None]
    world = transform_points(a.cam2world[t0], pts[ok])
    cam1 = transform_points(se3_inverse(a.cam2world[t1]), world)
    uv = project(a.intrinsics[t1], cam1)
    ui, vi = uv[:, 0].round().long(), uv[:, 1].round().long()
    inside = (ui >= 1) & (ui < W - 1) & (vi >= 1) & (vi < H - 1) & (cam1[:, 2] > 0)
    d1 = a.depth[t1, vi[inside], ui[inside]]
    close = ((d1 - cam1[inside, 2]).abs() < 0.05 * cam1[inside, 2]).float().mean()
    assert inside.sum() > 100 and close > 0.8


@pytest.mark.parametrize("bad", ["photoreal", {"fog": True}, {"jpeg": 1}, 3])
def test_bad_appearance_raises_value_error(bad):
    with pytest.raises(ValueError, match="appearance"):
        resolve_appearance(bad)
    with pytest.raises(ValueError):
        make_scene(0, 2, (16, 16), appearance=bad)


# ----------------------------------------------------------------------------- textures


def test_every_listed_photo_is_permissively_licensed_and_loads():
    assert {s.licence for s in PHOTO_SOURCES} <= {"CC0 1.0", "public domain", "CC BY 2.0"}
    assert {s.package for s in PHOTO_SOURCES} == {"scikit-image", "scikit-learn"}
    for source in PHOTO_SOURCES:
        photo = load_photo(source.name)
        assert photo is not None, f"{source.package} is in the train extra and installed by the dev set-up"
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3 and min(photo.shape[:2]) >= 256


def test_photo_textures_tile_and_keep_their_content():
    for k, source in enumerate(PHOTO_SOURCES):
        for crop in range(CROPS_PER_PHOTO):
            index = tex.PHOTO_START + k * CROPS_PER_PHOTO + crop
            assert tex.bank_kind(index) == f"photo:{source.name}"
            img = tex.bank_pyramid(index)[: tex.TEXTURE_SIZE**2].reshape(tex.TEXTURE_SIZE, tex.TEXTURE_SIZE, 3)
            assert _seam_ok(img / 255.0), (source.name, crop)
            assert img.std(axis=(0, 1)).mean() > 15, source.name  # a photograph, not a flat colour
    # the periodic component removes the jump across the border and keeps the detail
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 64)[None, :, None] * np.ones((64, 1, 3)) + 0.05 * rng.random((64, 64, 3))
    assert not _seam_ok(ramp)
    tiled = periodic_component(ramp)
    assert _seam_ok(tiled)
    detail = lambda x: np.abs(np.diff(x, axis=0)).mean()  # noqa: E731
    assert math.isclose(detail(tiled), detail(ramp), rel_tol=0.05)


def _spectrum_slope(img: np.ndarray) -> float:
    """Slope of the radially averaged power spectrum of the luminance on log-log axes."""
    lum = img.mean(-1) - img.mean()
    power = np.abs(np.fft.fft2(lum)) ** 2
    f = np.fft.fftfreq(lum.shape[0])
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    bins = np.geomspace(4 / lum.shape[0], 0.4, 12)
    centres, means = [], []
    for lo, hi in zip(bins[:-1], bins[1:]):
        m = (radius >= lo) & (radius < hi)
        centres.append(np.sqrt(lo * hi))
        means.append(power[m].mean())
    return float(np.polyfit(np.log(centres), np.log(means), 1)[0])


@pytest.mark.parametrize("make", [dead_leaves, pink_noise])
def test_natural_textures_have_natural_image_statistics(make):
    for seed in range(3):
        img = make(np.random.default_rng(seed), 128)
        assert img.shape == (128, 128, 3) and img.dtype == np.float32
        assert _seam_ok(img), seed
        assert img.std() > 0.03
        # natural images: power falls as ~1/f^2 (amplitude as 1/f); white noise would give 0
        assert -3.6 < _spectrum_slope(img) < -1.4, (make.__name__, seed, _spectrum_slope(img))
    a, b = make(np.random.default_rng(5), 64), make(np.random.default_rng(5), 64)
    assert np.array_equal(a, b)


def test_missing_photo_package_falls_back_with_one_warning(monkeypatch):
    from mem4d.data.synthetic import photos

    def missing(source):
        raise ModuleNotFoundError(f"No module named {source.package!r}")

    monkeypatch.setattr(photos, "_read", missing)
    monkeypatch.setattr(photos, "_warned", set())
    monkeypatch.setattr(tex, "_BANK", None)  # a fresh bank: the process's real one keeps its photo entries
    load_photo.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="procedural textures") as record:
            s = make_scene(21, 3, (48, 64), appearance="realistic")
            make_scene(22, 3, (48, 64), appearance="realistic")
        assert len([w for w in record if "scikit-image" in str(w.message)]) == 1
        assert s.meta["appearance"]["textures"]["photo"] == 0 and s.meta["appearance"]["textures"]["natural"] > 0
        # the photo slots of the bank hold a procedural texture instead
        img = tex.bank_pyramid(tex.PHOTO_START)[: tex.TEXTURE_SIZE**2]
        assert img.std(axis=0).mean() > 5
    finally:
        load_photo.cache_clear()


# ----------------------------------------------------------------------------- camera effects


def _effects(T: int, **overrides) -> CameraEffects:
    neutral = dict(
        exposure_stops=np.zeros(T), exposure_target=None, vignetting=0.0, shutter=0.0, shot_noise=0.0,
        read_noise=0.0, white_balance=np.ones((T, 3)), jpeg_quality=None, quantise=False, noise_seed=0,
    )
    return CameraEffects(**{**neutral, **overrides})


def test_image_motion_follows_points_and_blur_follows_motion():
    s = make_scene(5, 4, (48, 64), dynamic=False, camera_path="handheld", camera_speed=2.0)
    motion = image_motion(s.depth, s.valid, s.intrinsics, s.cam2world, s.scene_flow)
    # frame 1's points seen from frames 2 and 0: the central difference of their pixels
    K = s.intrinsics[1]
    H, W = s.depth.shape[1:]
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    rays = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], -1)
    pts = rays * s.depth[1, ..., None]
    world = transform_points(s.cam2world[1], pts.reshape(-1, 3))
    seen = [project(s.intrinsics[t], transform_points(se3_inverse(s.cam2world[t]), world)) for t in (2, 0)]
    expected = ((seen[0] - seen[1]) / 2).view(H, W, 2)
    ok = s.valid[1]
    torch.testing.assert_close(motion[1][ok], expected[ok], atol=1e-3, rtol=1e-3)
    coarse = image_motion(s.depth, s.valid, s.intrinsics, s.cam2world, s.scene_flow, stride=4)
    assert (coarse - motion).norm(dim=-1).median() < 0.05 * motion.norm(dim=-1).median() + 1e-3
    # no motion, no blur; a horizontal motion blurs along rows only
    img = torch.rand(2, 3, 24, 32)
    assert torch.equal(motion_blur(img, torch.zeros(2, 24, 32, 2), 1.0), img)
    sideways = torch.zeros(2, 24, 32, 2)
    sideways[..., 0] = 6.0
    rows = torch.rand(2, 3, 24, 1).expand(2, 3, 24, 32)  # constant along each row
    torch.testing.assert_close(motion_blur(rows, sideways, 1.0), rows)
    columns = torch.rand(2, 3, 1, 32).expand(2, 3, 24, 32)
    blurred = motion_blur(columns, sideways, 1.0)
    assert blurred.diff(dim=-1).abs().mean() < 0.6 * columns.diff(dim=-1).abs().mean()


def test_camera_effects_one_by_one():
    T, H, W = 3, 32, 48
    grey = torch.full((T, 3, H, W), 0.5)
    gt = (torch.ones(T, H, W), torch.ones(T, H, W, dtype=torch.bool), torch.eye(3).repeat(T, 1, 1),
          torch.eye(4).repeat(T, 1, 1), torch.zeros(T, H, W, 3))
    assert torch.allclose(apply_camera_effects(grey, _effects(T), *gt), grey, atol=1e-6)
    # exposure: +1 stop doubles the linear signal
    brighter = apply_camera_effects(grey, _effects(T, exposure_stops=np.ones(T)), *gt)
    assert torch.allclose(brighter, torch.full_like(grey, 2 * 0.5**2.2) ** (1 / 2.2), atol=1e-5)
    # auto-exposure brings a dark clip to its target
    dark = torch.full((T, 3, H, W), 0.3)  # within auto-exposure's +-2 stops
    exposed = apply_camera_effects(dark, _effects(T, exposure_target=0.45), *gt)
    assert abs(float(exposed.mean()) - 0.45) < 0.01
    # vignetting: darker corners, untouched centre
    v = vignetting_gain(H, W, 0.4)
    assert math.isclose(float(v[0, 0]), 0.6, rel_tol=1e-4) and float(v[H // 2, W // 2]) > 0.99
    # sensor noise grows with the signal (shot noise)
    levels = torch.cat([torch.full((T, 3, H, W // 2), 0.1), torch.full((T, 3, H, W // 2), 0.8)], -1)
    noisy = apply_camera_effects(levels, _effects(T, shot_noise=2e-3, noise_seed=1), *gt)
    linear_noise = lambda x: (x.pow(2.2)).std()  # noqa: E731
    assert linear_noise(noisy[..., W // 2 :]) > 2 * linear_noise(noisy[..., : W // 2])
    # white balance: per-channel gains
    wb = np.tile([1.2, 1.0, 0.8], (T, 1))
    tinted = apply_camera_effects(grey, _effects(T, white_balance=wb), *gt)
    assert tinted[:, 0].mean() > grey[:, 0].mean() > tinted[:, 2].mean()
    # 8 bits, and JPEG blocks change a textured frame
    textured = torch.rand(T, 3, H, W)
    q = jpeg_round_trip(textured, None)
    assert torch.equal(q * 255, (q * 255).round()) and (q - textured).abs().max() <= 0.5 / 255 + 1e-6
    j = jpeg_round_trip(textured, 60)
    assert (j - textured).abs().mean() > 0.02 and torch.equal(j * 255, (j * 255).round())


def test_synthetic_realistic_benchmark_is_synthetic_dynamic_with_the_realistic_look():
    from mem4d.eval.benchmarks import get_benchmark

    real, dyn = get_benchmark("synthetic-realistic"), get_benchmark("synthetic-dynamic")
    assert len(real.sequences()) == 24 and real.tasks == dyn.tasks and real.num_frames == dyn.num_frames == 48
    assert [s.camera_path for s in real.specs] == [s.camera_path for s in dyn.specs]
    assert {s.seed for s in real.specs}.isdisjoint(s.seed for s in dyn.specs)
    s = real.load(real.sequences()[0], max_frames=3, size=64)
    assert s.images.shape == (3, 3, 48, 64) and s.meta["appearance"]["parts"]["jpeg"] is True
    assert real.settings()["synthetic"]["appearance"] == "realistic"
    d = dyn.load(dyn.sequences()[0], max_frames=3, size=64)
    assert "appearance" not in d.meta and "appearance" not in dyn.settings()["synthetic"]
