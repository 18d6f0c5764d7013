"""What holds the moving-pixel masks back: resolution or the network? (issue 12)

    .venv/bin/python bench/diagnose_masks.py --size 128 [PRED_DIR ...]

1. **Resolution ceilings**: the ground-truth masks of a synthetic benchmark, average-pooled to
   cells of 16, 8 and 4 pixels and upsampled back (bilinear, > 0.5): the IoU a perfect
   predictor would reach if it could only decide whole cells. 16 pixels is one token of the
   tiny preset, 4 pixels one cell of the correspondence head.
2. **Predictions** (optional): for each `mem4d eval predict` folder of the same benchmark and
   size, the moving-pixel IoU, precision and recall of ``dynamic_prob`` at several thresholds
   (the benchmark scores 0.5).
3. **Where the false positives lie** (with predictions): at 0.5, those within `NEAR` pixels of a
   moving pixel of their frame (a mover's blurred edge) and those beyond it, and the IoU the
   predictions would reach without the ones beyond.

IoU, precision and recall are pooled over every valid pixel of every frame, as the harness
scores them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mem4d.eval.benchmarks import get_benchmark
from mem4d.eval.score import read_manifest, read_prediction

THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9)
NEAR = 8  # pixels: a false positive this close to a moving pixel of its frame counts as "near"


def _counts(pred: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    """(true positives, false positives, false negatives) over valid pixels."""
    return np.array([int((pred & mask & valid).sum()), int((pred & ~mask & valid).sum()),
                     int((~pred & mask & valid).sum())], dtype=np.int64)


def _line(name: str, c: np.ndarray) -> str:
    tp, fp, fn = c
    return f"| {name} | {tp / max(tp + fp + fn, 1):.3f} | {tp / max(tp + fp, 1):.2f} | {tp / max(tp + fn, 1):.2f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preds", nargs="*", help="prediction folders of `mem4d eval predict` (same benchmark and size)")
    ap.add_argument("--benchmark", default="synthetic-dynamic")
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()

    bench = get_benchmark(args.benchmark)
    manifests = [read_manifest(Path(p)) for p in args.preds]
    for p, man in zip(args.preds, manifests):
        if man["benchmark"]["name"] != bench.name or int(man["run"]["size"]) != args.size:
            raise SystemExit(f"{p}: predictions of {man['benchmark']['name']} at {man['run']['size']}, "
                             f"not {bench.name} at {args.size}; pass --benchmark / --size to match")
    cells = (16, 8, 4)
    ceiling = {c: np.zeros(3, np.int64) for c in cells}
    scored = [{t: np.zeros(3, np.int64) for t in THRESHOLDS} for _ in args.preds]
    far_fp = [0 for _ in args.preds]  # false positives at 0.5 farther than NEAR pixels from any moving pixel
    fractions = []
    for name in bench.sequences():
        gt = bench.load(name, None, None, size=args.size)
        if gt.dynamic_mask is None:
            raise SystemExit(f"{bench.name} has no moving-pixel masks")
        mask, valid = gt.dynamic_mask.bool(), gt.valid.bool()
        fractions.append(float((mask & valid).sum() / valid.sum().clamp_min(1)))
        for c in cells:
            pooled = F.avg_pool2d(mask.float()[:, None], c)
            up = F.interpolate(pooled, size=mask.shape[-2:], mode="bilinear", align_corners=False)[:, 0] > 0.5
            ceiling[c] += _counts(up, mask, valid)
        near = F.max_pool2d(mask.float()[:, None], 2 * NEAR + 1, stride=1, padding=NEAR)[:, 0] > 0
        for i, (man, p, acc) in enumerate(zip(manifests, args.preds, scored)):
            entry = next((e for e in man["sequences"] if e["name"] == name), None)
            if entry is None:
                raise SystemExit(f"{p} has no prediction for {name}")
            prob = torch.from_numpy(np.asarray(read_prediction(Path(p) / entry["file"])["dynamic_prob"], np.float32))
            if tuple(prob.shape[-2:]) != tuple(mask.shape[-2:]):
                prob = F.interpolate(prob[:, None], size=mask.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            for t in THRESHOLDS:
                acc[t] += _counts(prob > t, mask, valid)
            far_fp[i] += int(((prob > 0.5) & ~near & valid).sum())
    print(f"{bench.name} at long side {args.size}, {len(fractions)} sequences; moving pixels "
          f"{100 * np.mean(fractions):.1f} % of valid pixels (per sequence {100 * min(fractions):.1f}-"
          f"{100 * max(fractions):.1f} %)\n")
    print("| prediction | IoU | precision | recall |\n|---|---|---|---|")
    for c in cells:
        print(_line(f"ground truth decided per {c}-pixel cell", ceiling[c]))
    for p, acc in zip(args.preds, scored):
        for t in THRESHOLDS:
            print(_line(f"{p} > {t}", acc[t]))
    if args.preds:
        print(f"\n| prediction (> 0.5) | false positives within {NEAR} px of a mover | beyond | IoU without those beyond |"
              "\n|---|---|---|---|")
        for p, acc, far in zip(args.preds, scored, far_fp):
            tp, fp, fn = acc[0.5]
            print(f"| {p} | {fp - far} | {far} | {tp / max(tp + fp - far + fn, 1):.3f} |")


if __name__ == "__main__":
    main()
