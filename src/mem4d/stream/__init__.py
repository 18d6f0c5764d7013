"""mem4d.stream: video / images / camera -> ``Mem4D.step`` -> files on disk, one frame at a time.

Modules (imported on use; nothing heavy here):

- `sources`: `open_source(input | camera)` -> a `FrameSource` of decoded frames (videos through
  imageio-ffmpeg, image folders and globs in natural order, cameras best effort).
- `preprocess`: `Preprocessor` (RGB in [0, 1], long side resized, crop to multiples of 16,
  intrinsics mapped) and `parse_intrinsics`.
- `engine`: `run_stream`, the loop over ``Mem4D.step`` with a progress bar, flat host memory
  and clean Ctrl-C handling.
- `sinks`: `ReconstructionWriter`, every output of ``mem4d reconstruct`` (docs/OUTPUTS.md).
"""
