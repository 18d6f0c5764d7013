"""Synthetic dynamic scenes with exact ground truth: the test fixture, training set, demo and benchmark.

    from mem4d.data.synthetic import make_scene, world_pointmap
    sample = make_scene(seed=0, num_frames=16, image_size=(96, 128))   # a validated Sample
    pts_world = world_pointmap(sample)                                   # (T, H, W, 3)

Modules: `textures` (procedural tileable textures, mip-mapped lookup), `shapes` (analytic
ray–primitive intersection), `camera_paths`, `motion` (rigid objects and walkers), `scene`
(layout sampling), `render` (vectorised ray casting and ground truth), `generate` (`make_scene`).
The realistic appearance (``make_scene(..., appearance="realistic")``, off by default):
`appearance` (its parts; textures, lighting, real cameras and rooms), `photos` (sample
photographs of scikit-image / scikit-learn as textures), `natural_textures` (dead leaves, 1/f
noise) and `camera_effects` (motion blur, exposure, vignetting, sensor noise, white balance, JPEG).
"""

from .appearance import APPEARANCES, Appearance
from .camera_paths import PATH_KINDS
from .generate import GENERATOR_VERSION, MAX_OBJECTS, make_scene, world_pointmap
from .scene import ENVIRONMENTS

__all__ = [
    "APPEARANCES", "ENVIRONMENTS", "GENERATOR_VERSION", "MAX_OBJECTS", "PATH_KINDS", "Appearance", "make_scene",
    "world_pointmap",
]
