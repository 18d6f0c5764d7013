"""The model that ships inside the package (`src/mem4d/weights/default/`): present, within its
size budget, stored as float16, and better than the no-information baselines on held-out
benchmark scenes (a regression guard on a replacement; the full scores are in docs/RESULTS.md)."""

from __future__ import annotations

import json

import pytest
import torch

from mem4d.eval.benchmarks import get_benchmark
from mem4d.eval.metrics import depth_metrics, pose_metrics
from mem4d.model.mem4d import Mem4D
from mem4d.model.pretrained import CONFIG_NAME, DEFAULT_DIR, WEIGHTS_NAME

pytestmark = pytest.mark.usefixtures("single_thread")


def test_the_default_model_ships_as_float16_within_50_mb():
    weights = DEFAULT_DIR / WEIGHTS_NAME
    assert weights.is_file(), f"{weights} must ship with the package (see scripts/ship_default_model.py)"
    assert weights.stat().st_size <= 50 * 1024 * 1024
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    about = json.loads((DEFAULT_DIR / CONFIG_NAME).read_text())["about"]
    for key in ("command", "steps", "hardware", "train_time", "scores"):
        assert key in about, f"the shipped model's provenance lacks {key!r}"
    model = Mem4D.from_pretrained("default")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.image_size == (96, 128)  # its training size, reconstruct's default
    assert model.config.heads.pose_refinement == "photometric"  # its poses come from the refinement
    assert model.config.heads.refine_probes and model.config.heads.refine_focal  # docs/RESULTS.md, "Fast turns"
    assert model.config.heads.loop_closure  # docs/RESULTS.md, "Loop closure"


def test_the_default_model_beats_the_no_information_baselines_on_held_out_scenes():
    """Four `synthetic-dynamic` sequences (never trained on: benchmark seeds), first 24 frames:
    depth Abs Rel and ATE at most half the constant-depth and identity-pose baselines'."""
    model = Mem4D.from_pretrained("default").eval()
    bench = get_benchmark("synthetic-dynamic")
    ours, const, ate, ate_identity = [], [], [], []
    for name in bench.sequences(limit_seqs=4):
        gt = bench.load(name, max_frames=24, size=128)
        frames = bench.prepare(gt, size=128)
        with torch.no_grad():
            out = model(frames.images[None])
        depth = torch.nn.functional.interpolate(out.depth.float(), size=gt.depth.shape[-2:], mode="bilinear")[0]
        ours.append(depth_metrics(depth, gt.depth, gt.valid, align="scale")["abs_rel"])
        flat = torch.full_like(gt.depth, float(gt.depth[gt.valid].median()))
        const.append(depth_metrics(flat, gt.depth, gt.valid, align="scale")["abs_rel"])
        ate.append(pose_metrics(out.cam2world[0].double(), gt.cam2world.double())["ate"])
        # a camera that never moves: ATE = spread of the GT centres (the harness's definition)
        centres = gt.cam2world[:, :3, 3].double()
        ate_identity.append(float(((centres - centres.mean(0)) ** 2).sum(-1).mean().sqrt()))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(ours) <= 0.5 * mean(const), (ours, const)
    assert mean(ate) <= 0.5 * mean(ate_identity), (ate, ate_identity)
