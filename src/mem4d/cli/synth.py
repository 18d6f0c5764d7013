"""`mem4d synth OUT`: writes synthetic dynamic scenes with exact ground truth in the CUT3R layout."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mem4d.cli.sizes import SIZE_HELP_SYNTHETIC, format_hw, synthetic_size

MIN_SIDE, MAX_SIDE = 16, 4096
# the generator's choices, repeated here so that `mem4d --help` does not import torch
# (a test checks they match mem4d.data.synthetic.PATH_KINDS / ENVIRONMENTS)
PATH_KINDS = ("handheld", "orbit", "forward", "rotation", "loop")
ENVIRONMENTS = ("room", "courtyard")


def parse_size(text: str) -> tuple[int, int]:
    """``--size`` of a synthetic scene, the long side N (3:4 landscape) or HxW -> (H, W) within the
    generator's limits; ValueError with a helpful message otherwise (`mem4d.cli.sizes`)."""
    H, W = synthetic_size(text)
    if not (MIN_SIDE <= H <= MAX_SIDE and MIN_SIDE <= W <= MAX_SIDE):
        raise ValueError(f"--size {H}x{W}: height and width must be between {MIN_SIDE} and {MAX_SIDE} pixels")
    return H, W


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic dynamic scenes with exact ground truth (CUT3R layout)",
        description="Generates synthetic dynamic scenes (rooms or courtyards with furniture, moving rigid "
        "objects and walkers, smooth camera paths) and writes each to OUT/<scene>/ with rgb/, depth/, "
        "cam/ (pose = cam2world, intrinsics), dynamic_mask/ and instance/ (16-bit) per frame.",
    )
    parser.add_argument("out", type=Path, help="output folder (created if missing)")
    parser.add_argument("--num-scenes", type=int, default=1, help="number of scenes (default 1)")
    parser.add_argument("--frames", type=int, default=24, help="frames per scene (default 24)")
    parser.add_argument("--size", default="256", help=f"image size: {SIZE_HELP_SYNTHETIC} (default 256: 192x256)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first scene; scene i uses seed+i (default 0)")
    parser.add_argument("--static", action="store_true", help="no moving objects")
    parser.add_argument("--camera-path", choices=PATH_KINDS, default=None, help="camera path kind (default random)")
    parser.add_argument("--environment", choices=ENVIRONMENTS, default=None, help="environment (default random)")
    parser.add_argument("--num-objects", type=int, default=None, help="moving objects per scene, 0-4 (default random)")
    parser.add_argument("--camera-speed", type=float, default=1.0, help="camera speed scale (default 1)")
    parser.add_argument("--noise", type=float, default=0.0, help="image noise std (default 0)")
    parser.add_argument("--blur", type=float, default=0.0, help="image blur sigma in pixels (default 0)")
    parser.add_argument("--scene-flow", action="store_true", help="also write scene_flow/<frame>.npy")
    parser.add_argument("--overwrite", action="store_true", help="replace scenes that already exist")
    parser.set_defaults(run=run)
    return parser


def scene_name(seed: int) -> str:
    return f"synth_{seed:06d}"


def _validate(args: argparse.Namespace) -> tuple[int, int]:
    H, W = parse_size(args.size)
    if args.num_scenes < 1:
        raise ValueError(f"--num-scenes must be at least 1, got {args.num_scenes}")
    if args.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {args.frames}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.num_objects is not None and not 0 <= args.num_objects <= 4:
        raise ValueError(f"--num-objects must be between 0 and 4, got {args.num_objects}")
    if args.static and args.num_objects:
        raise ValueError("--static and --num-objects > 0 contradict each other")
    for name in ("camera_speed", "noise", "blur"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"{args.out} exists and is not a folder")
    if not args.overwrite:
        existing = [
            scene_name(args.seed + i) for i in range(args.num_scenes) if (args.out / scene_name(args.seed + i)).exists()
        ]
        if existing:
            raise ValueError(
                f"{args.out / existing[0]} already exists ({len(existing)} scene(s)); use --overwrite to replace"
            )
    return H, W


def run(args: argparse.Namespace) -> int:
    H, W = _validate(args)  # before anything is created

    from tqdm import tqdm

    from mem4d.data.cut3r_layout import write_scene
    from mem4d.data.synthetic import make_scene

    knobs = {
        "camera_path": args.camera_path,
        "environment": args.environment,
        "camera_speed": args.camera_speed,
        "num_objects": 0 if args.static else args.num_objects,
        "noise": args.noise,
        "blur": args.blur,
    }
    written = []
    with tqdm(total=args.num_scenes, desc="mem4d synth", unit="scene") as bar:
        for i in range(args.num_scenes):
            seed = args.seed + i
            sample = make_scene(seed, args.frames, (H, W), dynamic=not args.static, **knobs)
            written.append(
                write_scene(sample, args.out, scene_name(seed), overwrite=args.overwrite, scene_flow=args.scene_flow)
            )
            bar.set_postfix_str(f"{sample.meta['environment']}/{sample.meta['camera_path']}")
            bar.update()
    print(
        f"wrote {len(written)} scene(s) of {args.frames} frame{'s' if args.frames != 1 else ''} at {format_hw(H, W)} "
        f"(HxW) to {args.out}/ "
        f"({written[0].name}{' .. ' + written[-1].name if len(written) > 1 else ''})"
    )
    return 0
