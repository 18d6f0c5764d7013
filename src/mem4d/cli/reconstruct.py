"""`mem4d reconstruct`: stream a video / images / a camera through Mem4D and write every output to disk.

    mem4d reconstruct clip.mp4 --out recon/
    mem4d reconstruct frames/ --out recon/ --size 512 --stride 2 --max-frames 300
    mem4d reconstruct 'shots/*.jpg' --out recon/ --intrinsics 525,525,319.5,239.5
    mem4d reconstruct --camera 0 --out live/            # Ctrl-C to stop

Frames are predicted one at a time (``Mem4D.step``) and written as they come, so memory does
not grow with the length of the input. Everything goes to a hidden temporary folder beside
``--out`` that is renamed at the end: a failure leaves nothing, Ctrl-C leaves a valid partial
result (meta.json ``"complete": false``, exit code 130). The output layout is documented in
docs/OUTPUTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mem4d.cli.output_dir import check_writable, is_reconstruction, replace_dir
from mem4d.cli.sizes import format_hw
from mem4d.cli.threads import add_threads_argument

PROG = "mem4d reconstruct"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "reconstruct",
        help="reconstruct a video, image folder or camera in 4D and write depth, poses, point clouds and exports",
        description="Streams INPUT (a video file, a folder of images, a quoted glob, or --camera N) through Mem4D "
        "frame by frame and writes per-frame RGB, depth, confidence, pointmaps and motion, the camera trajectory "
        "(TUM), intrinsics, a depth video, a fused static point cloud, scene.glb and COLMAP / nerfstudio exports "
        "to --out (see docs/OUTPUTS.md).",
    )
    p.add_argument("input", nargs="?", metavar="INPUT",
                   help="video file (mp4, mov, avi, mkv, ...), folder of images (natural order), or a quoted glob")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="DIR",
                   help="output folder: new, empty, or an earlier reconstruction (with --overwrite)")
    p.add_argument("--camera", type=int, default=None, metavar="N", help="read camera N instead of INPUT (Ctrl-C stops)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace DIR when it holds an earlier reconstruction (once the new result is complete); a "
                   "folder of other files is never replaced")
    g = p.add_argument_group("model")
    g.add_argument("--ckpt", default="default",
                   help="model folder written by save_pretrained (default: the shipped model 'default')")
    g.add_argument("--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, mps ...")
    add_threads_argument(g)
    g.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="fp32, or autocast to bf16 / fp16 (fp16: CUDA only)")
    g.add_argument("--pose-refinement", choices=["none", "photometric"], default=None,
                   help="camera poses from the network alone (none) or refined by photometric alignment of "
                   "consecutive frames on the predicted depth (photometric); default: what the model's config says "
                   "(the shipped model: photometric)")
    g.add_argument("--loop-closure", choices=["on", "off"], default=None,
                   help="with the photometric refinement, close the refined poses against old keyframes in view "
                   "where the video returns to a place it has seen (on; the frame that closes a loop jumps by the "
                   "drift it removes) or keep the chained poses (off); default: what the model's config says (the "
                   "shipped model: on)")
    g = p.add_argument_group("input")
    g.add_argument("--size", default=None, metavar="N",
                   help="long side of the processed frames in pixels, a multiple of 16; the short side follows the "
                   "input's aspect, rounded to a multiple of 16 by a centre crop (default: the model's own input "
                   "size, 128 for the shipped model)")
    g.add_argument("--stride", type=int, default=1, help="use every N-th input frame (default 1)")
    g.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    g.add_argument("--fps", type=float, default=None,
                   help="frame rate of the input for timestamps (default: the video's; image inputs have none and "
                   "use frame indices)")
    g.add_argument("--intrinsics", default=None, metavar="FX,FY,CX,CY",
                   help="known pinhole intrinsics in the input's pixels; recorded in the outputs and used to "
                   "re-derive pointmaps from the predicted depth and pose")
    g = p.add_argument_group("outputs")
    g.add_argument("--conf-threshold", default="auto", metavar="auto|auto:Q|C",
                   help="confidence a point needs for static.ply, moving/*.ply and the scene memory: auto (default) "
                   "drops each frame's least confident 10 %%, auto:Q the fraction Q, a number C is a fixed threshold "
                   "(the model's confidence is >= 1 and its scale depends on the model and the input)")
    g.add_argument("--voxel-size", type=float, default=None, metavar="M",
                   help="voxel of the static cloud in metres (default: 2 pixel footprints at the first frame's "
                   "median depth)")
    g.add_argument("--max-points", type=int, default=2_000_000,
                   help="cap on static-cloud points; the voxel doubles when exceeded (default 2,000,000)")
    g.add_argument("--pointmap-dtype", choices=["float32", "float16"], default="float32",
                   help="dtype of pts_world/ and pts_cam/ (default float32)")
    g.add_argument("--no-pointmaps", action="store_true", help="do not write pts_world/ and pts_cam/")
    g.add_argument("--no-video", action="store_true", help="do not write depth.mp4")
    g.add_argument("--no-glb", action="store_true", help="do not write scene.glb")
    g.add_argument("--no-colmap", action="store_true", help="do not write colmap/")
    g.add_argument("--no-nerfstudio", action="store_true", help="do not write transforms.json")
    g.add_argument("--scene-memory", action="store_true", help="also build a mem4d.scene memory (scene_memory/)")
    g = p.add_argument_group("display")
    g.add_argument("--view", action="store_true", help="show the reconstruction live in the browser (mem4d.viz.viewer)")
    g.add_argument("--view-port", type=int, default=None, metavar="PORT", help="port of the live viewer (default 8080)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def _warn(msg: str) -> None:
    print(f"{PROG}: warning: {msg}", file=sys.stderr)


def _validate(args: argparse.Namespace) -> int | None:
    """Checks the options before anything is read; returns --size (the long side) or None."""
    from mem4d.cli.sizes import long_side_only
    from mem4d.stream.confidence import parse_conf_threshold

    size = long_side_only(args.size)
    if args.stride < 1:
        raise ValueError(f"--stride must be >= 1, got {args.stride}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise ValueError(f"--fps must be > 0, got {args.fps}")
    parse_conf_threshold(args.conf_threshold)  # a clear error before anything is read
    if args.voxel_size is not None and not (math.isfinite(args.voxel_size) and args.voxel_size > 0):
        raise ValueError(f"--voxel-size must be > 0 metres, got {args.voxel_size}")
    if args.max_points < 1:
        raise ValueError(f"--max-points must be >= 1, got {args.max_points}")
    if args.camera is not None and args.input is not None:
        raise ValueError("give either INPUT or --camera N, not both")
    if args.camera is None and args.input is None:
        raise ValueError("no INPUT: give a video file, a folder of images, a quoted glob, or --camera N")
    return size


def _check_out(out: Path, overwrite: bool, input_path: str | None) -> None:
    """--out must be new, empty, or (with --overwrite) an earlier reconstruction; never the user's own files."""
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise ValueError(f"--out {out} exists and is not a folder; choose another path")
        if any(out.iterdir()):
            if not is_reconstruction(out):
                raise ValueError(f"--out {out} already exists and holds files that are not a mem4d reconstruction "
                                 "(no meta.json of `mem4d reconstruct`); --overwrite replaces only an earlier "
                                 "reconstruction, so choose another folder")
            if not overwrite:
                raise ValueError(f"--out {out} already holds a reconstruction; pass --overwrite to replace it, or "
                                 "choose another folder")
    check_writable(out)
    if input_path is not None and Path(input_path).exists():
        inp, o = Path(input_path).resolve(), out.resolve()
        if inp == o or o in inp.parents:
            raise ValueError(f"--out {out} contains the input {input_path}; write the reconstruction elsewhere")


