"""``scene.glb``: the static point cloud and the camera frustums in one glTF binary (trimesh).

glTF is y-up with cameras looking down -z, so the whole scene is turned by
``diag(1, -1, -1)`` (mem4d's world is the first OpenCV camera: y down, z forward); in a glTF
viewer (Blender, three.js, https://gltf-viewer.donmccurdy.com) the first camera then looks
"forward" with the floor below. Frustums are line sets (apex + the four image corners at depth
``frustum_depth``), coloured from blue (first frame) to yellow (last) with the viridis map.

trimesh is the optional ``export`` extra (``pip install 'mem4d[export]'``); it is imported
only when a file is written and `TrimeshMissing` says how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["GLTF_FROM_WORLD", "TrimeshMissing", "frustum_segments", "write_glb"]

GLTF_FROM_WORLD = np.diag([1.0, -1.0, -1.0])


class TrimeshMissing(ImportError):
    """trimesh is not installed."""


def _trimesh():
    try:
        import trimesh
    except ImportError as err:
        raise TrimeshMissing("scene.glb needs trimesh: pip install 'mem4d[export]' (or pip install trimesh)") from err
    return trimesh


def frustum_segments(cam2world: np.ndarray, K: np.ndarray, size: tuple[int, int], depth: float) -> np.ndarray:
    """(8, 2, 3) world-frame line segments of one camera's frustum (OpenCV camera, image corners at depth)."""
    H, W = size
    corners_uv = np.array([[-0.5, -0.5], [W - 0.5, -0.5], [W - 0.5, H - 0.5], [-0.5, H - 0.5]], np.float64)
    K = np.asarray(K, np.float64)
    rays = np.stack([(corners_uv[:, 0] - K[0, 2]) / K[0, 0], (corners_uv[:, 1] - K[1, 2]) / K[1, 1],
                     np.ones(4)], axis=-1) * depth
    c2w = np.asarray(cam2world, np.float64)
    corners = rays @ c2w[:3, :3].T + c2w[:3, 3]
    apex = c2w[:3, 3]
    segs = [(apex, corners[i]) for i in range(4)] + [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    return np.array(segs, np.float64)


def write_glb(path: str | os.PathLike, xyz: np.ndarray, rgb: np.ndarray | None,
              cameras: Sequence[tuple[np.ndarray, np.ndarray, tuple[int, int]]], frustum_depth: float) -> None:
    """Writes points (N, 3) with colours (N, 3) uint8 and frustums of ``cameras`` = [(cam2world, K, (H, W))].

    Raises `TrimeshMissing` when trimesh is not installed.
    """
    trimesh = _trimesh()
    from matplotlib import colormaps

    geometry = []
    xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
    if len(xyz):
        cols = np.full((len(xyz), 3), 180, np.uint8) if rgb is None else np.asarray(rgb, np.uint8).reshape(-1, 3)
        rgba = np.concatenate([cols, np.full((len(xyz), 1), 255, np.uint8)], axis=1)
        geometry.append(trimesh.PointCloud(xyz @ GLTF_FROM_WORLD.T, colors=rgba))
    if cameras:
        segs = np.concatenate([frustum_segments(c2w, K, size, frustum_depth) for c2w, K, size in cameras])
        segs = segs @ GLTF_FROM_WORLD.T
        path3d = trimesh.load_path(segs)
        n = len(cameras)
        t = np.repeat(np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1), 8)
        colours = (colormaps["viridis"](t) * 255).astype(np.uint8)
        if len(path3d.entities) == len(colours):
            path3d.colors = colours
        geometry.append(path3d)
    scene = trimesh.Scene(geometry)
    data = scene.export(file_type="glb")
    with open(path, "wb") as f:
        f.write(data)
