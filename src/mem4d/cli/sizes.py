"""One image-size convention for every command: ``--size N`` is the long side in pixels.

* ``N`` (one number): the long side. Where the input has an aspect ratio (a video, a folder, a
  benchmark, a stored camera) the short side follows it; commands that render a synthetic scene
  of their own (`demo`, `synth`, `bench`) make it 3:4 landscape, the short side the multiple of 16
  nearest to ``3 N / 4`` (128 -> 96x128, 256 -> 192x256, 512 -> 384x512).
* ``HxW``: exactly H rows and W columns, accepted by the commands that make images of a chosen
  shape (`demo`, `synth`, `bench`, `scene render`); `reconstruct` and `eval predict` keep the
  input's aspect and take the long side only.

Sizes are printed the same way everywhere: ``HxW`` (height first, as arrays and meta.json
store them), e.g. ``96x128 (HxW)``.
"""

from __future__ import annotations

import re

__all__ = ["SIZE_HELP_SYNTHETIC", "format_hw", "long_side_only", "parse_size", "synthetic_size"]

SIZE_HELP_SYNTHETIC = "the long side N in pixels (the image is 3:4 landscape, e.g. 128 -> 96x128) or HxW exactly"


def parse_size(text: str | int) -> int | tuple[int, int]:
    """``"128"`` -> 128 (the long side); ``"96x128"`` -> (96, 128) (H, W); ValueError otherwise."""
    s = str(text).strip()
    if re.fullmatch(r"\d+", s):
        n = int(s)
        if n < 1:
            raise ValueError(f"--size must be a positive number of pixels, got {text!r}")
        return n
    m = re.fullmatch(r"(\d+)\s*[xX]\s*(\d+)", s)
    if not m:
        raise ValueError(f"--size must be the long side in pixels (e.g. 128) or HxW (height x width, e.g. 96x128), "
                         f"got {text!r}")
    return int(m.group(1)), int(m.group(2))


def synthetic_size(text: str | int, multiple: int = 16) -> tuple[int, int]:
    """``--size`` of a command that renders its own 3:4 scene -> (H, W)."""
    size = parse_size(text)
    if isinstance(size, tuple):
        return size
    short = max(multiple, int(round(3 * size / 4 / multiple)) * multiple)
    return short, size


def long_side_only(text: str | int | None, flag: str = "--size") -> int | None:
    """``--size`` of a command that keeps its input's aspect: the long side; HxW is refused with a hint."""
    if text is None:
        return None
    size = parse_size(text)
    if isinstance(size, tuple):
        raise ValueError(f"{flag} {text}: here {flag} is the long side only (one number, e.g. {max(size)}); the "
                         "short side follows the input's aspect ratio")
    return size


def format_hw(height: int, width: int) -> str:
    """``"96x128"``: height first, as everywhere in mem4d."""
    return f"{int(height)}x{int(width)}"
