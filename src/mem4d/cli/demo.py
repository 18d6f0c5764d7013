"""`mem4d demo`: renders one synthetic dynamic scene and writes what it contains to a folder.

For now (before the model exists) the demo shows the input and ground truth a reconstruction will
be compared with: frames, depth (coloured PNG + .npy), dynamic masks, a top view of the camera
path with the scene's points, an overview sheet and the scene's description (scene.json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mem4d.cli.synth import parse_size


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="render a synthetic dynamic scene and write frames, depth, masks and a camera-path plot",
        description="Generates one synthetic dynamic scene (walkers, moving objects, a moving camera) and writes "
        "its frames, depth maps, dynamic masks and a top view of the camera path to --out.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out/)")
    parser.add_argument("--frames", type=int, default=24, help="number of frames (default 24)")
    parser.add_argument("--size", default="192x256", help="image size HxW (default 192x256)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    parser.set_defaults(run=run)
    return parser


def _colourise_depth(depth, valid, lo: float, hi: float):
    import numpy as np
    from matplotlib import colormaps

    x = np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    rgb = colormaps["turbo"](1.0 - x)[..., :3]  # near = red, far = blue
    rgb[~valid] = 0.0
    return (rgb * 255 + 0.5).astype(np.uint8)


def _camera_plot(sample, path: Path) -> None:
    """Top view (x right, z forward of the first camera) of camera centres, view directions and points."""
    import math

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mem4d.data.synthetic import world_pointmap

    c2w = sample.cam2world.double().numpy()
    centres = c2w[:, :3, 3]
    pts = world_pointmap(sample).numpy()
    valid = sample.valid.numpy()
    dyn = sample.dynamic_mask.numpy()
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(7, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    static = pts[valid & ~dyn]
    if len(static):
        sub = static[rng.choice(len(static), size=min(len(static), 20000), replace=False)]
        sub = sub[np.linalg.norm(sub - centres.mean(0), axis=-1) < 25.0]
        ax.scatter(sub[:, 0], sub[:, 2], s=0.4, color="0.45", alpha=0.35, linewidths=0, label="static scene points")
    moving = pts[valid & dyn]
    ids = sample.instance_ids.numpy()[valid & dyn]
    if len(moving):
        pick = rng.choice(len(moving), size=min(len(moving), 6000), replace=False)
        ax.scatter(
            moving[pick, 0],
            moving[pick, 2],
            s=1.0,
            c=ids[pick],
            cmap="tab10",
            vmin=0,
            vmax=9,
            linewidths=0,
            label="moving objects (all frames)",
        )
    ax.plot(centres[:, 0], centres[:, 2], "-", color="tab:blue", lw=1.5, label="camera path")
    K = sample.intrinsics[0].double().numpy()
    W = sample.image_size[1]
    half = math.atan((W / 2) / K[0, 0])
    span = np.concatenate([centres[:, [0, 2]], static[:, [0, 2]] if len(static) else centres[:, [0, 2]]])
    extent = 0.06 * float(np.percentile(span, 95, axis=0).max() - np.percentile(span, 5, axis=0).min() + 1.0)
    every = max(1, len(c2w) // 12)
    for t in range(0, len(c2w), every):
        R, c = c2w[t, :3, :3], centres[t]
        for sx in (-1, 1):
            ray = R @ np.array([sx * math.tan(half), 0.0, 1.0])
            ray = ray / np.linalg.norm(ray[[0, 2]])
            ax.plot(
                [c[0], c[0] + extent * ray[0]],
                [c[2], c[2] + extent * ray[2]],
                color="tab:orange",
                lw=0.8,
                label="view frustum (every few frames)" if t == 0 and sx < 0 else None,
            )
        fwd = R[:, 2] / max(np.linalg.norm(R[[0, 2], 2]), 1e-9)
        ax.plot(
            [c[0], c[0] + 1.3 * extent * fwd[0]],
            [c[2], c[2] + 1.3 * extent * fwd[2]],
            color="tab:red",
            lw=1.0,
            label="viewing direction" if t == 0 else None,
        )
    ax.scatter(centres[:1, 0], centres[:1, 2], color="k", s=20, zorder=5, label="frame 0")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m, right of the first camera)")
    ax.set_ylabel("z (m, forward of the first camera)")
    m = sample.meta
    ax.set_title(f"{m.get('environment')} / {m.get('camera_path')} camera, {m.get('num_objects')} moving object(s)")
    legend = ax.legend(loc="upper right", fontsize=7)
    for handle in legend.legend_handles:
        if hasattr(handle, "set_sizes"):
            handle.set_sizes([16.0])
            handle.set_alpha(1.0)
    fig.tight_layout()
    fig.savefig(path)


def _overview(frames, depth_rgb, masks, path: Path) -> None:
    import numpy as np
    from PIL import Image

    T = len(frames)
    picks = sorted({0, T // 3, (2 * T) // 3, T - 1})
    rows = []
    for t in picks:
        mask_rgb = np.repeat(masks[t][..., None], 3, axis=-1)
        tinted = frames[t].copy()
        tinted[masks[t] > 0] = (0.5 * tinted[masks[t] > 0] + 0.5 * np.array([255, 40, 40])).astype(np.uint8)
        rows.append(np.concatenate([frames[t], depth_rgb[t], tinted, mask_rgb], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def run(args: argparse.Namespace) -> int:
    H, W = parse_size(args.size)
    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2, got {args.frames}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")

    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from PIL import Image

    from mem4d.data.synthetic import make_scene

    start = time.perf_counter()
    sample = make_scene(args.seed, args.frames, (H, W), dynamic=True, num_objects=3)
    gen_time = time.perf_counter() - start
    for sub in ("frames", "depth", "dynamic_mask"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    frames = (sample.images.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    depth = sample.depth.numpy()
    valid = sample.valid.numpy()
    lo, hi = np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    masks = sample.dynamic_mask.numpy().astype(np.uint8) * 255
    depth_rgb = []
    for t in range(sample.num_frames):
        name = f"{t:06d}"
        Image.fromarray(frames[t]).save(out / "frames" / f"{name}.png")
        np.save(out / "depth" / f"{name}.npy", depth[t].astype(np.float32))
        depth_rgb.append(_colourise_depth(depth[t], valid[t], float(lo), float(hi)))
        Image.fromarray(depth_rgb[-1]).save(out / "depth" / f"{name}.png")
        Image.fromarray(masks[t]).save(out / "dynamic_mask" / f"{name}.png")
    _camera_plot(sample, out / "camera_path.png")
    _overview(frames, depth_rgb, masks, out / "overview.png")
    info = {k: v for k, v in sample.meta.items()}
    info["depth_colour_range_m"] = [float(lo), float(hi)]
    (out / "scene.json").write_text(json.dumps(info, indent=1, default=str))
    T = sample.num_frames
    m = sample.meta
    print(
        f"mem4d demo: synthetic {m['environment']} scene (seed {args.seed}), {m['camera_path']} camera, "
        f"{m['num_objects']} moving object(s) ({', '.join(m['object_kinds'])}); {T} frames at {H}x{W} "
        f"rendered in {gen_time:.2f} s"
    )
    print(f"wrote to {out}/:")
    print(f"  frames/000000.png .. {T - 1:06d}.png        input frames")
    print(f"  depth/000000.png|.npy .. {T - 1:06d}         z-depth (coloured {lo:.1f}-{hi:.1f} m, near = red; metres)")
    print(f"  dynamic_mask/000000.png .. {T - 1:06d}.png  moving pixels")
    print("  camera_path.png                   top view: camera path, view directions, scene points")
    print("  overview.png                      frame | depth | moving objects | mask, at 4 times")
    print("  scene.json                        the scene's description (seed, knobs, objects)")
    return 0
