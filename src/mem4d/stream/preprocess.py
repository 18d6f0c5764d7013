"""From a decoded frame to the model's input: RGB in [0, 1], resized and cropped to multiples of 16.

* `to_rgb_float`: greyscale -> RGB (replicated), grey+alpha / RGBA -> the colour channels (alpha
  dropped), 16-bit -> [0, 1] by 65535, float images clipped to [0, 1]; NaN / inf -> ValueError.
* `Preprocessor`: the first frame fixes the geometry. The output is (H, W) with the long side
  ``long_side`` and the short side the nearest multiple of 16 to the aspect-preserving length
  (`mem4d.data.transforms.size_for_long_side`): the frame is resized (bilinear, antialiased when
  shrinking) until it covers (H, W), then centre-cropped. Intrinsics given in the input's pixels
  follow the same mapping (``scale_intrinsics`` then ``crop_intrinsics``, pixel-centre
  convention). A later frame of another size is first resized to the first frame's size (a
  warning, once). Frames whose smaller side is under 32 pixels are refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from mem4d.data.transforms import size_for_long_side
from mem4d.geometry.camera import crop_intrinsics, scale_intrinsics

__all__ = ["MIN_SIDE", "MULTIPLE", "parse_intrinsics", "to_rgb_float", "Preprocessor"]

MIN_SIDE = 32
MULTIPLE = 16


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    """``"fx,fy,cx,cy"`` (pixels of the input; commas or spaces) -> four floats; ValueError if malformed."""
    parts = [p for p in str(text).replace(",", " ").split()]
    if len(parts) != 4:
        raise ValueError(f"--intrinsics must be four numbers fx,fy,cx,cy (input pixels), got {text!r}")
    try:
        fx, fy, cx, cy = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"--intrinsics must be four numbers fx,fy,cx,cy (input pixels), got {text!r}") from None
    if not all(math.isfinite(v) for v in (fx, fy, cx, cy)):
        raise ValueError(f"--intrinsics values must be finite, got {text!r}")
    if fx <= 0 or fy <= 0:
        raise ValueError(f"--intrinsics focal lengths must be > 0, got fx={fx} fy={fy}")
    return fx, fy, cx, cy


def to_rgb_float(image: np.ndarray, name: str = "frame") -> np.ndarray:
    """(H, W) / (H, W, 1..4) uint8 / uint16 / int / float / bool -> (H, W, 3) float32 in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected an image (H, W) or (H, W, 1-4 channels), got shape {arr.shape}")
    channels = arr.shape[-1]
    arr = arr[..., :1] if channels in (1, 2) else arr[..., :3]  # drop alpha
    if arr.dtype == np.bool_:
        x = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif arr.dtype.kind in "iu":
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        x = np.clip(arr.astype(np.float64) / hi, 0.0, 1.0).astype(np.float32)
    elif arr.dtype.kind == "f":
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: the image contains NaN or infinite values")
        x = np.clip(x, 0.0, 1.0)
    else:
        raise ValueError(f"{name}: unsupported pixel type {arr.dtype}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if not np.isfinite(x).all():  # defensive: nothing above produces NaN from finite input
        raise ValueError(f"{name}: the image contains NaN or infinite values")
    return np.ascontiguousarray(x)


class Preprocessor:
    """Turns decoded frames into model input of one fixed size (see module docstring).

    Args:
        long_side: long side of the processed frames, a multiple of ``multiple`` (>= 32).
        intrinsics: optional ``(fx, fy, cx, cy)`` in the input's pixels.
        warn: called with a message for things that are handled but worth saying (mixed sizes).
        multiple: both output sides are multiples of it (the model's patch size, 16).

    After the first call: ``source_size`` (H0, W0), ``size`` (H, W), ``crop`` (top, left) in the
    resized frame, ``resized_size``, and ``intrinsics`` - the given intrinsics in processed pixels
    ((3, 3) float64) or None.
    """

    def __init__(self, long_side: int, intrinsics: tuple[float, float, float, float] | None = None,
                 warn: Callable[[str], None] | None = None, multiple: int = MULTIPLE) -> None:
        if not isinstance(long_side, (int, np.integer)) or long_side < max(MIN_SIDE, multiple) or long_side % multiple:
            raise ValueError(f"--size (the long side) must be a multiple of {multiple} and at least "
                             f"{max(MIN_SIDE, multiple)}, got {long_side} (e.g. {32 * multiple})")
        self.long_side = int(long_side)
        self.multiple = int(multiple)
        self.given = intrinsics
        self.warn = warn or (lambda msg: None)
        self.source_size: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None
        self.resized_size: tuple[int, int] | None = None
        self.crop: tuple[int, int] = (0, 0)
        self.intrinsics: np.ndarray | None = None
        self.resized_frames = 0  # frames of another size than the first

    def _setup(self, H0: int, W0: int) -> None:
        H, W = size_for_long_side(H0, W0, self.long_side, self.multiple)
        s = max(H / H0, W / W0)
        Hr, Wr = max(H, round(H0 * s)), max(W, round(W0 * s))
        self.source_size, self.size, self.resized_size = (H0, W0), (H, W), (Hr, Wr)
        self.crop = ((Hr - H) // 2, (Wr - W) // 2)
        if self.given is not None:
            fx, fy, cx, cy = self.given
            K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
            K = scale_intrinsics(K, Wr / W0, Hr / H0)
            K = crop_intrinsics(K, float(self.crop[1]), float(self.crop[0]))
            self.intrinsics = K.numpy()

    def __call__(self, image: np.ndarray, name: str = "frame") -> torch.Tensor:
        """Decoded frame -> (3, H, W) float32 tensor in [0, 1]."""
        x = to_rgb_float(image, name)
        h, w = x.shape[:2]
        if min(h, w) < MIN_SIDE:
            raise ValueError(f"{name} is {h}x{w} pixels (HxW); frames must be at least {MIN_SIDE} pixels on each side")
        if self.source_size is None:
            self._setup(h, w)
        assert self.source_size is not None and self.size is not None and self.resized_size is not None
        t = torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0)
        if (h, w) != self.source_size:
            if self.resized_frames == 0:
                H0, W0 = self.source_size
                self.warn(f"{name} is {h}x{w} (HxW) but the first frame is {H0}x{W0}: resizing frames of other sizes "
                          f"to {H0}x{W0} (aspect ratio not kept; intrinsics assume the first frame's camera)")
            self.resized_frames += 1
            t = _resize(t, self.source_size)
        t = _resize(t, self.resized_size)
        top, left = self.crop
        H, W = self.size
        return t[0, :, top:top + H, left:left + W].contiguous()


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    shrink = size[0] < t.shape[-2] or size[1] < t.shape[-1]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink).clamp_(0.0, 1.0)
