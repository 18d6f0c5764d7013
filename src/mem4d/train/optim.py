"""AdamW with parameter groups (no weight decay on norms, biases and learned tokens) and a
linear warm-up followed by cosine decay."""

from __future__ import annotations

import math

import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                     lr_scale: dict[str, float] | None = None) -> list[dict]:
    """Matrices/kernels with decay; biases, norm weights and 1-D parameters without.

    With ``lr_scale`` (top-level module name -> learning-rate multiplier, e.g. ``{"encoder": 0.1}``
    to move a pretrained trunk slower than new heads) each of the two groups is split further by
    multiplier, and each group's ``lr`` is ``lr * multiplier``.
    """
    scales = dict(lr_scale or {})
    names = {name.split(".")[0] for name, _ in model.named_parameters()}  # modules and top-level parameters
    unknown = sorted(set(scales) - names)
    if unknown:
        raise ValueError(f"train.lr_scale names no module of the model: {unknown}; its modules: {sorted(names)}")
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 for v in scales.values()):
        raise ValueError(f"train.lr_scale values must be numbers >= 0, got {scales}")
    groups: dict[tuple[bool, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or "norm" in name or "token" in name
        groups.setdefault((not no_decay, float(scales.get(name.split(".")[0], 1.0))), []).append(param)
    out = []
    for (decay, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1])):
        group = {"params": params, "weight_decay": weight_decay if decay else 0.0}
        if lr_scale and lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.95),
                    lr_scale: dict[str, float] | None = None) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, weight_decay, lr, lr_scale), lr=lr, betas=tuple(betas))


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear 0→1 over `warmup` steps, then cosine down to `min_ratio`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, total: int, warmup: int, min_ratio: float):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup, min_ratio))
