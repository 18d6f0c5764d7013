"""T7: latency of the scene memory's reference (NumPy) backend.

Writes a 1,000-frame stream (ten 360-degree loops of a textured box room with a small
circular translation, exact depth) and queries the memory at random poses in the room:

- ``write``: one `SceneMemory.write` (validation, fusion, carving, subjects, keyframes);
- ``query``: one `SceneMemory.query` with everything (static render + retrieval over the
  1,000-frame bank + keyframes + working window + subjects), k = 8.

Targets (SCENE_MEMORY.md T7, 128x96): write <= 50 ms, query <= 150 ms. 256x256 is reported
for information. Timings are wall-clock medians/means on the current machine (no warm-up
beyond the stream itself); pass ``--json`` to save them.

    python bench/bench_scene_memory.py                       # 128x96 and 256x256
    python bench/bench_scene_memory.py --sizes 96x128 --frames 300
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mem4d.scene import Observation, Query, SceneMemory, SceneMemoryConfig
from mem4d.scene.camera_utils import backproject_depth  # noqa: F401  (keeps the import cost out of timings)

LOOP = 100


def _yaw_pose(yaw_deg: float, centre) -> np.ndarray:
    a = np.deg2rad(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = centre
    return T


def _room_frame(c2w: np.ndarray, K: np.ndarray, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact RGB-D of a 6 x 3 x 6 box room with a sinusoid-plus-checker texture per face."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3) @ c2w[:3, :3].T
    o = c2w[:3, 3]
    half = np.array([3.0, 1.5, 3.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        lam_ax = np.where(np.abs(d) < 1e-12, np.inf, (np.sign(d) * half - o) / d)
    axis = np.argmin(lam_ax, axis=1)
    n = len(d)
    lam = lam_ax[np.arange(n), axis]
    p = o + lam[:, None] * d
    face = 2 * axis + (d[np.arange(n), axis] > 0)
    other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    a, b = p[np.arange(n), other[:, 0]], p[np.arange(n), other[:, 1]]
    base = np.array([[0.75, 0.45, 0.3], [0.3, 0.55, 0.7], [0.8, 0.8, 0.7], [0.45, 0.4, 0.3], [0.4, 0.65, 0.35],
                     [0.7, 0.7, 0.35]])[face]
    chk = ((np.floor(a / 0.5) + np.floor(b / 0.5)) % 2)[:, None]
    wave = (0.8 + 0.2 * np.sin(2 * np.pi * a / 0.9 + face) * np.sin(2 * np.pi * b / 0.8))[:, None]
    rgb = np.clip(base * (1 - 0.25 * chk) * wave, 0, 1)
    return rgb.reshape(H, W, 3).astype(np.float32), lam.reshape(H, W).astype(np.float32)


def _pose(i: int) -> np.ndarray:
    a = 360.0 * (i % LOOP) / LOOP
    r = np.deg2rad(a)
    return _yaw_pose(a, (0.3 * np.sin(r), 0.0, 0.3 * np.cos(r) - 0.3))


def bench(H: int, W: int, frames: int, queries: int, config: SceneMemoryConfig) -> dict:
    f = 100.0 * W / 128.0
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    cache = {}
    mem = SceneMemory(config)
    write_ms = []
    for t in range(frames):
        key = t % LOOP
        if key not in cache:
            cache[key] = _room_frame(_pose(t), K, H, W)
        rgb, depth = cache[key]
        obs = Observation(t=t, rgb=rgb, K=K, c2w=_pose(t), depth=depth)
        t0 = time.perf_counter()
        mem.write(obs)
        write_ms.append(1e3 * (time.perf_counter() - t0))
    rng = np.random.default_rng(0)
    query_ms, render_ms, retrieve_ms = [], [], []
    for _ in range(queries):
        c2w = _yaw_pose(rng.uniform(0, 360), (rng.uniform(-0.5, 0.5), 0.0, rng.uniform(-0.5, 0.5)))
        t0 = time.perf_counter()
        cond = mem.query(Query(c2w=c2w, K=K, size=(H, W), t_query=frames, k_frames=8))
        query_ms.append(1e3 * (time.perf_counter() - t0))
        render_ms.append(cond.meta["timings_ms"]["render"])
        retrieve_ms.append(cond.meta["timings_ms"]["retrieve"])
    st = mem.stats()
    w = np.asarray(write_ms)
    return {
        "size": f"{W}x{H}", "frames": frames, "voxels": st.n_voxels, "keyframes": st.n_keyframes,
        "voxel_size": st.voxel_size, "scene_scale": st.scene_scale, "memory_MB": st.bytes / 2 ** 20,
        "write_ms_mean": float(w.mean()), "write_ms_median": float(np.median(w)), "write_ms_p95": float(np.percentile(w, 95)),
        "write_ms_first100": float(w[:100].mean()), "write_ms_last100": float(w[-100:].mean()),
        "query_ms_mean": float(np.mean(query_ms)), "query_ms_median": float(np.median(query_ms)),
        "query_ms_p95": float(np.percentile(query_ms, 95)), "render_ms_mean": float(np.mean(render_ms)),
        "retrieve_ms_mean": float(np.mean(retrieve_ms)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="96x128,256x256", help="comma-separated HxW list")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--voxel-size", type=float, default=None, help="absolute voxel edge (default 0.005 x s)")
    ap.add_argument("--json", default=None, help="write the results to this file")
    args = ap.parse_args()
    cfg = SceneMemoryConfig(voxel_size=args.voxel_size)
    results = []
    for spec in args.sizes.split(","):
        H, W = (int(x) for x in spec.lower().split("x"))
        r = bench(H, W, args.frames, args.queries, cfg)
        results.append(r)
        print(f"{r['size']:>8}  frames {r['frames']}  voxels {r['voxels']:>8}  kf {r['keyframes']:>3}  "
              f"mem {r['memory_MB']:.0f} MB | write ms mean {r['write_ms_mean']:.1f} median {r['write_ms_median']:.1f} "
              f"p95 {r['write_ms_p95']:.1f} (first100 {r['write_ms_first100']:.1f}, last100 {r['write_ms_last100']:.1f}) "
              f"| query ms mean {r['query_ms_mean']:.1f} median {r['query_ms_median']:.1f} p95 {r['query_ms_p95']:.1f} "
              f"(render {r['render_ms_mean']:.1f}, retrieve {r['retrieve_ms_mean']:.1f})", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
