"""`mem4d view DIR`: an interactive 3D viewer of a reconstruction folder in the browser.

    mem4d view out/seq                       # http://127.0.0.1:8080, Ctrl-C to stop
    mem4d view out/seq --port 0 --host 0.0.0.0 --max-points 300000

Library: :class:`mem4d.viz.viewer.ReconstructionViewer`. Needs the `viewer` extra (viser).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "view",
        help="interactive 3D viewer of a reconstruction folder (browser)",
        description="Serves a reconstruction folder written by `mem4d reconstruct` as an interactive 3D page: "
        "a timeline with play/pause, the current frame's points, the fused static map, camera frustums and the "
        "trajectory, confidence / point-size sliders and static/moving toggles. Open the printed URL in a "
        'browser; Ctrl-C stops the server. Needs the viewer extra: pip install "mem4d[viewer]".',
    )
    parser.add_argument("dir", type=Path, help="reconstruction folder (meta.json, trajectory.txt, pts_world/, ...)")
    parser.add_argument("--port", type=int, default=8080,
                        help="port to listen on (default 8080; 0 = any free port; a busy port moves to the next)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for other machines)")
    parser.add_argument("--max-points", type=int, default=150_000,
                        help="most points drawn per cloud (current frame, static map; default 150000)")
    parser.add_argument("--cache-frames", type=int, default=16,
                        help="frames kept in memory (default 16; frames load lazily)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from mem4d.cli.main import UserError

    if args.max_points < 1:
        raise UserError(f"--max-points must be >= 1, got {args.max_points}")
    if args.cache_frames < 1:
        raise UserError(f"--cache-frames must be >= 1, got {args.cache_frames}")
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")

    from mem4d.viz.viewer_data import ReconstructionFolder

    folder = ReconstructionFolder(args.dir, cache_frames=args.cache_frames)  # clear errors for a wrong DIR
    try:
        from mem4d.viz.viewer import ReconstructionViewer, require_viser

        require_viser()
    except ImportError as err:
        raise UserError(str(err)) from None

    viewer = ReconstructionViewer(folder, host=args.host, port=args.port, max_points=args.max_points)
    try:
        moved = f" (port {args.port} was busy)" if args.port not in (0, viewer.port) else ""
        n = folder.num_frames
        print(f"mem4d view: {folder.root} ({n} frame{'' if n == 1 else 's'}) at {viewer.url}{moved}", flush=True)
        print("mem4d view: open the URL in a browser; Ctrl-C to stop", flush=True)
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("mem4d view: stopped", file=sys.stderr, flush=True)
    finally:
        viewer.close()
    return 0
