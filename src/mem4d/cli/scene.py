"""`mem4d scene`: render or print the stats of a saved scene memory (`mem4d reconstruct --scene-memory` writes one).

    mem4d scene render DIR --frame 12 --out view.png                       # at a stored frame's camera
    mem4d scene render DIR --pose "$(sed -n 15p DIR/trajectory.txt)" --out view.png   # a TUM trajectory line
    mem4d scene render DIR --pose "tx ty tz qx qy qz qw" --size 256 --out view.png     # 2x the stored frames
    mem4d scene stats DIR

``--pose`` is TUM's order, the one of ``trajectory.txt`` (``[timestamp] tx ty tz qx qy qz qw``,
camera-to-world, world = the first camera). ``--size`` follows `mem4d.cli.sizes`: the long side
(the stored frames' aspect) or HxW; the intrinsics are the last stored frame's, scaled to it,
unless ``--intrinsics`` are given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mem4d.cli.sizes import format_hw, parse_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scene", help="render a saved scene memory from a camera, or print its stats (render, stats)",
                       description="Render the static layer of a saved scene memory (`mem4d reconstruct "
                       "--scene-memory` writes one in DIR/scene_memory) from any camera, or print its stats.")
    actions = p.add_subparsers(dest="scene_command", metavar="ACTION", required=True)
    r = actions.add_parser("render", help="render the static layer from a camera (PNG + depth PNG)")
    r.add_argument("dir", help="a reconstruction folder made with --scene-memory, or its scene_memory/ folder")
    r.add_argument("--frame", type=int, help="use the camera (pose, intrinsics, size) of this stored frame index")
    r.add_argument("--pose", help="cam2world in TUM's order, as a line of trajectory.txt: '[timestamp] tx ty tz qx qy "
                   "qz qw' (quaternion x y z w), world = the first camera")
    r.add_argument("--pose-file", help="a text file with a 4x4 cam2world matrix")
    r.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels of the rendered image (default: the last stored "
                   "frame's, scaled to --size)")
    r.add_argument("--size", help="rendered image: the long side N (the stored frames' aspect) or HxW (default: the "
                   "last stored frame's size)")
    r.add_argument("--out", required=True, help="output PNG (a depth PNG is written beside it as *_depth.png)")
    s = actions.add_parser("stats", help="print the memory's counts (frames, voxels, subjects), bytes and scene scale",
                           description="Prints the counts (frames, voxels, keyframes, subjects), memory use in bytes "
                           "and the scene scale of a saved scene memory.")
    s.add_argument("dir", help="a reconstruction folder made with --scene-memory, or its scene_memory/ folder")
    p.set_defaults(run=run)


def _memory_dir(path: str) -> Path:
    from mem4d.cli.output_dir import is_reconstruction

    d = Path(path)
    if (d / "scene_memory").is_dir():
        return d / "scene_memory"
    if is_reconstruction(d):
        raise ValueError(f"{path} is a reconstruction made without --scene-memory, so it holds no scene memory; "
                         "re-run `mem4d reconstruct INPUT --out DIR --overwrite --scene-memory`")
    if not d.is_dir():
        raise FileNotFoundError(f"{path}: no such scene memory folder (write one with `mem4d reconstruct "
                                "--scene-memory`)")
    return d


def parse_pose(text: str):
    """A TUM line ``[timestamp] tx ty tz qx qy qz qw`` -> (4, 4) cam2world (float64)."""
    import numpy as np
    import torch

    from mem4d.geometry.rotation import quat_to_matrix, quat_xyzw_to_wxyz

    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) not in (7, 8):
        raise ValueError(f"--pose needs 7 numbers 'tx ty tz qx qy qz qw' (TUM order) or a whole trajectory.txt line "
                         f"with its timestamp first, got {text!r}")
    t, q = values[-7:-4], values[-4:]
    if not np.isfinite(values).all() or np.linalg.norm(q) < 1e-9:
        raise ValueError(f"--pose: the quaternion qx qy qz qw must be finite and non-zero, got {q}")
    c2w = np.eye(4)
    c2w[:3, :3] = quat_to_matrix(quat_xyzw_to_wxyz(torch.tensor(q, dtype=torch.float64))).numpy()
    c2w[:3, 3] = t
    return c2w


def _render_size(text: str, stored: tuple[int, int]) -> tuple[int, int]:
    size = parse_size(text)
    if isinstance(size, tuple):
        H, W = size
    else:
        h, w = stored
        H, W = (size, max(1, round(w * size / h))) if h >= w else (max(1, round(h * size / w)), size)
    if min(H, W) < 1:
        raise ValueError(f"--size must be positive, got {text!r}")
    return H, W


def _camera(args: argparse.Namespace, bank):
    import numpy as np

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
        c2w, K, size = bank.c2w[i], bank.K[i].copy(), tuple(int(v) for v in bank.size[i])
    elif args.pose is not None:
        c2w = parse_pose(args.pose)
    else:
        c2w = np.loadtxt(args.pose_file)
        if c2w.shape != (4, 4):
            raise ValueError(f"--pose-file must hold a 4x4 matrix, got shape {c2w.shape}")
    if args.frame is None:
        last = bank.n - 1
        K, size = bank.K[last].copy(), tuple(int(v) for v in bank.size[last])
    if args.size:
        new = _render_size(args.size, size)
        sy, sx = new[0] / size[0], new[1] / size[1]  # pixel centres at integers: c' = s (c + 0.5) - 0.5
        K[0, 0], K[0, 2] = K[0, 0] * sx, sx * (K[0, 2] + 0.5) - 0.5
        K[1, 1], K[1, 2] = K[1, 1] * sy, sy * (K[1, 2] + 0.5) - 0.5
        size = new
    if args.intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        except ValueError:
            raise ValueError(f"--intrinsics must be fx,fy,cx,cy, got {args.intrinsics!r}") from None
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
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
    print(f"rendered a {format_hw(*size)} (HxW) view: coverage {view.coverage:.3f} -> {out}")
    return 0
