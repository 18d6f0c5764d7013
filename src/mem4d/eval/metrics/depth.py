"""Video-depth metrics (PROTOCOLS 1.1, the MonST3R/CUT3R ``eval/video_depth`` evaluator).

One call scores one sequence: the prediction is (resized to the GT size and) aligned to the
GT over *all frames jointly*, then Abs Rel, Sq Rel, RMSE, Log RMSE and the delta accuracies
are averaged over the valid pixels of the whole sequence. A dataset score is the mean over
sequences weighted by their valid-pixel counts (:func:`aggregate_depth_metrics`).

Per-dataset settings live in :data:`DEPTH_PROTOCOLS` (:class:`DepthProtocol`)::

    m = depth_metrics(pred, gt, valid, align="scale", protocol="sintel")
    dataset = aggregate_depth_metrics([m_seq1, m_seq2, ...])

Order of operations (as the reference evaluator):

1. resize ``pred`` to the GT size if they differ (bicubic, see :func:`resize_depth`);
2. valid = ``valid & isfinite(gt) & gt > 0 [& gt < max_depth]``;
3. alignment on the valid pixels: ``"scale"`` (Weiszfeld, one scale),
   ``"scale&shift"`` (L1 with Adam), ``"median"`` (``median(gt)/median(pred)``, the
   monodepth evaluator's per-frame choice: call once per frame for that protocol),
   ``"metric"`` (none);
4. predictions clipped to ``<= post_clip_max`` when the protocol says so (Sintel: 70);
5. ``abs_rel = mean(|p-g|/g)``, ``sq_rel = mean((p-g)^2/g)``, ``rmse = sqrt(mean((p-g)^2))``
   on the aligned prediction as is; then, as the reference does to avoid ``log(0)``, the
   prediction is clamped to ``>= 1e-5`` for ``log_rmse = sqrt(mean((log p - log g)^2))`` and
   ``delta_k = mean(max(p/g, g/p) < 1.25**k)``. So predicted depths <= 0 are *not* removed:
   they count fully in abs_rel/sq_rel/rmse and as ``1e-5`` (a large log error, a delta
   failure) in the other metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mem4d.geometry.align import fit_scale_shift_lad, fit_scale_weiszfeld, lower_median

__all__ = [
    "DepthProtocol",
    "DEPTH_PROTOCOLS",
    "DEPTH_METRIC_KEYS",
    "resize_depth",
    "depth_metrics",
    "aggregate_depth_metrics",
]

DepthAlign = Literal["scale", "scale&shift", "median", "metric"]
DEPTH_METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3")
_LOG_CLAMP = 1e-5


@dataclass(frozen=True)
class DepthProtocol:
    """Per-dataset depth-evaluation settings.

    Attributes:
        name: dataset name.
        max_depth: GT cap: pixels with ``gt >= max_depth`` are invalid (``None``: no cap).
        post_clip_max: predictions clipped to this value after alignment (``None``: no clip).
    """

    name: str
    max_depth: float | None = None
    post_clip_max: float | None = None

    def __post_init__(self) -> None:
        for field in ("max_depth", "post_clip_max"):
            v = getattr(self, field)
            if v is not None and not v > 0:
                raise ValueError(f"DepthProtocol.{field} must be positive or None, got {v}")


#: Settings of the reference evaluators. Video depth (1.1): sintel, bonn, kitti; the
#: monodepth evaluator (1.2) uses the same caps plus nyu (none). ``synthetic`` is this
#: project's own choice for its synthetic dynamic scenes (no public dynamic GT is available
#: here): no cap, no clip, so every finite positive GT pixel counts.
DEPTH_PROTOCOLS: dict[str, DepthProtocol] = {
    "sintel": DepthProtocol("sintel", max_depth=70.0, post_clip_max=70.0),
    "bonn": DepthProtocol("bonn", max_depth=70.0, post_clip_max=None),
    "kitti": DepthProtocol("kitti", max_depth=None, post_clip_max=None),
    "nyu": DepthProtocol("nyu", max_depth=None, post_clip_max=None),
    "synthetic": DepthProtocol("synthetic", max_depth=None, post_clip_max=None),
}


def resize_depth(pred: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize depth maps ``(..., h, w)`` to ``(..., H, W)`` with bicubic interpolation.

    ``F.interpolate(mode="bicubic", align_corners=False)``; the reference uses OpenCV
    ``cv2.resize(..., interpolation=cv2.INTER_CUBIC)``. Both are the Keys cubic kernel
    (a = -0.75) on pixel centres (half-pixel offset) without antialiasing when shrinking,
    so results agree in the interior up to float rounding; out-of-image taps at the border
    are handled by each library's own rule, which can change the outermost pixels slightly.
    Bicubic can overshoot near depth edges (even below 0); the metrics handle that as the
    reference does (see the module docstring). cv2 is not a dependency here, so the size of
    the difference has not been measured in this project.
    """
    if pred.shape[-2:] == tuple(size):
        return pred
    lead = pred.shape[:-2]
    x = pred.reshape(-1, 1, *pred.shape[-2:])
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    x = F.interpolate(x.to(dtype), size=tuple(size), mode="bicubic", align_corners=False)
    return x.reshape(*lead, *size)


def _to_tensor(x: Tensor | np.ndarray, dtype: torch.dtype) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return x.detach().to(dtype)


