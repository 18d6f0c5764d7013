"""mem4d.model: the Mem4D network (one concept per file) and its streaming types.

    from mem4d.model import Mem4D, FrameOutput, SequenceOutput, StreamState

Files: ``encoder`` (image encoder E), ``tca`` (Temporal Context Aggregator), ``tdm`` (Transient
Dynamics Memory), ``psm`` (Persistent Structure Memory), ``unified`` (the CUT3R-style
variant), ``decoder`` (fusion decoder), ``heads`` / ``camera_head`` / ``motion_head``,
``mem4d`` (composes them), ``state`` / ``outputs`` (streaming types), ``pretrained``
(save/load), ``weights`` / ``cut3r_weights`` (CUT3R checkpoints: the encoder, and what else
fits), ``paper_components`` (the paper's component list with parameter counts), ``benchmark``
(``mem4d bench``). Names resolve lazily (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Mem4D": "mem4d.model.mem4d",
    "FrameOutput": "mem4d.model.outputs",
    "SequenceOutput": "mem4d.model.outputs",
    "StreamState": "mem4d.model.state",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mem4d.model' has no attribute {name!r}")
