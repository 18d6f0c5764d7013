"""Dataset readers: one module per on-disk format, all with the :class:`SequenceSource` interface.

Each reader turns its dataset's conventions into this library's (OpenCV cam2world, metres,
z-depth + valid mask, images in [0, 1]) in one place and returns native-resolution
:class:`~mem4d.data.sample.Sample` clips; :mod:`mem4d.data.clips` samples, resizes and
re-anchors them for training.

Example::

    >>> from mem4d.data.sources import make_source
    >>> src = make_source("7scenes", "data/7scenes")            # doctest: +SKIP
    >>> clip = src.load(src.sequences()[0], [0, 5, 10])         # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mem4d.data.sources.cut3r import Cut3rSource
from mem4d.data.sources.base import Frame, SequenceSource, SourceLike, reprojection_depth_errors
from mem4d.data.sources.kitti import KittiSource
from mem4d.data.sources.nrgbd import NrgbdSource
from mem4d.data.sources.pointodyssey import PointOdysseySource
from mem4d.data.sources.seven_scenes import SevenScenesSource
from mem4d.data.sources.sintel import SintelSource
from mem4d.data.sources.tum import BonnSource, TumSource

__all__ = [
    "Frame",
    "SequenceSource",
    "SourceLike",
    "SOURCES",
    "make_source",
    "register_source",
    "reprojection_depth_errors",
    "TumSource",
    "BonnSource",
    "SevenScenesSource",
    "SintelSource",
    "KittiSource",
    "NrgbdSource",
    "PointOdysseySource",
    "Cut3rSource",
]

#: Registry: dataset name -> reader class (``make_source(name, root, **kwargs)``).
SOURCES: dict[str, type] = {
    "tum": TumSource,
    "bonn": BonnSource,
    "7scenes": SevenScenesSource,
    "sintel": SintelSource,
    "kitti": KittiSource,
    "nrgbd": NrgbdSource,
    "pointodyssey": PointOdysseySource,
    "cut3r": Cut3rSource,
}


def register_source(name: str, cls: type) -> None:
    """Adds a reader class (anything whose instances satisfy :class:`SourceLike`) to the registry."""
    if name in SOURCES and SOURCES[name] is not cls:
        raise ValueError(f"source {name!r} is already registered as {SOURCES[name].__name__}")
    SOURCES[name] = cls


def make_source(name: str, root: str | Path, **kwargs: Any) -> SourceLike:
    """Instantiates the reader registered as ``name`` on ``root``."""
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; registered: {sorted(SOURCES)}")
    return SOURCES[name](root, **kwargs)
