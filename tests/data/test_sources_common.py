"""Shared helpers of the dataset-reader tests (a synthetic room to write in each format and the
reprojection assertion; real data comes from the `shared_data` fixture in tests/conftest.py) and the tests of the common base."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mem4d.data.sample import Sample
from mem4d.data.sources import SOURCES, SequenceSource, SourceLike, make_source
from mem4d.data.sources.base import reprojection_depth_errors
from mem4d.geometry.rotation import axis_angle_to_matrix
from mem4d.geometry.se3 import se3_from_rt


# -- a synthetic scene: the inside of a box room seen by a moving camera ------------------------

ROOM_HALF = np.array([3.0, 2.0, 4.0])  # half extents of the room in x, y, z (metres)


def room_poses(T: int = 4, seed: int = 0) -> np.ndarray:
    """(T, 4, 4) OpenCV cam2world poses inside the room: translating ~0.2 m and turning ~6 deg per frame."""
    rng = np.random.default_rng(seed)
    poses = []
    for t in range(T):
        aa = torch.tensor([0.03 * t, 0.1 * t - 0.05, 0.04 * t]) + torch.from_numpy(rng.normal(0, 0.01, 3)).float()
        R = axis_angle_to_matrix(aa.double())
        c = torch.tensor([0.15 * t - 0.2, 0.05 * t, -0.1 * t + 0.3], dtype=torch.float64)
        poses.append(se3_from_rt(R, c).numpy())
    return np.stack(poses)


def room_intrinsics(H: int, W: int) -> np.ndarray:
    f = 0.9 * W
    return np.array([[f, 0, (W - 1) / 2 + 0.7], [0, f * 1.02, (H - 1) / 2 - 0.4], [0, 0, 1]], dtype=np.float64)


def render_room_depth(K: np.ndarray, cam2world: np.ndarray, H: int, W: int) -> np.ndarray:
    """(H, W) z-depth of the room walls seen from an OpenCV camera (exact ray casting)."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T  # z = 1 in the camera
    d = rays @ cam2world[:3, :3].T
    o = cam2world[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (np.sign(d) * ROOM_HALF - o) / d
    t = np.where(np.isfinite(t) & (t > 0), t, np.inf).min(-1)
    return t  # ray parameter along a z=1 ray == z-depth


def room_image(depth: np.ndarray, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 image with some texture (content is irrelevant to geometry)."""
    H, W = depth.shape
    base = (np.clip(depth / 8.0, 0, 1) * 200).astype(np.uint8)
    stripes = ((np.arange(W)[None, :] // 4 + seed) % 2 * 120 + np.zeros((H, 1))).astype(np.uint8)
    return np.stack([base, 255 - base, stripes], -1)


def room_frames(T: int = 4, H: int = 24, W: int = 32, seed: int = 0):
    """Poses, K, depths and images of T frames of the room."""
    poses = room_poses(T, seed)
    K = room_intrinsics(H, W)
    depths = np.stack([render_room_depth(K, p, H, W) for p in poses])
    images = np.stack([room_image(d, seed + i) for i, d in enumerate(depths)])
    return poses, K, depths, images


def write_png16(path: Path, values: np.ndarray) -> None:
    """Writes a single-channel 16-bit PNG (values rounded and clipped to uint16)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(values), 0, 65535).astype(np.uint16)).save(path, compress_level=1)


def write_rgb(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        Image.fromarray(image).save(path, quality=95)
    else:
        Image.fromarray(image).save(path, compress_level=1)


def holes(shape, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """A random mask of about ``fraction`` True pixels (where a fixture writes invalid depth)."""
    return np.random.default_rng(seed).random(shape) < fraction


def assert_reprojects(sample: Sample, pairs, median_tol: float, min_fraction: float = 0.3, step: int = 1) -> None:
    """Frames i, j of each pair see each other's surface at the depth the poses predict."""
    n_valid = int(sample.valid[0, ::step, ::step].sum())
    for i, j in pairs:
        err = reprojection_depth_errors(sample, i, j, step=step)
        assert err.numel() >= min_fraction * n_valid, f"only {err.numel()} co-visible pixels for frames {i},{j}"
        med = float(err.median())
        assert med < median_tol, f"frames {i}->{j}: median relative depth error {med:.2e} >= {median_tol}"


# -- tests of the common part -------------------------------------------------------------------


def _sample_from_room(poses, K, depths, images) -> Sample:
    T = len(poses)
    return Sample(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255,
        depth=torch.from_numpy(depths).float(),
        valid=torch.ones(depths.shape, dtype=torch.bool),
        intrinsics=torch.from_numpy(K).float().expand(T, 3, 3).clone(),
        cam2world=torch.from_numpy(poses),
    )


def test_room_fixture_reprojects_and_the_check_catches_convention_bugs():
    poses, K, depths, images = room_frames()
    good = _sample_from_room(poses, K, depths, images)
    assert_reprojects(good, [(0, 1), (0, 3), (3, 1)], median_tol=1e-4)
    # world2cam instead of cam2world, a y-up camera, ray length instead of z: all caught.
    inverted = _sample_from_room(np.linalg.inv(poses), K, depths, images)
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    opengl = _sample_from_room(poses @ flip, K, depths, images)
    u, v = np.meshgrid(np.arange(32.0), np.arange(24.0))
    rays = np.linalg.norm(np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T, axis=-1)
    ray_length = _sample_from_room(poses, K, depths * rays, images)
    for bad in (inverted, opengl, ray_length):
        err = reprojection_depth_errors(bad, 0, 3)
        assert err.numel() < 100 or float(err.median()) > 5e-3


def test_registry_names_every_reader():
    for name in ["tum", "bonn", "7scenes", "sintel", "kitti", "nrgbd", "pointodyssey"]:
        assert name in SOURCES and issubclass(SOURCES[name], SequenceSource)
    with pytest.raises(KeyError, match="unknown source"):
        make_source("nope", ".")


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_source("7scenes", tmp_path / "absent")


def test_sources_satisfy_the_protocol(tmp_path):
    (tmp_path / "seq").mkdir()
    src = make_source("7scenes", tmp_path)
    assert isinstance(src, SourceLike)
    assert math.isfinite(len(src.sequences()))
