"""Shared fixtures: where the project's real test data lives.

The small real sequences and CUT3R reference fixtures are not part of the repository (research
licences); CI clones the repository beside `shared/`. A test that needs them fails (never skips)
when they are missing, with a message saying how to point at them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared(sub: str, env: str, probe: str) -> Path:
    candidates = [os.environ.get(env), REPO.parent / "shared" / sub, REPO / "shared" / sub]
    for c in candidates:
        if c and (Path(c) / probe).exists():
            return Path(c)
    pytest.fail(f"shared/{sub} not found beside the repository ({REPO.parent / 'shared'}); set {env} to its path")


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """`shared/reference` (CUT3R state-dict manifests and the encoder parity fixture)."""
    return _find_shared("reference", "MEM4D_REFERENCE_DIR", "cut3r_encoder_parity/output.npy")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`shared/data` (7-Scenes, KITTI, NYU, TUM trajectories, a DAVIS video)."""
    return _find_shared("data", "MEM4D_SHARED_DATA", "7scenes_redkitchen_f000-059")


@pytest.fixture(scope="session")
def bench_script():
    """Loads a script of `bench/` by its name (``"bench_checkpoint_speed"``) as a module."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
