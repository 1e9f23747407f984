"""The self-contained NumPy examples of the documentation run as written.

Every ```python block in ``docs/`` that starts with ``import numpy as np`` is a complete
program using NumPy and relaxcat only; each runs here, so the guide cannot drift from the
API. Blocks for other libraries (or fragments such as a training loop) are not run.

The README has one complete example per library; each runs in its backend's cell.
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


# -- the README ------------------------------------------------------------------------

README = DOCS.parent / "README.md"
LIBRARIES = {"numpy", "array_api_strict", "torch", "jax", "cupy", "dask"}


def readme_examples() -> dict[str, str]:
    """The README's complete examples (python blocks that start with an import), by library."""
    examples = {}
    for match in BLOCK.finditer(README.read_text()):
        code = match.group(1)
        if code.startswith("import "):
            library = code.split()[1].split(".")[0]  # "import dask.array as da": dask
            assert library not in examples, f"two README examples for {library}"
            examples[library] = code
    return examples


def test_readme_has_one_example_per_library():
    assert set(readme_examples()) == LIBRARIES


def test_readme_example_runs(bk):
    code = compile(readme_examples()[bk.name], f"<README example for {bk.name}>", "exec")
    if bk.name == "dask":  # the example computes: allowed here, as it is not inside a call
        import dask

        with dask.config.set(scheduler="threads"):
            exec(code, {})
    else:
        exec(code, {})


def test_demo_help_is_plain_text(capsys):
    from relaxcat.__main__ import main

    with pytest.raises(SystemExit, match="0"):
        main(["--help"])
    text = capsys.readouterr().out
    assert "python -m relaxcat" in text
    for markup in ("``", ":func:", ":mod:", "`"):  # reST that argparse would print raw
        assert markup not in text, f"{markup!r} in the help text:\n{text}"