def resolve_device(name: str):
    """``--device`` -> torch.device: ``auto`` is cuda when available, else cpu; ValueError when unusable."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:0, mps)") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: MPS is not available here; use --device cpu")
    return dev


def load_model(ckpt: str, device):
    from mem4d.model.mem4d import Mem4D

    if ckpt != "default":
        path = Path(ckpt).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"--ckpt {ckpt} does not exist (expected a folder with config.json and "
                                    "model.safetensors written by Mem4D.save_pretrained)")
        if not path.is_dir():
            raise ValueError(f"--ckpt {ckpt} is a file; pass the folder that holds config.json and model.safetensors")
        ckpt = str(path)
    try:
        model = Mem4D.from_pretrained(ckpt, map_location=device)
    except (ValueError, FileNotFoundError) as err:
        hint = "; pass a trained model folder with --ckpt DIR" if ckpt == "default" else ""
        raise ValueError(f"cannot load the model from --ckpt {ckpt}: {err}{hint}") from err
    except Exception as err:  # anything else a damaged or foreign checkpoint raises
        raise ValueError(f"cannot load the model from --ckpt {ckpt}: {type(err).__name__}: {err}") from err
    return model.eval()


def _make_viewer(port: int | None):
    try:
        from mem4d.viz.viewer import LiveViewer  # type: ignore[import-not-found]
    except ImportError as err:
        raise ValueError(f"--view needs the live viewer (mem4d.viz.viewer.LiveViewer), which is not available: {err}. "
                         "Install the viewer extra (pip install 'mem4d[viewer]') or drop --view") from err
    viewer = LiveViewer() if port is None else LiveViewer(port=port)
    if not hasattr(viewer, "add_frame"):
        raise ValueError("--view: mem4d.viz.viewer.LiveViewer has no add_frame(index, rgb, out); update mem4d")
    return viewer


def _frames(n: int) -> str:
    return f"{n} frame{'' if n == 1 else 's'}"


def _crop_note(pre) -> str | None:
    """What the centre crop cut away, or None when the resize alone gave the processed size."""
    (H0, W0), (Hr, Wr), (H, W) = pre.source_size, pre.resized_size, pre.size
    if (Hr, Wr) == (H, W):
        return None
    cut = [f"{100 * (Wr - W) / Wr:.1f} % of the width" if Wr != W else "",
           f"{100 * (Hr - H) / Hr:.1f} % of the height" if Hr != H else ""]
    return (f"frames of {format_hw(H0, W0)} (HxW) are resized to {format_hw(Hr, Wr)} and centre-cropped to "
            f"{format_hw(H, W)}, cutting {' and '.join(c for c in cut if c)} (sides must be multiples of 16)")


def _fmt_m(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    return f"{x * 100:.1f} cm" if abs(x) < 1 else f"{x:.2f} m"


def run(args: argparse.Namespace) -> int:
    size = _validate(args)
    out: Path = args.out.expanduser()
    _check_out(out, args.overwrite, args.input)

    from mem4d import __version__
    from mem4d.cli.threads import apply_threads
    from mem4d.stream.confidence import parse_conf_threshold
    from mem4d.stream.engine import defer_interrupts, run_stream
    from mem4d.stream.preprocess import Preprocessor, parse_intrinsics
    from mem4d.stream.sinks import ReconstructionWriter, WriterOptions
    from mem4d.stream.sources import open_source

    intrinsics = parse_intrinsics(args.intrinsics) if args.intrinsics is not None else None
    device = resolve_device(args.device)
    threads = apply_threads(args.threads)
    if args.dtype == "fp16" and device.type != "cuda":
        raise ValueError("--dtype fp16 needs a CUDA device; use --dtype bf16 or fp32 on the CPU")

    source = open_source(args.input, camera=args.camera, fps=args.fps)
    tmp: Path | None = None
    writer = None
    viewer = None
    try:
        first = source.peek()  # a corrupt input fails here, before anything is written
        model = load_model(args.ckpt, device)
        overrides: dict[str, object] = {}  # the heads settings given on the command line
        if args.pose_refinement is not None:
            overrides["pose_refinement"] = args.pose_refinement
        if args.loop_closure is not None:
            overrides["loop_closure"] = args.loop_closure == "on"
        if overrides:
            model.config = dataclasses.replace(model.config, heads=dataclasses.replace(model.config.heads, **overrides))
        patch = int(model.config.encoder.patch_size)
        long_side = size if size is not None else max(model.config.image_size)
        warned: set[str] = set()

        def warn_once(msg: str) -> None:
            key = msg.split(":")[0] if "resizing" not in msg else "resizing"
            if key not in warned:
                warned.add(key)
                _warn(msg)

        pre = Preprocessor(long_side, intrinsics, warn=warn_once, multiple=patch)
        pre(first.image, first.name or f"frame {first.index}")  # validates the first frame, fixes the geometry
        assert pre.size is not None and pre.source_size is not None
        if intrinsics is not None:
            if not (0 <= intrinsics[2] <= pre.source_size[1] and 0 <= intrinsics[3] <= pre.source_size[0]):
                _warn(f"--intrinsics principal point ({intrinsics[2]}, {intrinsics[3]}) lies outside the "
                      f"{format_hw(*pre.source_size)} (HxW) input image; check the order fx,fy,cx,cy")
        if args.view:
            viewer = _make_viewer(args.view_port)
            if getattr(viewer, "url", None):
                print(f"{PROG}: live view at {viewer.url}", file=sys.stderr)

        fps = source.fps
        stride = args.stride
        video_fps = (fps / stride) if fps else 10.0
        options = WriterOptions(
            pointmaps=not args.no_pointmaps, pointmap_dtype=args.pointmap_dtype, video=not args.no_video,
            video_fps=video_fps, conf_threshold=parse_conf_threshold(args.conf_threshold),
            voxel_size=args.voxel_size, max_points=args.max_points, glb=not args.no_glb, colmap=not args.no_colmap,
            nerfstudio=not args.no_nerfstudio, scene_memory=args.scene_memory)
        fixed = (pre.intrinsics, pre.size) if pre.intrinsics is not None else None

        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        except OSError as err:
            raise ValueError(f"--out {out}: cannot write in {out.parent} ({err.strerror or err}); choose a folder "
                             "you can write to") from None
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
        writer = ReconstructionWriter(tmp, options, fixed_intrinsics=fixed, timestamps_in_seconds=bool(fps),
                                      warn=_warn)
        total = source.length_hint()
        if total is not None:
            total = math.ceil(total / stride)
            if args.max_frames is not None:
                total = min(total, args.max_frames)
        cpu_threads = f", {threads} thread{'' if threads == 1 else 's'}" if device.type == "cpu" else ""
        where = f"{format_hw(*pre.size)} HxW, {device}, {args.dtype}{cpu_threads}"
        print(f"{PROG}: {source.description} -> {out} ({where})", file=sys.stderr)
        crop_note = _crop_note(pre)
        if crop_note:
            print(f"{PROG}: {crop_note}", file=sys.stderr)
        summary = run_stream(model, source.frames(stride, args.max_frames), pre, writer, device=device,
                             dtype=args.dtype, fps=fps, total=total, progress=not args.no_progress, viewer=viewer,
                             warn=_warn)
        stopped_camera = summary.interrupted and source.kind == "camera"
        complete = not summary.interrupted or stopped_camera
        if summary.frames == 0:
            writer.abort()
            shutil.rmtree(tmp, ignore_errors=True)
            tmp = None
            if summary.interrupted:
                print(f"{PROG}: interrupted before the first frame was written; nothing written", file=sys.stderr)
                return 130
            raise ValueError(f"{source.description}: no frames")
        meta = {
            "format": "mem4d.reconstruct/1",
            "complete": complete,
            "stopped_by_user": summary.interrupted,
            "input": str(args.input) if args.input is not None else f"camera {args.camera}",
            "input_kind": source.kind,
            "ckpt": str(args.ckpt),
            "model": {"dim": model.config.dim, "variant": model.config.variant,
                      "encoder_depth": model.config.encoder.depth, "patch_size": patch,
                      "pose_refinement": model.config.heads.pose_refinement,
                      "loop_closure": model.config.heads.loop_closure},
            "source_size": list(pre.source_size),
            "resized_size": list(pre.resized_size or ()),
            "crop_top_left": list(pre.crop),
            "stride": stride,
            "max_frames": args.max_frames,
            "fps": fps,
            "timestamps": "seconds" if fps else "frame_index",
            "source_index_first": summary.first_source_index,
            "source_index_last": summary.last_source_index,
            "mixed_size_frames": pre.resized_frames,
            "device": str(device),
            "threads": threads,
            "dtype": args.dtype,
            "intrinsics_given": None if intrinsics is None else {
                "input_fx_fy_cx_cy": list(intrinsics),
                "processed_fx_fy_cx_cy": [float(pre.intrinsics[0, 0]), float(pre.intrinsics[1, 1]),
                                          float(pre.intrinsics[0, 2]), float(pre.intrinsics[1, 2])],
                "note": "pts_cam / pts_world re-derived from the predicted depth and pose with these intrinsics"},
            "elapsed_s": round(summary.elapsed_s, 3),
            "frames_per_second": summary.frames_per_second,
            "mean_depth": summary.mean_depth,
            "path_length": summary.path_length,
            "mem4d_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        try:
            with defer_interrupts():
                meta = writer.finalize(meta)
                replace_dir(tmp, out)
        except KeyboardInterrupt:
            pass  # finished anyway: the result is in place
        tmp = None
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise ValueError(f"writing the reconstruction failed, nothing was kept: {exc}") from exc
        raise
    finally:
        source.close()
        if viewer is not None and hasattr(viewer, "close"):
            try:
                viewer.close()
            except Exception:
                pass

    H, W = pre.size
    voxel = meta.get("voxel_size")
    print(f"{PROG}: {_frames(summary.frames)} ({format_hw(H, W)} HxW) in {summary.elapsed_s:.1f} s "
          f"({summary.frames_per_second:.2f} frames/s) on {device} {args.dtype}")
    print(f"  mean depth {_fmt_m(summary.mean_depth)}, camera path {_fmt_m(summary.path_length)}, static cloud "
          f"{meta['static_points']:,} points (voxel {_fmt_m(voxel) if voxel else 'n/a'})")
    print(f"  wrote {out}{os.sep}: {' '.join(meta['files'])}  (see docs/OUTPUTS.md)")
    if summary.interrupted and not complete:
        print(f"{PROG}: interrupted after {_frames(summary.frames)}; partial result in {out} "
              '(meta.json "complete": false)', file=sys.stderr)
        return 130
    return 0

