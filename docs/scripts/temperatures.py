"""Draw docs/img/temperatures.png, the figure of samples across temperatures.

It is the figure of ``python -m relaxcat --plot``: the expectation and one sample of the
Gumbel-softmax at tau = 0.1, 0.5, 1 and 10 (the layout of Figure 1 of Jang et al. 2017).
Run ``python docs/scripts/temperatures.py`` from the repository root.
"""

from __future__ import annotations

from pathlib import Path

from relaxcat.__main__ import temperature_figure

OUT = Path(__file__).resolve().parents[1] / "img" / "temperatures.png"

if __name__ == "__main__":
    temperature_figure(str(OUT), seed=0)
    print(f"wrote {OUT}")
