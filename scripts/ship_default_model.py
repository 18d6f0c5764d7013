"""Writes a trained checkpoint as the model that ships inside the package (maintainers only).

    .venv/bin/python scripts/ship_default_model.py --ckpt RUN/checkpoints/step_0003800 \
        --about docs/shipped_model.json --pose-refinement photometric

Stores the weights as float16 safetensors (loading casts them back to float32) with the config
and the provenance record (`--about`: how it was trained, its scores) in
`src/mem4d/weights/default/`, refuses a file over the 50 MB budget, and reports how far the
float16 copy's predictions are from the float32 checkpoint's on a synthetic clip. Every
replacement stays in the repository's history: replace the shipped model rarely.

`--blend-with BASE --alpha A` ships the weights `(1 - A) * BASE + A * CKPT` instead (one
architecture only; `mem4d.model.weight_interpolation`), e.g. a fine-tuned run blended back
towards the model it started from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from mem4d.data.synthetic import make_scene
from mem4d.model.mem4d import Mem4D
from mem4d.model.pretrained import DEFAULT_DIR, WEIGHTS_NAME
from mem4d.model.weight_interpolation import interpolate_weights

BUDGET_BYTES = 50 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, type=Path, help="checkpoint folder (config.json + model.safetensors)")
    parser.add_argument("--about", type=Path, help="JSON file with the provenance record to store beside the config")
    parser.add_argument("--image-size", default=None,
                        help="HxW default input size to record (default: the checkpoint's own, which the trainer "
                             "sets to the training size; only checkpoints older than that need it)")
    parser.add_argument("--pose-refinement", choices=("none", "photometric"), default=None,
                        help="heads.pose_refinement to record (default: the checkpoint's; training runs leave it "
                             "'none', a shipped model that relies on it must say 'photometric')")
    parser.add_argument("--refine-select-after", type=int, default=None,
                        help="heads.refine_select_after to record: pyramid levels every start of the refinement runs "
                             "before the cheapest goes on alone (0: all levels; default: the checkpoint's)")
    parser.add_argument("--refine-probes", action="store_true",
                        help="record heads.refine_probes: true (the refinement probes 8 turns of the velocity)")
    parser.add_argument("--refine-focal", action="store_true",
                        help="record heads.refine_focal: true (the focal length calibrated from the motion)")
    parser.add_argument("--loop-closure", action="store_true",
                        help="record heads.loop_closure: true (refined poses closed against old keyframes in view)")
    parser.add_argument("--blend-with", type=Path, default=None,
                        help="checkpoint folder (or 'default') to interpolate --ckpt with, e.g. the model a run "
                             "started from")
    parser.add_argument("--alpha", type=float, default=None,
                        help="with --blend-with: the weight of --ckpt in [0, 1] (0 = the --blend-with weights)")
    parser.add_argument("--out", type=Path, default=DEFAULT_DIR, help=f"destination (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)

    if (args.blend_with is None) != (args.alpha is None):
        parser.error("--blend-with and --alpha go together")
    model = Mem4D.from_pretrained(args.ckpt).eval()
    if args.blend_with is not None:
        try:
            model = interpolate_weights(Mem4D.from_pretrained(args.blend_with), model, args.alpha).eval()
        except ValueError as err:
            print(f"refusing: {err}", file=sys.stderr)
            return 1
    if args.image_size:
        size = tuple(int(v) for v in args.image_size.lower().split("x"))
        model.config = dataclasses.replace(model.config, image_size=size)
    if args.pose_refinement:
        heads = dataclasses.replace(model.config.heads, pose_refinement=args.pose_refinement)
        model.config = dataclasses.replace(model.config, heads=heads)
    if args.refine_select_after is not None:
        try:
            heads = dataclasses.replace(model.config.heads, refine_select_after=args.refine_select_after)
        except ValueError as err:
            parser.error(str(err))
        model.config = dataclasses.replace(model.config, heads=heads)
    for flag, field in ((args.refine_probes, "refine_probes"), (args.refine_focal, "refine_focal"),
                        (args.loop_closure, "loop_closure")):
        if flag:
            heads = dataclasses.replace(model.config.heads, **{field: True})
            model.config = dataclasses.replace(model.config, heads=heads)
    H, W = model.config.image_size
    about = json.loads(args.about.read_text()) if args.about else None

    with tempfile.TemporaryDirectory(dir=args.out.parent if args.out.parent.exists() else None) as tmp:
        staged = Path(tmp) / "default"
        model.save_pretrained(staged, dtype=torch.float16, about=about)
        size = (staged / WEIGHTS_NAME).stat().st_size
        if size > BUDGET_BYTES:
            print(f"refusing: {size / 2**20:.1f} MB is over the 50 MB budget", file=sys.stderr)
            return 1
        shipped = Mem4D.from_pretrained(staged).eval()
        clip = make_scene(7, 8, image_size=(H, W)).images[None]
        with torch.no_grad():
            ref, half = model(clip).depth, shipped(clip).depth
        rel = ((half - ref).abs() / ref.abs().clamp_min(1e-6)).median().item()
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), str(args.out))
    print(f"wrote {args.out} ({size / 2**20:.2f} MB, float16); median relative depth change vs float32: {rel:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
