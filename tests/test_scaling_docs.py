"""The examples of docs/scaling.md run as written, each in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "scaling.md"


def example(name: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    (code,) = [b for b in blocks if b.startswith(f"# example: {name}\n")]
    return code


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    return out.stdout


@pytest.mark.backends("dask")
def test_dask_example(bk):
    pytest.importorskip("distributed", reason="distributed is not installed")
    assert run(example("dask")).split() == ["20000.0", "5.0"]


@pytest.mark.backends("jax")
def test_jax_sharding_example(bk):
    run(example("jax"))
