"""Output folders of the commands that write one (`reconstruct`, `demo`): checks and the final rename.

A command writes into a hidden temporary folder beside ``--out`` and renames it into place at
the end (`replace_dir`). Before anything is written, `check_writable` makes sure that folder can
be created there, so a read-only location is a clear input error that names ``--out`` (not the
temporary folder). ``--overwrite`` replaces only a folder the same command wrote earlier
(`is_reconstruction` for `reconstruct`), never a folder of the user's own files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["check_writable", "is_reconstruction", "replace_dir"]

RECONSTRUCTION_FORMAT = "mem4d.reconstruct/"


def is_reconstruction(path: Path) -> bool:
    """True when ``path`` holds a `mem4d reconstruct` result (complete or interrupted): its meta.json."""
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and str(meta.get("format", "")).startswith(RECONSTRUCTION_FORMAT)


def check_writable(out: Path, flag: str = "--out") -> None:
    """ValueError unless the folder that will hold ``out`` exists (or can be made) and is writable."""
    parent = out.absolute().parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {out}: {parent} is not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {out}: cannot write in {parent} (permission denied); choose a folder you can "
                         "write to")


def replace_dir(tmp: Path, out: Path) -> None:
    """Renames ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    trash = None
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        trash.rmdir()
        os.replace(out, trash)
    try:
        os.replace(tmp, out)
    except BaseException:
        if trash is not None:
            os.replace(trash, out)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
