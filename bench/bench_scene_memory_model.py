"""Scene memory fed by a Mem4D model's predictions vs. fed by ground truth, on synthetic loop scenes.

For each scene (``mem4d.data.synthetic.make_scene(seed, T, camera_path="loop", dynamic=True)``,
whose last ~8% of frames re-trace the first views) two `SceneMemory` instances are written with
frames ``0 .. r0-1`` (``r0`` = first revisit frame):

- **gt**: GT depth (0 where invalid), GT cam2world, GT intrinsics and the GT dynamic mask;
- **model**: the model's streamed predictions through ``observation_from_frame_output``
  (predicted world points / depth / intrinsics / cam2world, ``dynamic_prob > 0.5``).

Neither memory gets instance ids: detection, association and re-identification are the
memory's own. The model streams all T frames first (it is causal: the prediction for frame t
only uses frames <= t), so the predicted poses of the revisit frames exist.

Then, at every revisit frame r (no writes in between), each memory is queried
(``Query(k_frames=4)``, everything else default):

- the **gt** memory at the GT pose / intrinsics of r; the **model** memory at the model's own
  predicted pose / intrinsics of r (its world is its frame 0, so its own poses are the
  consistent ones);
- *revisit PSNR*: masked PSNR of the static render against the GT image of r over pixels that
  are drawn, GT-valid and not GT-dynamic (the definition of tests/scene/test_generator_scene.py);
  *coverage*: share of drawn pixels;
- *retrieval top-1*: the first retrieved frame lies within +-1 of the mirror of r (the frame
  of the first lap at the same loop angle, ``r - (T-1)/1.08`` by the loop path's definition);
  the T3 definition of tests/scene/test_retrieval.py.

When the model closes a loop (``heads.loop_closure``: `FrameOutput.loop_keyframe`), the
model-fed memory is handed the correction (`SceneMemory.close_loop`) in time order, as `mem4d
reconstruct` does: before the frame that closed it is written, or before the query at the first
revisit at or after it (``--loop-corrections off`` ignores them).

**No alignment is applied to what the memory receives**: the model's predictions are used as
they come, in the model's metric world (= its frame 0, which matches GT's frame-0 world up to
the model's error). Renders are compared pixel-wise with GT images, which needs no alignment;
the memory's thresholds are relative to its scene scale. As diagnostics only, the script
reports the camera-centre error without alignment (ATE raw, metres) and after a Sim(3)
Umeyama alignment of the predicted to the GT camera centres (ATE sim3, with the fitted scale),
and the predicted depth's AbsRel without and with per-frame median scaling.

Subjects: number of subject records, event counts (new / reidentified / lost ...), and, with
each detection assigned to a GT instance by the majority of GT instance ids inside its bbox
(>= 20% of the bbox; otherwise it is a *spurious* detection): *re-entries* (a GT instance
detected again after >= 3 frames undetected), *re-ID accuracy* (re-entry assigned the subject
id it had before), *swaps* (assigned an id that belonged to another GT instance), id switches
over consecutive detections and ids per GT instance (T5's definitions, adapted).

Latency: mean / median wall-clock ms of ``SceneMemory.write`` and ``SceneMemory.query``
(and of ``Mem4D.step`` for reference) on this machine.

    .venv/bin/python bench/bench_scene_memory_model.py --ckpt /work/runs/ship-tiny/checkpoints \\
        --scenes 4 --frames 40 --size 96x128 --json scene_memory_model.json

``--depth-at-gt-poses`` adds a third memory, **depth at GT poses**: the model's depth (times one
median scale per scene, so that it meets the GT poses' metric) and its dynamic mask, written at
the GT poses and intrinsics and queried at the GT pose. Between the GT-fed and the model-fed
memory it splits the gap into what the depth costs and what the poses cost.

``--ckpt`` is a ``save_pretrained`` folder, or a folder with a ``latest`` file naming one.
No pass/fail threshold: this is a measurement.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from mem4d.data.synthetic.camera_paths import LOOP_OVERLAP
K_FRAMES = 4
REENTRY_GAP = 3  # frames undetected before a detection counts as a re-entry
BBOX_MATCH = 0.2  # share of a detection's bbox that must carry its GT instance id


# ------------------------------------------------------------------------------ helpers
def resolve_ckpt(path: str | Path) -> Path:
    """A save_pretrained folder, a checkpoints folder whose ``latest`` file names one, or ``default``
    (the shipped model, whatever the working folder holds, as in `Mem4D.from_pretrained`)."""
    p = Path(path)
    if str(path) == "default":
        from mem4d.model.pretrained import DEFAULT_DIR

        return DEFAULT_DIR
    latest = p / "latest"
    if latest.is_file():
        name = latest.read_text().strip()
        q = Path(name) if Path(name).is_absolute() else p / name
        if (q / "config.json").is_file():
            return q
        raise FileNotFoundError(f"{latest} names {name!r}, which has no config.json")
    if (p / "config.json").is_file():
        return p
    raise FileNotFoundError(f"{p} is neither a save_pretrained folder nor has a 'latest' file")


def parse_size(text: str) -> tuple[int, int]:
    h, w = (int(x) for x in text.lower().split("x"))
    return h, w


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if not mask.any():
        return float("nan")
    mse = float(np.mean((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def revisit_frames(T: int) -> list[tuple[int, int]]:
    """(revisit frame r, mirror m) pairs: theta(t) = theta0 + 2 pi 1.08 t / (T-1) on the loop."""
    period = (T - 1) / LOOP_OVERLAP  # frames per full lap
    r0 = math.floor(period)
    return [(r, max(0, round(r - period))) for r in range(r0, T)]


def rot_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    c = (np.trace(Ra.T @ Rb) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def umeyama_sim3(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """dst ~= s R src + t (least squares, proper rotation): `mem4d.geometry.align.umeyama` in numpy."""
    import torch

    from mem4d.geometry.align import umeyama

    scale, R, t = umeyama(torch.from_numpy(src), torch.from_numpy(dst))
    return float(scale), R.numpy(), t.numpy()


def gt_instance(inst: np.ndarray, bbox: tuple[int, int, int, int]) -> int | None:
    u0, v0, u1, v1 = bbox
    crop = inst[v0:v1, u0:u1]
    if crop.size == 0:
        return None
    ids, counts = np.unique(crop[crop > 0], return_counts=True)
    if ids.size == 0 or counts.max() < BBOX_MATCH * crop.size:
        return None
    return int(ids[np.argmax(counts)])


def reid_stats(tracks: dict[int, list[tuple[int, int]]]) -> dict[str, Any]:
    """T5-style identity figures from per-GT-instance (t, subject id) detection lists."""
    reentries = correct = swaps = switches = 0
    ids_per_obj = []
    owner: dict[int, int] = {}  # subject id -> GT instance that first held it
    events = sorted((t, g, sid) for g, tr in tracks.items() for t, sid in tr)
    for t, g, sid in events:
        owner.setdefault(sid, g)
    for g, tr in tracks.items():
        tr = sorted(tr)
        ids_per_obj.append(len({sid for _, sid in tr}))
        for (t_prev, sid_prev), (t, sid) in itertools.pairwise(tr):
            switches += sid != sid_prev
            if t - t_prev - 1 >= REENTRY_GAP:
                reentries += 1
                if sid == sid_prev:
                    correct += 1
                elif owner.get(sid, g) != g:
                    swaps += 1
    return {"gt_objects_detected": len(tracks), "reentries": reentries, "reid_correct": correct,
            "reid_accuracy": correct / reentries if reentries else float("nan"), "reid_swaps": swaps,
            "id_switches": switches, "ids_per_object_mean": float(np.mean(ids_per_obj)) if ids_per_obj else float("nan")}


# ------------------------------------------------------------------------------ one scene
def load_scene(seed: int, T: int, size: tuple[int, int], environment: str | None) -> dict[str, Any]:
    from mem4d.data.synthetic import make_scene

    knobs: dict[str, Any] = {"camera_path": "loop"}
    if environment:
        knobs["environment"] = environment
    s = make_scene(seed, T, image_size=size, dynamic=True, **knobs)
    valid = s.valid.numpy()
    return {
        "seed": seed, "images": s.images, "rgb": s.images.permute(0, 2, 3, 1).numpy().astype(np.float32),
        "depth": np.where(valid, s.depth.numpy(), 0.0), "valid": valid, "K": s.intrinsics.double().numpy(),
        "c2w": s.cam2world.double().numpy(), "dyn": s.dynamic_mask.numpy().astype(bool),
        "inst": s.instance_ids.numpy().astype(np.int64), "environment": s.meta.get("environment"),
    }


def run_model(model: Any, images: Any) -> tuple[list[Any], list[float]]:
    import torch

    T, _, H, W = images.shape
    state = model.init_state(1, (H, W))
    outs, ms = [], []
    with torch.inference_mode():
        for t in range(T):
            t0 = time.perf_counter()
            out, state = model.step(images[t][None], state)
            ms.append(1e3 * (time.perf_counter() - t0))
            outs.append(out)
    return outs, ms


def eval_memory(obs: list[Any], scene: dict[str, Any], query_poses: dict[int, tuple[np.ndarray, np.ndarray]],
                pairs: list[tuple[int, int]], size: tuple[int, int],
                closures: dict[int, tuple[int, np.ndarray]] | None = None) -> dict[str, Any]:
    """Writes ``obs`` (frames 0..r0-1) into a fresh memory, then queries every revisit frame.

    ``closures``: frame t -> (the frame its loop closed onto, the correction), handed to
    `SceneMemory.close_loop` in time order: before frame t is written, or before the query at
    revisit t (every closure at a frame up to that revisit).
    """
    from mem4d.scene import Query, SceneMemory

    mem = SceneMemory()
    closures = closures or {}
    write_ms, query_ms = [], []
    tracks: dict[int, list[tuple[int, int]]] = {}
    events: dict[str, int] = {}
    n_det = spurious = 0
    for t, ob in enumerate(obs):
        if t in closures:
            mem.close_loop(closures[t][0], t, closures[t][1])
        t0 = time.perf_counter()
        rep = mem.write(ob)
        write_ms.append(1e3 * (time.perf_counter() - t0))
        for e in rep.events:
            events[e.kind] = events.get(e.kind, 0) + 1
        best: dict[int, tuple[int, int]] = {}
        for det in rep.detections:
            n_det += 1
            g = gt_instance(scene["inst"][t], det.bbox)
            if g is None:
                spurious += 1
            elif g not in best or det.n_pixels > best[g][0]:
                best[g] = (det.n_pixels, det.subject_id)
        for g, (_, sid) in best.items():
            tracks.setdefault(g, []).append((t, sid))
    psnrs, covs, hits, per_revisit = [], [], 0, []
    pending = sorted(tc for tc in closures if tc >= len(obs))  # closures after the last write
    for r, m in pairs:
        while pending and pending[0] <= r:
            tc = pending.pop(0)
            mem.close_loop(closures[tc][0], tc, closures[tc][1])
        c2w, K = query_poses[r]
        t0 = time.perf_counter()
        cond = mem.query(Query(c2w=c2w, K=K, size=size, t_query=r, k_frames=K_FRAMES))
        query_ms.append(1e3 * (time.perf_counter() - t0))
        st = cond.static
        mask = st.mask[0] & scene["valid"][r] & ~scene["dyn"][r]
        p = masked_psnr(st.rgb[0], scene["rgb"][r], mask)
        top1 = cond.frames[0].t if cond.frames else None
        hit = top1 is not None and abs(top1 - m) <= 1
        hits += hit
        psnrs.append(p)
        covs.append(float(st.coverage))
        per_revisit.append({"t": r, "mirror": m, "psnr": p, "coverage": float(st.coverage), "top1": top1,
                            "hit": bool(hit), "retrieval_mode": cond.meta["retrieval_mode"]})
    stats = mem.stats()
    finite = [p for p in psnrs if math.isfinite(p)]
    seen = scene["inst"][: len(obs)]
    gt_objects = len(np.unique(seen[seen > 0]))
    return {
        "revisit_psnr_mean": float(np.mean(finite)) if finite else float("nan"),
        "revisit_psnr_min": float(np.min(finite)) if finite else float("nan"),
        "revisit_coverage_mean": float(np.mean(covs)), "revisit_coverage_min": float(np.min(covs)),
        "retrieval_top1": hits / len(pairs), "retrieval_hits": hits, "revisit_queries": len(pairs),
        "n_subjects": stats.n_subjects, "gt_objects": gt_objects, "subject_events": events,
        "reidentified_events": events.get("reidentified", 0), "detections": n_det, "spurious_detections": spurious,
        **reid_stats(tracks),
        "n_voxels": stats.n_voxels, "n_keyframes": stats.n_keyframes, "scene_scale": stats.scene_scale,
        "write_ms_mean": float(np.mean(write_ms)), "write_ms_median": float(np.median(write_ms)),
        "query_ms_mean": float(np.mean(query_ms)), "query_ms_median": float(np.median(query_ms)),
        "write_ms_all": write_ms, "query_ms_all": query_ms,
        "per_revisit": per_revisit,
    }


def pose_depth_diagnostics(outs: list[Any], scene: dict[str, Any]) -> dict[str, Any]:
    pc = np.stack([o.cam2world[0].double().numpy()[:3, 3] for o in outs])
    gc = scene["c2w"][:, :3, 3]
    raw = float(np.sqrt(np.mean(np.sum((pc - gc) ** 2, 1))))
    s, R, t = umeyama_sim3(pc, gc)
    al = (s * (R @ pc.T)).T + t
    ate = float(np.sqrt(np.mean(np.sum((al - gc) ** 2, 1))))
    rot = [rot_angle_deg(o.cam2world[0].double().numpy()[:3, :3], g[:3, :3]) for o, g in zip(outs, scene["c2w"])]
    absrel, absrel_med, behind = [], [], []
    for o, gd, v in zip(outs, scene["depth"], scene["valid"]):
        d = o.depth[0].double().numpy()
        m = v & (gd > 0)
        behind.append(float((d <= 0).mean()))
        if not m.any():
            continue
        absrel.append(float(np.mean(np.abs(d[m] - gd[m]) / gd[m])))
        pos = m & (d > 0)
        if pos.any():
            ds = d * np.median(gd[pos]) / np.median(d[pos])
            absrel_med.append(float(np.mean(np.abs(ds[m] - gd[m]) / gd[m])))
    fx_err = [abs(o.intrinsics[0].double().numpy()[0, 0] / K[0, 0] - 1) for o, K in zip(outs, scene["K"])]
    return {"ate_raw_m": raw, "ate_sim3_m": ate, "sim3_scale": s, "rot_err_deg_mean": float(np.mean(rot)),
            "depth_absrel": float(np.mean(absrel)) if absrel else float("nan"),
            "depth_absrel_median_scaled": float(np.mean(absrel_med)) if absrel_med else float("nan"),
            "depth_nonpositive_share": float(np.mean(behind)), "focal_rel_err_mean": float(np.mean(fx_err))}


def depth_at_gt_poses(outs: list[Any], scene: dict[str, Any], r0: int) -> list[Any]:
    """Observations of frames 0..r0-1 with the model's depth (one median scale to GT over those
    frames) and dynamic mask at the GT poses and intrinsics."""
    from mem4d.scene import Observation

    depth = [o.depth[0].double().numpy() for o in outs[:r0]]
    keep = [scene["valid"][t] & (scene["depth"][t] > 0) & (depth[t] > 0) for t in range(r0)]
    scale = float(np.median(np.concatenate([scene["depth"][t][keep[t]] for t in range(r0)]))
                  / np.median(np.concatenate([depth[t][keep[t]] for t in range(r0)])))
    dyn = [None if o.dynamic_prob is None else o.dynamic_prob[0].numpy() > 0.5 for o in outs[:r0]]
    return [Observation(t=t, rgb=scene["rgb"][t], K=scene["K"][t], c2w=scene["c2w"][t],
                        depth=np.where(depth[t] > 0, depth[t] * scale, 0.0), dynamic_mask=dyn[t]) for t in range(r0)]


def bench_scene(model: Any, seed: int, T: int, size: tuple[int, int], environment: str | None,
                conf_threshold: float | None, with_depth_at_gt_poses: bool = False,
                loop_corrections: bool = True) -> dict[str, Any]:
    from mem4d.scene import Observation, observation_from_frame_output

    sc = load_scene(seed, T, size, environment)
    pairs = revisit_frames(T)
    r0 = pairs[0][0]
    outs, step_ms = run_model(model, sc["images"])
    gt_obs = [Observation(t=t, rgb=sc["rgb"][t], K=sc["K"][t], c2w=sc["c2w"][t], depth=sc["depth"][t],
                          dynamic_mask=sc["dyn"][t]) for t in range(r0)]
    md_obs = [observation_from_frame_output(outs[t], t, sc["rgb"][t], conf_threshold=conf_threshold)
              for t in range(r0)]
    closures = {t: (int(o.loop_keyframe[0]), o.loop_correction[0].double().numpy()) for t, o in enumerate(outs)
                if loop_corrections and o.loop_keyframe is not None and int(o.loop_keyframe[0]) >= 0}
    gt_poses = {r: (sc["c2w"][r], sc["K"][r]) for r, _ in pairs}
    md_poses = {r: (outs[r].cam2world[0].double().numpy(), outs[r].intrinsics[0].double().numpy()) for r, _ in pairs}
    pair_gap = [{"t": r, "mirror": m, "gt_dist_m": float(np.linalg.norm(sc["c2w"][r][:3, 3] - sc["c2w"][m][:3, 3])),
                 "gt_angle_deg": rot_angle_deg(sc["c2w"][r][:3, :3], sc["c2w"][m][:3, :3])} for r, m in pairs]
    dyn_pred = [(o.dynamic_prob[0].numpy() > 0.5) if o.dynamic_prob is not None else None for o in outs[:r0]]
    dyn_iou = [float((p & g).sum() / max((p | g).sum(), 1)) for p, g in zip(dyn_pred, sc["dyn"]) if p is not None]
    extra = {"depth_at_gt_poses": eval_memory(depth_at_gt_poses(outs, sc, r0), sc, gt_poses, pairs, size)} \
        if with_depth_at_gt_poses else {}
    return {
        **extra,
        "seed": seed, "environment": sc["environment"], "frames": T, "written": r0, "revisits": pair_gap,
        "gt": eval_memory(gt_obs, sc, gt_poses, pairs, size),
        "model": eval_memory(md_obs, sc, md_poses, pairs, size, closures),
        "loop_closures": [{"t": t, "onto": k} for t, (k, _) in sorted(closures.items())],
        "model_diag": {**pose_depth_diagnostics(outs, sc),
                       "dynamic_iou_mean": float(np.mean(dyn_iou)) if dyn_iou else float("nan"),
                       "step_ms_mean": float(np.mean(step_ms[1:] or step_ms)),
                       "step_ms_median": float(np.median(step_ms[1:] or step_ms))},
    }


# ------------------------------------------------------------------------------ report
def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def summarize(scenes: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in ("gt", "model", "depth_at_gt_poses"):
        if side not in scenes[0]:
            continue
        rs = [s[side] for s in scenes]
        reent = sum(r["reentries"] for r in rs)
        psnr_all = [p["psnr"] for r in rs for p in r["per_revisit"]]
        out[side] = {
            "revisit_psnr_mean": _mean(psnr_all),
            "revisit_psnr_min": float(min((p for p in psnr_all if math.isfinite(p)), default=float("nan"))),
            "revisit_coverage_mean": _mean([p["coverage"] for r in rs for p in r["per_revisit"]]),
            "revisit_coverage_min": float(min(p["coverage"] for r in rs for p in r["per_revisit"])),
            "retrieval_top1": sum(r["retrieval_hits"] for r in rs) / sum(r["revisit_queries"] for r in rs),
            "retrieval_hits": sum(r["retrieval_hits"] for r in rs),
            "revisit_queries": sum(r["revisit_queries"] for r in rs),
            "n_subjects": sum(r["n_subjects"] for r in rs), "gt_objects": sum(r["gt_objects"] for r in rs),
            "reidentified_events": sum(r["reidentified_events"] for r in rs),
            "detections": sum(r["detections"] for r in rs),
            "spurious_detections": sum(r["spurious_detections"] for r in rs),
            "reentries": reent, "reid_correct": sum(r["reid_correct"] for r in rs),
            "reid_accuracy": sum(r["reid_correct"] for r in rs) / reent if reent else float("nan"),
            "reid_swaps": sum(r["reid_swaps"] for r in rs), "id_switches": sum(r["id_switches"] for r in rs),
            "write_ms_mean": _mean([x for r in rs for x in r["write_ms_all"]]),
            "write_ms_median": float(np.median([x for r in rs for x in r["write_ms_all"]])),
            "query_ms_mean": _mean([x for r in rs for x in r["query_ms_all"]]),
            "query_ms_median": float(np.median([x for r in rs for x in r["query_ms_all"]])),
        }
    keys = scenes[0]["model_diag"].keys()
    out["model_diag"] = {k: _mean([s["model_diag"][k] for s in scenes]) for k in keys}
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if math.isfinite(x) else "n/a"


def _f(x: Any, fmt: str = ".2f") -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return "n/a"
    return format(x, fmt)


def markdown(summary: dict[str, Any], scenes: list[dict[str, Any]]) -> str:
    g, m, d = summary["gt"], summary["model"], summary["model_diag"]

    def row(name: str, a: str, b: str) -> str:
        return f"| {name} | {a} | {b} |"

    lines = ["| metric | GT-fed memory | model-fed memory |", "|---|---|---|",
             row("revisit masked PSNR, mean / min (dB)", f"{_f(g['revisit_psnr_mean'])} / {_f(g['revisit_psnr_min'])}",
                 f"{_f(m['revisit_psnr_mean'])} / {_f(m['revisit_psnr_min'])}"),
             row("revisit coverage, mean / min", f"{_f(g['revisit_coverage_mean'], '.3f')} / {_f(g['revisit_coverage_min'], '.3f')}",
                 f"{_f(m['revisit_coverage_mean'], '.3f')} / {_f(m['revisit_coverage_min'], '.3f')}"),
             row("retrieval top-1 within +-1 of mirror", f"{g['retrieval_hits']}/{g['revisit_queries']} = {_pct(g['retrieval_top1'])}",
                 f"{m['retrieval_hits']}/{m['revisit_queries']} = {_pct(m['retrieval_top1'])}"),
             row("subject records (GT moving objects seen)", f"{g['n_subjects']} ({g['gt_objects']})",
                 f"{m['n_subjects']} ({m['gt_objects']})"),
             row("detections (spurious: no GT object in bbox)", f"{g['detections']} ({g['spurious_detections']})",
                 f"{m['detections']} ({m['spurious_detections']})"),
             row("'reidentified' events", str(g["reidentified_events"]), str(m["reidentified_events"])),
             row(f"re-entries after >= {REENTRY_GAP} frames unseen: re-ID correct / swaps",
                 f"{g['reid_correct']}/{g['reentries']} ({_pct(g['reid_accuracy'])}) / {g['reid_swaps']}",
                 f"{m['reid_correct']}/{m['reentries']} ({_pct(m['reid_accuracy'])}) / {m['reid_swaps']}"),
             row("id switches (consecutive detections of one GT object)", str(g["id_switches"]), str(m["id_switches"])),
             row("write ms, mean / median", f"{_f(g['write_ms_mean'], '.1f')} / {_f(g['write_ms_median'], '.1f')}",
                 f"{_f(m['write_ms_mean'], '.1f')} / {_f(m['write_ms_median'], '.1f')}"),
             row("query ms (k=4), mean / median", f"{_f(g['query_ms_mean'], '.1f')} / {_f(g['query_ms_median'], '.1f')}",
                 f"{_f(m['query_ms_mean'], '.1f')} / {_f(m['query_ms_median'], '.1f')}")]
    if "depth_at_gt_poses" in summary:
        x = summary["depth_at_gt_poses"]
        lines += ["", f"The model's depth written and queried at GT poses: revisit PSNR mean / min "
                      f"{_f(x['revisit_psnr_mean'])} / {_f(x['revisit_psnr_min'])} dB, coverage "
                      f"{_f(x['revisit_coverage_mean'], '.3f')}, retrieval {x['retrieval_hits']}/{x['revisit_queries']}."]
    lines += ["", "Model diagnostics (means over scenes; the memory gets the predictions unaligned):", "",
              ("| ATE raw (m) | ATE Sim(3) (m) | Sim(3) scale | rot err (deg) | depth AbsRel raw / median-scaled "
               "| depth <= 0 share | focal rel err | dynamic IoU | model step ms |"),
              "|---|---|---|---|---|---|---|---|---|",
              (f"| {_f(d['ate_raw_m'], '.3f')} | {_f(d['ate_sim3_m'], '.3f')} | {_f(d['sim3_scale'], '.3f')} "
               f"| {_f(d['rot_err_deg_mean'], '.1f')} | {_f(d['depth_absrel'], '.3f')} / {_f(d['depth_absrel_median_scaled'], '.3f')} "
               f"| {_f(d['depth_nonpositive_share'], '.3f')} | {_f(d['focal_rel_err_mean'], '.3f')} "
               f"| {_f(d['dynamic_iou_mean'], '.3f')} | {_f(d['step_ms_mean'], '.1f')} |")]
    lines += ["", "Per scene (PSNR mean dB / coverage mean / top-1 hits, GT-fed vs model-fed):", ""]
    for s in scenes:
        a, b = s["gt"], s["model"]
        lines.append(f"- seed {s['seed']} ({s['environment']}, written {s['written']}/{s['frames']}): "
                     f"GT {_f(a['revisit_psnr_mean'])} / {_f(a['revisit_coverage_mean'], '.3f')} / "
                     f"{a['retrieval_hits']}/{a['revisit_queries']}; model {_f(b['revisit_psnr_mean'])} / "
                     f"{_f(b['revisit_coverage_mean'], '.3f')} / {b['retrieval_hits']}/{b['revisit_queries']}; "
                     f"subjects {a['n_subjects']} vs {b['n_subjects']}; ATE sim3 {_f(s['model_diag']['ate_sim3_m'], '.3f')} m")
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def run(ckpt: str | Path, scenes: int = 4, frames: int = 40, size: tuple[int, int] = (96, 128), seed0: int = 0,
        environment: str | None = None, conf_threshold: float | None = None, threads: int | None = 1,
        model: Any = None, with_depth_at_gt_poses: bool = False, loop_corrections: bool = True) -> dict[str, Any]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    path = None
    if model is None:
        from mem4d.model.mem4d import Mem4D

        path = resolve_ckpt(ckpt)
        model = Mem4D.from_pretrained(path).eval()
    if frames < 8:
        raise ValueError("--frames must be >= 8 (the loop's revisit is its last ~8%)")
    results = [bench_scene(model, seed0 + i, frames, size, environment, conf_threshold, with_depth_at_gt_poses,
                           loop_corrections) for i in range(scenes)]
    return {"ckpt": str(path) if path else None, "scenes": scenes, "frames": frames, "size": list(size),
            "seed0": seed0, "environment": environment, "conf_threshold": conf_threshold, "k_frames": K_FRAMES,
            "alignment": "none (memory fed the raw predictions in the model's frame-0 world; "
                         "Sim(3) only in the ATE diagnostic)",
            "loop_corrections": loop_corrections, "torch_threads": torch.get_num_threads(),
            "summary": summarize(results), "per_scene": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, help="save_pretrained folder, or a folder with a 'latest' file")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=parse_size, default=(96, 128), help="HxW (multiples of the patch size)")
    ap.add_argument("--seed0", type=int, default=0, help="scene seeds are seed0 .. seed0+scenes-1")
    ap.add_argument("--environment", choices=("room", "courtyard"), default=None, help="default: random per seed")
    ap.add_argument("--conf-threshold", type=float, default=None, help="drop model pixels with conf_world below it")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave as is)")
    ap.add_argument("--json", default=None, help="write all figures (summary + per scene) to this file")
    ap.add_argument("--depth-at-gt-poses", action="store_true",
                    help="also write the model's depth (one median scale per scene) at the GT poses: what the depth costs")
    ap.add_argument("--loop-corrections", choices=("on", "off"), default="on",
                    help="hand the model's loop closures to SceneMemory.close_loop (on, as mem4d reconstruct does) "
                         "or ignore them (off)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = run(args.ckpt, args.scenes, args.frames, args.size, args.seed0, args.environment, args.conf_threshold,
              args.threads, with_depth_at_gt_poses=args.depth_at_gt_poses,
              loop_corrections=args.loop_corrections == "on")
    res["wall_s"] = time.perf_counter() - t0
    print(f"scene memory, GT-fed vs model-fed: ckpt {res['ckpt']}, {args.scenes} loop scenes x {args.frames} frames "
          f"at {args.size[0]}x{args.size[1]}, alignment: none, torch threads {res['torch_threads']}\n")
    print(markdown(res["summary"], res["per_scene"]))
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(res), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
