"""The self-contained NumPy examples of the documentation run as written.

Every ```python block in ``docs/`` that starts with ``import numpy as np`` is a complete
program using NumPy and relaxcat only; each runs here, so the guide cannot drift from the
API. Blocks for other libraries (or fragments such as a training loop) are not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def numpy_blocks() -> list[object]:
    params = []
    for page in sorted(DOCS.rglob("*.md")):
        for i, match in enumerate(BLOCK.finditer(page.read_text())):
            code = match.group(1)
            if code.startswith("import numpy as np\n"):
                name = f"{page.relative_to(DOCS)}#{i}"
                params.append(pytest.param(code, id=name))
    return params


def test_there_are_examples_to_run():
    assert len(numpy_blocks()) >= 4


@pytest.mark.parametrize("code", numpy_blocks())
def test_example_runs(code, capsys):
    exec(compile(code, "<docs example>", "exec"), {})
