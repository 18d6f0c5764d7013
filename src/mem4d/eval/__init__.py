"""mem4d.eval: metrics and the two-stage benchmark harness.

- :mod:`.metrics`: depth / pose / reconstruction metrics of the MonST3R-CUT3R protocols;
  :mod:`.trajectory_io`: TUM trajectory files and timestamp association.
- :mod:`.benchmarks`: the benchmark registry (sequences, frame sampling, input sizes, caps).
- :mod:`.predict` (stage 1): stream a checkpoint or a baseline over a benchmark -> ``.npz`` per
  sequence + ``manifest.json``. :mod:`.baselines`: constant-depth, identity-pose, oracle.
- :mod:`.score` (stage 2): predictions + ground truth -> ``results.json`` + ``results.md``;
  :mod:`.report`: the paper-style markdown tables.

Example::

    from mem4d.eval import predict, score
    predict("synthetic-dynamic", "runs/tiny/final", "preds/tiny", limit_seqs=2, max_frames=6, size=64)
    results = score("preds/tiny", "results/tiny")
    results["depth"]["scale"]["dataset"]["abs_rel"]

Names are imported lazily, so ``import mem4d.eval`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "predict": "mem4d.eval.predict",
    "score": "mem4d.eval.score",
    "get_benchmark": "mem4d.eval.benchmarks",
    "BENCHMARKS": "mem4d.eval.benchmarks",
    "render_results": "mem4d.eval.report",
    "render_tables": "mem4d.eval.report",
    "make_baseline": "mem4d.eval.baselines",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mem4d.eval' has no attribute {name!r}")
