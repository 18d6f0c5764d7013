"""`mem4d scene`: inspect a saved scene memory (`mem4d reconstruct --scene-memory` writes one).

    mem4d scene render DIR --frame 12 --out view.png                  # at a stored frame's camera
    mem4d scene render DIR --pose "tx ty tz qw qx qy qz" --intrinsics 100,100,63.5,47.5 --size 96x128 --out view.png
    mem4d scene stats DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scene", help="render or inspect a saved scene memory",
                       description="Render the static layer of a saved scene memory from any camera, or print its stats.")
    actions = p.add_subparsers(dest="scene_command", metavar="ACTION", required=True)
    r = actions.add_parser("render", help="render the static layer from a camera")
    r.add_argument("dir", help="a scene memory folder, or a reconstruction folder containing scene_memory/")
    r.add_argument("--frame", type=int, help="use the camera (pose, intrinsics, size) of this stored frame index")
    r.add_argument("--pose", help="cam2world as 'tx ty tz qw qx qy qz' (quaternion scalar-first), world = first camera")
    r.add_argument("--pose-file", help="a text file with a 4x4 cam2world matrix")
    r.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels of --size (default: those of the last stored frame)")
    r.add_argument("--size", help="HxW of the rendered image (default: that of the last stored frame)")
    r.add_argument("--out", required=True, help="output PNG (a depth PNG is written beside it as *_depth.png)")
    s = actions.add_parser("stats", help="print counts, bytes and scene scale")
    s.add_argument("dir")
    p.set_defaults(run=run)


def _memory_dir(path: str) -> Path:
    d = Path(path)
    if (d / "scene_memory").is_dir():
        d = d / "scene_memory"
    if not d.is_dir():
        raise FileNotFoundError(f"{path}: no such scene memory folder (write one with `mem4d reconstruct --scene-memory`)")
    return d


def _camera(args: argparse.Namespace, bank):
    import numpy as np

    from mem4d.geometry.rotation import quat_to_matrix

    if bank.n == 0:
        raise ValueError("the scene memory holds no frames")
    given = [x is not None for x in (args.frame, args.pose, args.pose_file)]
    if sum(given) != 1:
        raise ValueError("give exactly one of --frame, --pose, --pose-file")
    if args.frame is not None:
        hits = np.flatnonzero(bank.t[: bank.n] == args.frame)
        if not len(hits):
            raise ValueError(f"frame {args.frame} is not in the memory (stored: {bank.t[0]}..{bank.t[bank.n - 1]})")
        i = int(hits[0])
        return bank.c2w[i], bank.K[i], tuple(int(v) for v in bank.size[i])
    if args.pose is not None:
        values = [float(v) for v in args.pose.replace(",", " ").split()]
        if len(values) != 7:
            raise ValueError("--pose needs 7 numbers: tx ty tz qw qx qy qz")
        import torch

        c2w = np.eye(4)
        c2w[:3, :3] = quat_to_matrix(torch.tensor(values[3:], dtype=torch.float64)).numpy()
        c2w[:3, 3] = values[:3]
    else:
        c2w = np.loadtxt(args.pose_file)
        if c2w.shape != (4, 4):
            raise ValueError(f"--pose-file must hold a 4x4 matrix, got shape {c2w.shape}")
    last = bank.n - 1
    size = tuple(int(v) for v in bank.size[last])
    if args.size:
        try:
            size = tuple(int(v) for v in args.size.lower().split("x"))
            assert len(size) == 2 and min(size) > 0
        except (ValueError, AssertionError):
            raise ValueError(f"--size must look like 96x128 (HxW), got {args.size!r}") from None
    K = bank.K[last].copy()
    if args.intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        except ValueError:
            raise ValueError(f"--intrinsics must be fx,fy,cx,cy, got {args.intrinsics!r}") from None
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    elif args.size:
        raise ValueError("with --size, also give --intrinsics for that size")
    return c2w, K, size


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from mem4d.scene import SceneMemory

    memory = SceneMemory.load(_memory_dir(args.dir))
    if args.scene_command == "stats":
        for key, value in vars(memory.stats()).items():
            print(f"{key}: {value}")
        return 0
    c2w, K, size = _camera(args, memory.bank)
    view = memory.render(c2w, K, size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(view.rgb[0], 0, 1) * 255).round().astype(np.uint8)).save(out)
    depth_mm = np.clip(view.depth[0] * 1000.0, 0, 65535).round().astype(np.uint16)
    Image.fromarray(depth_mm).save(out.with_name(out.stem + "_depth.png"))
    print(f"rendered {size[0]}x{size[1]} view: coverage {view.coverage:.3f} -> {out}")
    return 0
