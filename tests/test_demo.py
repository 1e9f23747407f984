"""``python -m relaxcat`` runs with whatever is installed and reports agreement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_and_backends_agree():
    out = subprocess.run(
        [sys.executable, "-m", "relaxcat", "--tau", "0.7"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "installed: numpy" in out.stdout
    assert "agree with NumPy" in out.stdout
    assert "DISAGREEMENT" not in out.stdout
