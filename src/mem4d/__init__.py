"""mem4d: online 4D reconstruction of dynamic scenes from monocular video (Mem4D).

Importing the package is cheap and has no side effects; heavy pieces (the model, optional
viewers and exporters) are imported when first used::

    import mem4d
    model = mem4d.Mem4D(mem4d.Mem4DConfig.tiny())
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__ (PEP 562).
_LAZY = {
    "Mem4D": "mem4d.model.mem4d",
    "Mem4DConfig": "mem4d.config",
    "Sample": "mem4d.data.sample",
    "StreamState": "mem4d.model.state",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mem4d' has no attribute {name!r}")
