"""Frame sources for streaming: a video file, a folder or glob of images, a camera.

`open_source(input, camera=None)` picks one from what ``input`` is and returns a `FrameSource`:

* a video file (``.mp4 .mov .avi .mkv .webm .m4v .mpg .mpeg .wmv .flv .gif`` or anything
  ffmpeg reads), decoded frame by frame by imageio-ffmpeg (one frame in memory at a time);
* a folder of images (``.png .jpg .jpeg .bmp .tif .tiff .webp .ppm .pgm .pnm``), in natural
  order (``frame2`` before ``frame10``), hidden files ignored;
* a glob pattern (quote it in the shell: ``'frames/*.png'``), natural order;
* a single image file (one frame);
* ``camera=N``: camera N through imageio's ``<videoN>`` (ffmpeg: v4l2 on Linux, avfoundation on
  macOS, dshow on Windows). Best effort: it depends on the platform's ffmpeg build.

`FrameSource.frames(stride, max_frames)` yields `RawFrame`s: the image as decoded (uint8 /
uint16 / float arrays, (H, W) or (H, W, C)); converting to RGB in [0, 1] is
`mem4d.stream.preprocess`'s job. ``peek()`` decodes the first frame up front so a bad input
fails before anything is written.

Errors are ``FileNotFoundError`` (missing input) or ``ValueError`` with a message saying what
is wrong and what would work.
"""

from __future__ import annotations

import glob as globlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "RawFrame", "FrameSource", "VideoSource", "ImageSource",
           "CameraSource", "open_source", "natural_key", "read_image"]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")


@dataclass
class RawFrame:
    """One decoded input frame.

    Attributes:
        index: position in the source (0-based, before ``stride``).
        image: (H, W) or (H, W, C) array as decoded (uint8, uint16, int32 or float).
        name: the file name for image sources, else None.
    """

    index: int
    image: np.ndarray
    name: str | None = None


def natural_key(text: str) -> list[Any]:
    """Sort key that orders embedded numbers numerically: ``frame2 < frame10``; case-insensitive."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", text)]


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decodes one image with Pillow (EXIF orientation applied).

    Returns (H, W) / (H, W, C) arrays: uint8 for 8-bit modes (palette images expanded, CMYK /
    YCbCr / LAB converted to RGB, 1-bit to L), uint16 for 16-bit greyscale, int32 for ``I``,
    float32 for ``F``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # a broken EXIF block is not worth failing for
                pass
            mode = img.mode
            if mode == "P" or mode == "PA":
                img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
            elif mode == "1":
                img = img.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            elif mode in ("La", "RGBa"):
                img = img.convert("LA" if mode == "La" else "RGBA")
            arr = np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    if arr.dtype.byteorder == ">":  # I;16B
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


class FrameSource:
    """A stream of `RawFrame`s. Use as a context manager (or call ``close``)."""

    kind = "source"

    def __init__(self) -> None:
        self.fps: float | None = None  # frames per second of the input, None if unknown
        self.description = ""
        self._peeked: RawFrame | None = None

    def __len__(self) -> int:  # pragma: no cover - overridden where known
        raise TypeError("length unknown")

    def length_hint(self) -> int | None:
        """Number of frames (exact for images, estimated for videos, None for cameras)."""
        return None

    def _iter(self, stride: int) -> Iterator[RawFrame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def peek(self) -> RawFrame:
        """Decodes (once) and returns the first frame; raises ValueError if there is none."""
        if self._peeked is None:
            it = self._iter(1)
            try:
                self._peeked = next(it)
            except StopIteration:
                raise ValueError(f"{self.description}: no frames") from None
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        return self._peeked

    def frames(self, stride: int = 1, max_frames: int | None = None) -> Iterator[RawFrame]:
        """Every ``stride``-th frame (starting with the first), at most ``max_frames``."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        count = 0
        it = self._iter(stride)
        try:
            for frame in it:
                yield frame
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageSource(FrameSource):
    """Image files, in the given order."""

    kind = "images"

    def __init__(self, paths: list[Path], description: str, fps: float | None = None) -> None:
        super().__init__()
        if not paths:
            raise ValueError(f"{description}: no images found (looked for {' '.join(IMAGE_EXTENSIONS)})")
        self.paths = paths
        self.description = description
        self.fps = fps

    def __len__(self) -> int:
        return len(self.paths)

    def length_hint(self) -> int | None:
        return len(self.paths)

    def _iter(self, stride: int) -> Iterator[RawFrame]:
        for i in range(0, len(self.paths), stride):
            if i == 0 and self._peeked is not None:
                yield self._peeked
                continue
            yield RawFrame(i, read_image(self.paths[i]), self.paths[i].name)


