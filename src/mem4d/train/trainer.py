"""The training loop, top to bottom: recipe → model, data, optimiser → steps → checkpoints.

    mem4d train --config configs/tiny-synthetic.yaml --out runs/tiny [--set train.steps=100] [--resume]

Every run writes `RUN_DIR/metrics.jsonl` (one JSON object per logged step with at least `step`
and `loss`; validation rows carry `val/...` keys), `RUN_DIR/recipe.yaml`, checkpoints under
`RUN_DIR/checkpoints/` and, when the `train` extra is installed, TensorBoard logs in `RUN_DIR/tb`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mem4d.losses.objective import Mem4DObjective, Targets
from mem4d.train.batches import make_batches
from mem4d.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from mem4d.train.distributed import DistInfo, gather_digests, init_distributed, mean_across, shutdown_distributed
from mem4d.train.optim import build_optimizer, build_scheduler
from mem4d.train.recipe import Recipe


def build_model(recipe: Recipe):
    """The Mem4D model a recipe describes (preset + overrides, encoder init, trainability)."""
    from mem4d.config import Mem4DConfig
    from mem4d.model.mem4d import Mem4D

    m = recipe.model
    if m.init_from:
        model = Mem4D.from_pretrained(m.init_from)
        if m.overrides:  # e.g. heads.camera_pose; the weights must still fit the changed config
            config = Mem4DConfig.from_dict(_deep_merge(model.config.to_dict(), m.overrides))
            weights = model.state_dict()
            model = Mem4D(config)
            _load_fitting(model, weights, m.init_from, m.overrides)
    else:
        presets = {"tiny": Mem4DConfig.tiny, "small": Mem4DConfig.small, "paper": Mem4DConfig.paper}
        if m.preset not in presets:
            raise ValueError(f"unknown model preset {m.preset!r}; choose one of {sorted(presets)}")
        # the training size becomes the model's default input size (what `mem4d reconstruct` uses)
        base = dataclasses.replace(presets[m.preset](), image_size=tuple(recipe.data.image_size))
        config = Mem4DConfig.from_dict(_deep_merge(base.to_dict(), m.overrides)) if m.overrides else base
        model = Mem4D(config)
    if m.init_encoder:
        model.load_encoder_weights(m.init_encoder)
    for p in model.encoder.parameters():
        p.requires_grad_(recipe.train.encoder_trainable)
    freeze_modules(model, recipe.train.freeze)
    return model


def freeze_modules(model: nn.Module, names: list[str]) -> None:
    """Holds the top-level modules (or parameters) ``names`` of ``model`` fixed: no gradient."""
    top = {name.split(".")[0] for name, _ in model.named_parameters()}
    unknown = sorted(set(names) - top)
    if unknown:
        raise ValueError(f"train.freeze names no module of the model: {unknown}; its modules: {sorted(top)}")
    for name, param in model.named_parameters():
        if name.split(".")[0] in names:
            param.requires_grad_(False)


def _load_fitting(model, weights: dict, source: str, overrides: dict) -> None:
    """Loads ``weights`` into ``model`` whose config ``overrides`` changed: every tensor both have
    must keep its shape; modules the overrides add start fresh and modules they remove are
    dropped (e.g. ``heads.camera_pose: procrustes`` adds ``correspondence``, drops ``head_world``),
    and ``model.init_report`` says which."""
    own = model.state_dict()
    wrong = [k for k, v in weights.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise ValueError(f"model.overrides {overrides} change the shapes of {source}'s weights ({wrong[:3]}...); "
                         "fine-tuning keeps the shapes of the weights it starts from")
    result = model.load_state_dict(weights, strict=False)
    fresh = _modules(result.missing_keys, own)
    for new, source in model.init_copies().items():  # e.g. heads.large_input_head starts as head_cam
        if new in fresh and source not in fresh:
            getattr(model, new).load_state_dict(getattr(model, source).state_dict())
            fresh = [f"{new} (copied from {source})" if name == new else name for name in fresh]
    model.init_report = {"fresh": fresh, "dropped": _modules(result.unexpected_keys, weights)}


def _modules(keys: list[str], every: dict) -> list[str]:
    """The module names that cover ``keys``: a top-level module when all its tensors are in
    ``keys``, else its sub-modules one level down (e.g. ``motion_head.evidence``)."""
    keys = set(keys)
    out = set()
    for k in keys:
        top = k.split(".")[0]
        whole = all(j in keys for j in every if j.split(".")[0] == top)
        out.add(top if whole else ".".join(k.split(".")[:2]))
    return sorted(out)


def _deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _stack(samples: list, device: torch.device) -> tuple[torch.Tensor, Targets]:
    clip = torch.stack([s.images for s in samples]).to(device)
    return clip, Targets.from_samples([s.to(device) for s in samples])


class MetricsLog:
    """Appends JSON lines to RUN_DIR/metrics.jsonl (main process only); on resume, drops rows of
    steps that will be re-run so the file reads like an uninterrupted run."""

    def __init__(self, path: Path, start_step: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            kept = [r for r in rows if r.get("step", 0) <= start_step]  # "step" counts steps done
            path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, row: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")


@torch.no_grad()
def validate(model, samples: list, device: torch.device) -> dict[str, float]:
    """Depth (per-sequence scale), pose and moving-pixel (IoU at 0.5) metrics of the model on held-out scenes.

    ATE is averaged over the scenes whose ground-truth camera moves (a pure rotation has no
    Sim(3) alignment, as in the evaluation protocol, which skips such sequences).
    """
    from mem4d.eval.metrics import depth_metrics, pose_metrics
    from mem4d.eval.metrics.pose import PoseAlignmentError

    was_training = model.training
    model.eval()
    depth_rows, ates = [], []
    inter = union = 0.0
    for s in samples:
        out = model(s.images[None].to(device))
        d = depth_metrics(out.depth[0].float().cpu(), s.depth, s.valid, align="scale")
        depth_rows.append((d["abs_rel"], d["delta1"]))
        if out.dynamic_prob is not None and s.dynamic_mask is not None:
            pred, gt = (out.dynamic_prob[0].float().cpu() > 0.5) & s.valid, s.dynamic_mask & s.valid
            inter, union = inter + float((pred & gt).sum()), union + float((pred | gt).sum())
        try:
            ates.append(pose_metrics(out.cam2world[0].double().cpu(), s.cam2world.double())["ate"])
        except PoseAlignmentError:
            pass
    model.train(was_training)
    row = {
        "val/abs_rel": sum(r[0] for r in depth_rows) / len(depth_rows),
        "val/delta1": sum(r[1] for r in depth_rows) / len(depth_rows),
    }
    if ates:
        row["val/ate"] = sum(ates) / len(ates)
    if union > 0:
        row["val/mask_iou"] = inter / union  # moving pixels, pooled over the scenes
    return row


def train(recipe: Recipe, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Runs (or resumes) training; returns the last logged row."""
    t = recipe.train
    device = _device(t.device)
    dist_info: DistInfo = init_distributed(device)
    if t.threads:
        torch.set_num_threads(t.threads)
    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir) if resume else None
    if dist_info.is_main:
        if run_dir.exists() and any(run_dir.iterdir()) and not resume:
            raise ValueError(f"run folder {run_dir} is not empty: pass --resume to continue it, or choose a new --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))

    torch.manual_seed(t.seed)
    model = build_model(recipe).to(device)
    report = getattr(model, "init_report", None)
    if report and dist_info.is_main and (report["fresh"] or report["dropped"]):
        print(f"model.init_from: modules starting fresh {report['fresh']}, dropped {report['dropped']}")
    model.train()
    if t.grad_checkpointing and hasattr(model, "set_gradient_checkpointing"):
        model.set_gradient_checkpointing(True)
    optimizer = build_optimizer(model, t.lr, t.weight_decay, t.betas, t.lr_scale)
    scheduler = build_scheduler(optimizer, t.steps, t.warmup_steps, t.min_lr_ratio)
    start = load_checkpoint(ckpt, model, optimizer, scheduler) if ckpt else 0
    # some parameters (e.g. memory readers at a clip's first frame) may get no gradient in a step
    net = DistributedDataParallel(model, find_unused_parameters=True) if dist_info.enabled else model

    data = make_batches(recipe.data, t.batch_size, rank=dist_info.rank)
    objective = Mem4DObjective(recipe.loss)
    log = MetricsLog(run_dir / "metrics.jsonl", start, dist_info.is_main)
    tb = _tensorboard(run_dir, t.tensorboard and dist_info.is_main)
    use_bf16 = t.amp == "bf16" or (t.amp == "auto" and device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()
    val_set = data.validation() if dist_info.is_main and recipe.data.val_scenes > 0 else []

    bar = _progress(start, t.steps, progress and dist_info.is_main)
    row: dict[str, Any] = {}
    frames_seen, tick = 0, time.perf_counter()
    deadline = None if t.time_limit_min is None else time.monotonic() + 60 * t.time_limit_min
    end = t.steps if t.stop_at is None else max(0, min(int(t.stop_at), t.steps))  # the schedule stays t.steps long
    last_step = end
    for step, samples in zip(range(start, end), _batches(data, start, end, t.data_workers)):
        clip, targets = _stack(samples, device)
        with autocast:
            pred = net(clip, detach_every=t.detach_every)
        if use_bf16:  # the objective runs in float32
            pred = dataclasses.replace(pred, **{k: v.float() for k, v in pred.tensors().items() if v.is_floating_point()})
        loss, terms = objective(pred, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower train.lr or enable train.grad_clip")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip if t.grad_clip > 0 else math.inf)
        optimizer.step()
        scheduler.step()
        frames_seen += clip.shape[0] * clip.shape[1] * dist_info.world_size
        done = step + 1
        # train.time_limit_min passed (all ranks agree) or train.stop_at reached: log, validate, checkpoint, stop
        stop_here = done == end or (deadline is not None and _agree(time.monotonic() > deadline, dist_info, device))

        if done % t.log_every == 0 or done == t.steps or stop_here:
            elapsed = time.perf_counter() - tick
            row = {"step": done, "loss": mean_across(loss, dist_info).item()}
            row.update({k: v.item() for k, v in terms.items() if k != "total"})
            row.update({"lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), "frames_per_s": frames_seen / max(elapsed, 1e-9)})
            frames_seen, tick = 0, time.perf_counter()
            log.write(row)
            if tb is not None:
                for k, v in row.items():
                    if k != "step":
                        tb.add_scalar(f"train/{k}", v, done)
                _log_depth_images(tb, pred, done)
            bar.set_postfix(loss=f"{row['loss']:.4f}", fps=f"{row['frames_per_s']:.1f}")
        if val_set and ((t.val_every and done % t.val_every == 0) or done == t.steps or stop_here):
            val_row = {"step": done, **validate(model, val_set, device)}
            log.write(val_row)
            if tb is not None:
                for k, v in val_row.items():
                    if k != "step":
                        tb.add_scalar(k, v, done)
            row.update(val_row)
        if dist_info.is_main and (done % t.ckpt_every == 0 or done == t.steps or stop_here):
            save_checkpoint(run_dir, done, model, optimizer, scheduler, recipe.to_dict(), keep=t.keep_checkpoints)
        bar.update(1)
        if stop_here:
            last_step = done
            break
    bar.close()
    if last_step < t.steps and dist_info.is_main:
        why = f"train.stop_at={t.stop_at}" if last_step == end else f"train.time_limit_min={t.time_limit_min}"
        print(f"{why} reached at step {last_step} of {t.steps}; continue with --resume")
    digests = gather_digests(model, dist_info)  # replicas must be identical after DDP training
    if dist_info.is_main:
        model.save_pretrained(run_dir / "final")
        (run_dir / "replicas.json").write_text(json.dumps({"world_size": dist_info.world_size, "digests": digests}))
    if tb is not None:
        tb.close()
    shutdown_distributed()
    return row


def _batches(data, start: int, steps: int, workers: int):
    """The clips of steps ``start..steps-1``, in order; with ``workers`` > 0 made ahead by that many
    processes (each step's clips depend only on the step, so the result is the same)."""
    if workers <= 0:
        return (data.batch(step) for step in range(start, steps))
    loader = torch.utils.data.DataLoader(_StepClips(data, start, steps), batch_size=None, num_workers=workers,
                                         prefetch_factor=4, persistent_workers=False)
    return iter(loader)


class _StepClips(torch.utils.data.Dataset):
    """Step index -> that step's list of `Sample` clips (for DataLoader workers)."""

    def __init__(self, data, start: int, steps: int) -> None:
        self.data, self.start, self.steps = data, start, steps

    def __len__(self) -> int:
        return self.steps - self.start

    def __getitem__(self, i: int):
        torch.set_num_threads(1)
        return self.data.batch(self.start + i)


def _agree(flag: bool, dist_info: DistInfo, device: torch.device) -> bool:
    """True on every rank when any rank says so (all ranks must stop at the same step)."""
    if not dist_info.enabled:
        return flag
    import torch.distributed as dist

    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _tensorboard(run_dir: Path, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # the `train` extra is not installed: metrics.jsonl still has everything
        return None
    return SummaryWriter(str(run_dir / "tb"))


def _log_depth_images(tb, pred, step: int) -> None:
    depth = pred.depth[0, :4].detach().float()
    lo, hi = depth.amin(), depth.amax()
    tb.add_images("train/depth", ((depth - lo) / (hi - lo + 1e-8))[:, None].cpu(), step)


def _progress(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)
