"""Which confidence a point needs to enter static.ply, moving/*.ply and the scene memory.

The model's confidence is ``1 + exp(.) >= 1`` and its scale depends on the model and on how far
the input is from its training data: on the real 7-Scenes frames the shipped model's median
world confidence is about 1.01, so a fixed threshold of 1.5 kept a sixth of each frame, and
with ``--pose-refinement none`` (confidence ~1.0 everywhere) it kept nothing
(docs/RESULTS.md, "Confidence threshold"). So the default threshold adapts to the stream:

* ``auto`` (default; ``auto:Q`` to choose Q): per frame, the ``Q``-quantile of the frame's
  confidence over its valid pixels (``Q`` = `DEFAULT_QUANTILE`), so the least confident
  ``100 Q`` % of each frame are dropped whatever the model's confidence scale [not in the
  paper]. Causal and constant-memory (one frame at a time). Where a frame's confidence is
  flat (all equal), nothing is dropped (``conf >= threshold`` holds for every pixel).
* a number: the fixed threshold, compared as ``conf >= threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_QUANTILE", "NEARLY_EMPTY", "ConfidenceStats", "ConfidenceThreshold", "parse_conf_threshold"]

DEFAULT_QUANTILE = 0.1
NEARLY_EMPTY = 0.25  # below this mean share of confident pixels per frame, the outputs are "nearly empty"


@dataclass(frozen=True)
class ConfidenceThreshold:
    """A fixed threshold (``value``) or a per-frame quantile (``quantile``); exactly one is set."""

    value: float | None = None
    quantile: float | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.quantile is None):
            raise ValueError("give a fixed confidence threshold or a quantile, not both / neither")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"the confidence threshold must be a finite number, got {self.value}")
        if self.quantile is not None and not 0.0 <= self.quantile < 1.0:
            raise ValueError(f"the confidence quantile must be in [0, 1), got {self.quantile}")

    @property
    def adaptive(self) -> bool:
        return self.quantile is not None

    def describe(self) -> str:
        """What the command line takes: ``"1.5"`` or ``"auto:0.1"``."""
        return f"auto:{self.quantile:g}" if self.adaptive else f"{self.value:g}"

    def for_frame(self, conf: np.ndarray, valid: np.ndarray | None = None) -> float:
        """The threshold of one frame: conf (H, W), valid (H, W) bool (None: every finite pixel)."""
        if not self.adaptive:
            assert self.value is not None
            return float(self.value)
        c = np.asarray(conf, dtype=np.float64)
        ok = np.isfinite(c) if valid is None else (np.asarray(valid, dtype=bool) & np.isfinite(c))
        if not ok.any():
            return 1.0  # no valid pixel: nothing will pass the other filters anyway
        return float(np.quantile(c[ok], self.quantile))  # <= the maximum: never drops a whole frame


def parse_conf_threshold(text: str | float) -> ConfidenceThreshold:
    """``"auto"`` / ``"auto:Q"`` / a number -> `ConfidenceThreshold`; ValueError with a hint otherwise."""
    s = str(text).strip().lower()
    if s == "auto":
        return ConfidenceThreshold(quantile=DEFAULT_QUANTILE)
    hint = ("--conf-threshold takes auto (drop each frame's least confident 10 %), auto:Q (drop the fraction Q, "
            f"0 <= Q < 1) or a fixed confidence (the model's confidence is >= 1), got {text!r}")
    try:
        if s.startswith("auto:"):
            return ConfidenceThreshold(quantile=float(s[5:]))
        return ConfidenceThreshold(value=float(s))
    except ValueError:
        raise ValueError(hint) from None


@dataclass
class ConfidenceStats:
    """What the threshold let through over a stream, as running sums (constant memory).

    Per frame: the share of its pixels with valid depth and ``conf >= threshold``, its median
    confidence over valid pixels and the threshold used.
    """

    frames: int = 0
    confident_sum: float = 0.0
    median_sum: float = 0.0
    threshold_min: float = math.inf
    threshold_max: float = -math.inf

    def update(self, conf: np.ndarray, valid: np.ndarray, threshold: float) -> None:
        ok = np.asarray(valid, dtype=bool) & np.isfinite(conf)
        self.frames += 1
        self.confident_sum += float((ok & (conf >= threshold)).mean()) if ok.size else 0.0
        self.median_sum += float(np.median(conf[ok])) if ok.any() else math.nan
        self.threshold_min = min(self.threshold_min, threshold)
        self.threshold_max = max(self.threshold_max, threshold)

    @property
    def confident_fraction(self) -> float:
        """Mean share of a frame's pixels that passed (valid depth, confident enough)."""
        return self.confident_sum / self.frames if self.frames else math.nan

    @property
    def median_confidence(self) -> float:
        return self.median_sum / self.frames if self.frames else math.nan

    def summary(self) -> dict[str, float | list[float] | None]:
        """meta.json's ``confident_fraction``, ``median_confidence`` and ``conf_threshold_range``."""
        return {"confident_fraction": self.confident_fraction, "median_confidence": self.median_confidence,
                "conf_threshold_range": [self.threshold_min, self.threshold_max] if self.frames else None}

    def warning(self, threshold: ConfidenceThreshold, static_points: int, scene_memory: bool = False) -> str | None:
        """A message when the confidence-filtered outputs came out empty or nearly so, else None."""
        if not self.frames:
            return None
        share, median = self.confident_fraction, self.median_confidence
        if share < NEARLY_EMPTY:
            what = "is empty" if static_points == 0 else "is nearly empty"
            fix = ("use --conf-threshold auto (drops only each frame's least confident 10 %)" if not threshold.adaptive
                   else "use a smaller quantile (e.g. --conf-threshold auto:0.05) or a fixed value below the median")
            return (f"static.ply {what} ({static_points:,} points): only {100 * share:.1f} % of the pixels passed "
                    f"--conf-threshold {threshold.describe()} (median confidence {median:.3f}); moving/*.ply"
                    f"{' and scene_memory/' if scene_memory else ''} keep as little. To keep more, {fix}")
        if static_points == 0:
            return (f"static.ply is empty although {100 * share:.1f} % of the pixels were confident: the model marked "
                    "them moving (dynamic probability > 0.5) or they fell outside the voxel grid")
        return None
