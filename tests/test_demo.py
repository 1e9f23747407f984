"""``python -m relaxcat`` runs with whatever is installed and reports agreement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
    assert "draw the same sample from one Philox key" in out.stdout
    assert "DIFFERENT" not in out.stdout


def test_plot_writes_the_temperature_figure(tmp_path):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib")
    out = tmp_path / "temperatures.png"
    proc = subprocess.run(
        [sys.executable, "-m", "relaxcat", "--plot", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {out}" in proc.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000


def test_temperature_figure_values(tmp_path):
    pytest.importorskip("matplotlib", reason="the figure needs matplotlib")
    from relaxcat.__main__ import PLOT_PROBS, temperature_figure

    values = temperature_figure(str(tmp_path / "t.png"), seed=3, draws=20_000)
    n = PLOT_PROBS.size
    # the expectation tends to the categorical probabilities as tau -> 0, to uniform as
    # tau grows
    np.testing.assert_allclose(values["means"][0.1], PLOT_PROBS, atol=0.01)
    np.testing.assert_allclose(values["means"][10.0], np.full(n, 1 / n), atol=0.03)
    for sample in values["samples"].values():
        assert sample.sum() == pytest.approx(1.0)
    # one noise for every panel: the low-temperature sample is nearly the one-hot one
    assert np.argmax(values["samples"][0.1]) == np.argmax(values["one_hot"])
    assert set(np.unique(values["one_hot"])) == {0.0, 1.0}


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, capsys, tmp_path):
    from relaxcat.__main__ import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(SystemExit) as exit_info:
        main(["--plot", str(tmp_path / "t.png")])
    assert exit_info.value.code == 2
    assert "pip install matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "t.png").exists()
