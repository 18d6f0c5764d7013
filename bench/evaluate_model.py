"""Every figure issue 12 judges a model by, for one checkpoint, in one command.

    .venv/bin/python bench/evaluate_model.py --ckpt src/mem4d/weights/default --out eval-default
    .venv/bin/python bench/evaluate_model.py --ckpt RUN/checkpoints/step_0002000 --out eval-2000 --quick

Runs the evaluation harness (`mem4d eval predict` + `mem4d eval score`, in process, one thread)
on copies of the checkpoint whose config sets ``heads.pose_refinement`` to ``none`` (the
network's own poses) or ``photometric`` (the test-time refinement), then the model-fed scene
memory bench, and writes ``summary.json`` and ``summary.md`` into ``--out``:

| figure | run |
|---|---|
| depth Abs Rel (per-sequence scale, metric), δ<1.25, moving-pixel IoU, network ATE | `synthetic-dynamic` at long side 128, refinement off |
| depth Abs Rel at twice the size | `synthetic-dynamic` at 256, refinement off |
| refined ATE | `synthetic-dynamic` at 128, refinement on |
| the same on the realistic look | `synthetic-realistic` at 128, off and on |
| real frames: depth Abs Rel (scale, metric), ATE | `7scenes-sample` at 128 and 256, the checkpoint's own refinement setting |
| revisit PSNR, retrieval | `bench/bench_scene_memory_model.py` (4 loop scenes × 40 frames), the checkpoint's own setting |

``--quick`` scores the first 8 sequences of the synthetic benchmarks and skips the realistic
look and the scene memory (a check during training, not a reported figure).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from mem4d.eval.predict import predict
from mem4d.eval.score import score

REPO = Path(__file__).resolve().parents[1]


def _variant(ckpt: Path, refinement: str, where: Path) -> Path:
    """A copy of the checkpoint folder (weights hard-linked when possible) with heads.pose_refinement set."""
    out = where / f"ckpt-{refinement}"
    if out.exists():
        return out
    out.mkdir(parents=True)
    for f in ckpt.iterdir():
        if f.suffix == ".safetensors":
            try:
                (out / f.name).hardlink_to(f)
            except OSError:
                shutil.copy2(f, out / f.name)
    raw = json.loads((ckpt / "config.json").read_text())
    raw["mem4d_config"]["heads"]["pose_refinement"] = refinement
    (out / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    return out


def _run(bench: str, ckpt: Path, size: int, out: Path, limit: int | None) -> dict:
    pred, res = out / f"pred-{bench}-{size}-{ckpt.name}", out / f"res-{bench}-{size}-{ckpt.name}"
    if not (res / "results.json").is_file():
        t0 = time.perf_counter()
        predict(bench, str(ckpt), pred, size=size, threads=1, limit_seqs=limit, overwrite=True)
        score(pred, res, overwrite=True)
        print(f"  {bench} @{size} {ckpt.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    r = json.loads((res / "results.json").read_text())
    row = {"benchmark": bench, "size": size, "refinement": ckpt.name.split("-", 1)[1], "limit_seqs": limit}
    if "depth" in r:
        for align in ("scale", "metric"):
            d = r["depth"].get(align, {}).get("dataset", {})
            row[f"abs_rel_{align}"] = d.get("abs_rel")
            row[f"delta1_{align}"] = d.get("delta1")
    if "pose" in r:
        row.update({k: r["pose"]["dataset"].get(k) for k in ("ate", "rpe_trans", "rpe_rot")})
    if "motion" in r:
        row["mask_iou"] = r["motion"]["dataset"]["iou"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True, type=Path, help="save_pretrained / checkpoint folder")
    ap.add_argument("--out", required=True, type=Path, help="folder for predictions, results and the summary")
    ap.add_argument("--quick", action="store_true", help="8 sequences, no realistic look, no scene memory")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if str(args.ckpt) == "default":
        from mem4d.model.pretrained import DEFAULT_DIR

        args.ckpt = DEFAULT_DIR
    args.out.mkdir(parents=True, exist_ok=True)
    own = json.loads((args.ckpt / "config.json").read_text())["mem4d_config"]["heads"]["pose_refinement"]
    ckpts = {r: _variant(args.ckpt, r, args.out) for r in ("none", "photometric")}
    limit = 8 if args.quick else None
    plan = [("synthetic-dynamic", 128, "none"), ("synthetic-dynamic", 256, "none"), ("synthetic-dynamic", 128, "photometric"),
            ("7scenes-sample", 128, own), ("7scenes-sample", 256, own)]
    if not args.quick:
        plan += [("synthetic-realistic", 128, "none"), ("synthetic-realistic", 128, "photometric")]
    rows = []
    for bench, size, refinement in plan:
        rows.append(_run(bench, ckpts[refinement], size, args.out, None if bench == "7scenes-sample" else limit))
        (args.out / "summary.json").write_text(json.dumps({"ckpt": str(args.ckpt), "rows": rows}, indent=1))
    scene = None
    if not args.quick:
        path = args.out / "scene_memory.json"
        if not path.is_file():
            subprocess.run([sys.executable, str(REPO / "bench" / "bench_scene_memory_model.py"), "--ckpt", str(ckpts[own]),
                            "--scenes", "4", "--frames", "40", "--size", "96x128", "--json", str(path)], check=True)
        scene = json.loads(path.read_text()).get("summary")
    (args.out / "summary.json").write_text(json.dumps({"ckpt": str(args.ckpt), "rows": rows, "scene_memory": scene},
                                                      indent=1))
    lines = [f"# {args.ckpt}", "", "| benchmark | size | refinement | Abs Rel (scale) | Abs Rel (metric) | δ<1.25 | ATE | "
             "RPE trans | RPE rot | moving IoU |", "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, d=3: "–" if v is None else f"{v:.{d}f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['benchmark']}{' (first %d)' % r['limit_seqs'] if r['limit_seqs'] else ''} | {r['size']} | "
                     f"{r['refinement']} | {fmt(r.get('abs_rel_scale'))} | {fmt(r.get('abs_rel_metric'))} | "
                     f"{fmt(r.get('delta1_scale'))} | {fmt(r.get('ate'))} | {fmt(r.get('rpe_trans'))} | "
                     f"{fmt(r.get('rpe_rot'), 2)} | {fmt(r.get('mask_iou'))} |")
    if scene:
        lines += ["", "scene memory (model-fed): " + json.dumps(scene)]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