def depth_metrics(
    pred: Tensor | np.ndarray,
    gt: Tensor | np.ndarray,
    valid: Tensor | np.ndarray | None = None,
    align: DepthAlign = "scale",
    max_depth: float | None = None,
    post_clip_max: float | None = None,
    protocol: str | DepthProtocol | None = None,
    lad_method: Literal["adam", "exact"] = "adam",
    compute_dtype: torch.dtype = torch.float64,
) -> dict[str, float]:
    """Depth metrics of one sequence after joint alignment (PROTOCOLS 1.1).

    Args:
        pred: ``(T, h, w)`` (or ``(h, w)``) predicted z-depth; resized to GT size if needed.
        gt: ``(T, H, W)`` (or ``(H, W)``) GT depth; ``<= 0`` / non-finite = invalid.
        valid: optional ``(T, H, W)`` bool mask ANDed with the GT validity and the cap.
        align: ``"scale"``, ``"scale&shift"``, ``"median"`` or ``"metric"``.
        max_depth: GT cap (``gt < max_depth`` kept); ignored if ``protocol`` is given.
        post_clip_max: clip of aligned predictions; ignored if ``protocol`` is given.
        protocol: name in :data:`DEPTH_PROTOCOLS` or a :class:`DepthProtocol`.
        lad_method: solver for ``"scale&shift"``: ``"adam"`` (protocol) or ``"exact"``.
        compute_dtype: dtype of the computation (the reference runs in the input dtype,
            float32 for predictions; float64 here removes summation error on long videos).

    Returns:
        dict with floats ``abs_rel, sq_rel, rmse, log_rmse, delta1, delta2, delta3`` (deltas
        as fractions in [0, 1]), ``scale``, ``shift`` (alignment applied: ``s * pred + t``)
        and int ``n_valid``. With no valid pixel the metrics are NaN and ``n_valid == 0``
        (the reference writes zeros, which then get weight 0 in the dataset mean).
    """
    if protocol is not None:
        proto = DEPTH_PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
        max_depth, post_clip_max = proto.max_depth, proto.post_clip_max
    p_all = _to_tensor(pred, compute_dtype)
    g_all = _to_tensor(gt, compute_dtype)
    if g_all.ndim == 2:
        g_all = g_all[None]
    if p_all.ndim == 2:
        p_all = p_all[None]
    if g_all.ndim != 3 or p_all.ndim != 3 or p_all.shape[0] != g_all.shape[0]:
        raise ValueError(f"pred and gt must be (T, h, w) and (T, H, W); got {tuple(p_all.shape)} and {tuple(g_all.shape)}")
    p_all = resize_depth(p_all, tuple(g_all.shape[-2:]))
    mask = torch.isfinite(g_all) & (g_all > 0)
    if max_depth is not None:
        mask &= g_all < max_depth
    if valid is not None:
        v = (valid if isinstance(valid, Tensor) else torch.from_numpy(np.asarray(valid))).bool()
        if v.ndim == 2:
            v = v[None]
        if v.shape != g_all.shape:
            raise ValueError(f"valid must have the GT shape {tuple(g_all.shape)}, got {tuple(v.shape)}")
        mask &= v
    n_valid = int(mask.sum())
    out: dict[str, float] = {k: float("nan") for k in DEPTH_METRIC_KEYS}
    out.update(scale=float("nan"), shift=float("nan"), n_valid=n_valid)
    if n_valid == 0:
        return out
    p, g = p_all[mask], g_all[mask]

    s = torch.tensor(1.0, dtype=compute_dtype)
    t = torch.tensor(0.0, dtype=compute_dtype)
    if align == "scale":
        s = fit_scale_weiszfeld(p, g)
    elif align == "scale&shift":
        s, t = fit_scale_shift_lad(p, g, method=lad_method)
    elif align == "median":
        s = lower_median(g) / lower_median(p)
    elif align != "metric":
        raise ValueError(f"align must be 'scale', 'scale&shift', 'median' or 'metric', got {align!r}")
    p = s * p + t
    if post_clip_max is not None:
        p = p.clamp(max=post_clip_max)

    err = p - g
    out["abs_rel"] = float((err.abs() / g).mean())
    out["sq_rel"] = float((err**2 / g).mean())
    out["rmse"] = float(torch.sqrt((err**2).mean()))
    pc = p.clamp(min=_LOG_CLAMP)
    out["log_rmse"] = float(torch.sqrt(((torch.log(pc) - torch.log(g)) ** 2).mean()))
    ratio = torch.maximum(pc / g, g / pc)
    for k in (1, 2, 3):
        out[f"delta{k}"] = float((ratio < 1.25**k).to(compute_dtype).mean())
    out["scale"], out["shift"] = float(s), float(t)
    return out


def aggregate_depth_metrics(per_sequence: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Dataset score: per-sequence metrics averaged with weights ``n_valid`` (PROTOCOLS 1.1).

    Sequences with ``n_valid == 0`` get weight 0 (their NaN metrics are skipped).

    Returns:
        dict with the :data:`DEPTH_METRIC_KEYS` and ``n_valid`` (total), ``n_sequences``.
    """
    if not per_sequence:
        raise ValueError("aggregate_depth_metrics needs at least one sequence")
    w = np.asarray([m["n_valid"] for m in per_sequence], dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError("no sequence has a valid pixel")
    keep = w > 0
    out: dict[str, float] = {}
    for k in DEPTH_METRIC_KEYS:
        vals = np.asarray([m[k] for m in per_sequence], dtype=np.float64)
        out[k] = float(np.average(vals[keep], weights=w[keep]))
    out["n_valid"] = int(w.sum())
    out["n_sequences"] = len(per_sequence)
    return out