class VideoSource(FrameSource):
    """A video file decoded by imageio-ffmpeg (RGB, 8 bit, rotation metadata applied by ffmpeg)."""

    kind = "video"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.description = f"video {path}"
        try:
            import imageio_ffmpeg
        except ImportError as err:
            raise ValueError("reading videos needs imageio-ffmpeg: pip install 'mem4d[video]'") from err
        self._ffmpeg = imageio_ffmpeg
        gen = self._open()
        try:
            meta = next(gen)
        except Exception as err:
            raise ValueError(f"cannot read {self.description}: not a video ffmpeg can decode "
                             f"({_first_line(err)})") from err
        finally:
            gen.close()
        self.size = tuple(int(v) for v in meta.get("size", (0, 0)))  # (W, H)
        fps = float(meta.get("fps") or 0.0)
        self.fps = fps if fps > 0 and np.isfinite(fps) else None
        duration = float(meta.get("duration") or 0.0)
        self._estimate = int(round(duration * fps)) if self.fps and duration > 0 else None
        if self.size[0] <= 0 or self.size[1] <= 0:
            raise ValueError(f"cannot read {self.description}: ffmpeg reports no video stream")

    def _open(self) -> Any:
        return self._ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")

    def length_hint(self) -> int | None:
        return self._estimate

    def _iter(self, stride: int) -> Iterator[RawFrame]:
        gen = self._open()
        try:
            try:
                meta = next(gen)
            except Exception as err:
                raise ValueError(f"cannot read {self.description}: {_first_line(err)}") from err
            W, H = (int(v) for v in meta["size"])
            i = 0
            while True:
                try:
                    data = next(gen)
                except StopIteration:
                    return
                except Exception as err:
                    raise ValueError(f"cannot decode frame {i} of {self.description}: {_first_line(err)}") from err
                if i % stride == 0:
                    if len(data) != W * H * 3:
                        raise ValueError(f"frame {i} of {self.description} is truncated "
                                         f"({len(data)} bytes, expected {W * H * 3})")
                    yield RawFrame(i, np.frombuffer(data, np.uint8).reshape(H, W, 3))
                i += 1
        finally:
            gen.close()


class CameraSource(FrameSource):
    """Camera ``index`` through imageio's ``<videoN>`` reader (best effort; needs a camera and ffmpeg)."""

    kind = "camera"

    def __init__(self, index: int) -> None:
        super().__init__()
        if index < 0:
            raise ValueError(f"--camera must be >= 0, got {index}")
        self.index = index
        self.description = f"camera {index}"
        try:
            import imageio.v2 as iio
        except ImportError as err:
            raise ValueError("cameras need imageio and imageio-ffmpeg: pip install 'mem4d[video]'") from err
        try:
            self._reader = iio.get_reader(f"<video{index}>")
            meta = self._reader.get_meta_data()
        except Exception as err:
            raise ValueError(f"cannot open camera {index} ({_first_line(err)}); check that it exists "
                             "(e.g. /dev/video0 on Linux) and is not used by another program, or record a "
                             "video and pass its path instead") from err
        fps = float(meta.get("fps") or 0.0)
        self.fps = fps if fps > 0 and np.isfinite(fps) else None

    def _iter(self, stride: int) -> Iterator[RawFrame]:
        if self._peeked is not None:
            yield self._peeked
            start = 1
        else:
            start = 0
        i = start
        while True:
            try:
                image = self._reader.get_next_data()
            except (IndexError, StopIteration):
                return
            except Exception as err:
                raise ValueError(f"camera {self.index} stopped delivering frames ({_first_line(err)})") from err
            if i % stride == 0:
                yield RawFrame(i, np.asarray(image))
            i += 1

    def close(self) -> None:
        try:
            self._reader.close()
        except Exception:
            pass


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def open_source(input: str | os.PathLike | None, camera: int | None = None, fps: float | None = None) -> FrameSource:
    """The `FrameSource` for ``input`` (path, folder or glob) or ``camera``.

    ``fps`` overrides the input's frame rate (image sources have none).
    """
    if camera is not None:
        if input is not None:
            raise ValueError("give either an INPUT or --camera, not both")
        src: FrameSource = CameraSource(int(camera))
        if fps is not None:
            src.fps = fps
        return src
    if input is None or str(input) == "":
        raise ValueError("no INPUT: give a video file, a folder of images, a quoted glob or --camera N")
    text = str(input)
    path = Path(text).expanduser()
    if not path.exists() and any(ch in text for ch in "*?["):
        matches = [Path(m) for m in globlib.glob(os.path.expanduser(text), recursive=True)]
        images = sorted((m for m in matches if m.is_file() and _is_image(m)), key=lambda p: natural_key(str(p)))
        if not images:
            extra = f" ({len(matches)} other file(s) matched)" if matches else ""
            raise ValueError(f"glob {text!r} matches no images{extra}; image types: {' '.join(IMAGE_EXTENSIONS)}")
        return ImageSource(images, f"glob {text!r}", fps)
    if not path.exists():
        raise FileNotFoundError(f"input {text} does not exist")
    if path.is_dir():
        images = sorted((p for p in path.iterdir() if p.is_file() and _is_image(p)), key=lambda p: natural_key(p.name))
        if not images:
            videos = [p.name for p in path.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS]
            hint = f"; it holds video(s) {', '.join(sorted(videos)[:3])}: pass one of them" if videos else ""
            raise ValueError(f"folder {path} has no images ({' '.join(IMAGE_EXTENSIONS)}){hint}")
        return ImageSource(images, f"folder {path}", fps)
    if path.stat().st_size == 0:
        raise ValueError(f"input {path} is an empty file")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource([path], f"image {path}", fps)
    src = VideoSource(path)
    if fps is not None:
        src.fps = fps
    return src
