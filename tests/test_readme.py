"""Every ```python block of README.md runs as written (in a scratch folder, one thread)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```$", README.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(before)


def test_the_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python block"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, scratch):
    script = scratch / f"readme_block_{index}.py"
    script.write_text(BLOCKS[index], encoding="utf-8")
    names = runpy.run_path(str(script), run_name="__main__")
    if "memory" in names and "view" in names:  # the stream -> scene memory -> render example
        assert names["memory"].stats().n_frames > 0
        assert names["view"].coverage > 0.5, "the rendered scene memory is nearly empty"
