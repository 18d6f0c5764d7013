"""Weight-space interpolation of two checkpoints of one architecture.

A fine-tuned model often gains on its new data and loses a little on what its starting point
did well; the straight line between the two sets of weights can keep most of both (WiSE-FT,
Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022). For ``alpha`` in [0, 1]
every floating tensor becomes ``(1 - alpha) * base + alpha * tuned``; tensors that are not
floating (counters, index buffers) must agree. This is not in the Mem4D paper: it is a way of
choosing shipped weights, documented in docs/RESULTS.md where it is used.
"""

from __future__ import annotations

import math

import torch

from mem4d.model.mem4d import Mem4D

__all__ = ["interpolate_weights"]


def interpolate_weights(base: Mem4D, tuned: Mem4D, alpha: float) -> Mem4D:
    """A new model with ``tuned``'s config and the weights ``(1 - alpha) * base + alpha * tuned``.

    ``alpha = 0`` reproduces ``base``'s weights, ``alpha = 1`` ``tuned``'s. Raises ``ValueError``
    when ``alpha`` is outside [0, 1] or the two models differ in architecture (tensor names,
    shapes, or the values of non-floating tensors)."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise ValueError(f"alpha must be a number in [0, 1] (0 = base, 1 = tuned), got {alpha!r}")
    a, b = base.state_dict(), tuned.state_dict()
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(
            "the two checkpoints are different architectures: tensors only in base "
            f"{only_a[:3]}{' ...' if len(only_a) > 3 else ''}, only in tuned {only_b[:3]}"
            f"{' ...' if len(only_b) > 3 else ''}; interpolate checkpoints of one config only"
        )
    mixed = {}
    for name, wa in a.items():
        wb = b[name]
        if wa.shape != wb.shape:
            raise ValueError(
                f"the two checkpoints are different architectures: {name} is {tuple(wa.shape)} in base "
                f"and {tuple(wb.shape)} in tuned; interpolate checkpoints of one config only"
            )
        if wa.is_floating_point():
            mixed[name] = torch.lerp(wa.float(), wb.float(), float(alpha)).to(wb.dtype)
        elif torch.equal(wa, wb):
            mixed[name] = wb  # load_state_dict copies it into the new model
        else:
            raise ValueError(f"{name} is not a floating tensor and differs between the checkpoints; cannot interpolate it")
    out = Mem4D(tuned.config)
    out.load_state_dict(mixed)
    return out.train(tuned.training)
