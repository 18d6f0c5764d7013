import doctest

import pytest

from mem4d.geometry import camera, pointmap, rotation, se3


@pytest.mark.parametrize("module", [se3, rotation, camera, pointmap], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module.__name__} has no docstring example"
    assert result.failed == 0
