"""Draw docs/img/topk_recipe.png: relaxed_topk(method="max") against the literal m-hot recipe.

The recipe (C. Wu, 2021) is run as written, with a rejection loop in NumPy: draw a
Gumbel-softmax vector, throw it away if its arg max repeats an earlier one, and keep the
element-wise maximum of the ``k`` accepted draws. The figure overlays the histograms of
each entry of the soft output, recipe and relaxcat, and prints the two-sample KS p-values.
Run ``python docs/scripts/topk_recipe.py`` from the repository root (a few seconds).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the checkout's relaxcat, not an installed one

import relaxcat  # noqa: E402

OUT = ROOT / "docs" / "img" / "topk_recipe.png"
PROBS = np.array([0.1, 0.2, 0.3, 0.4])
K = 2
DRAWS = 50_000


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def recipe(logits: np.ndarray, k: int, tau: float, rng: np.random.Generator) -> np.ndarray:
    """The recipe, literally: redraw until the arg max is new; the maximum of the draws."""
    n = logits.size
    out, chosen = np.zeros((DRAWS, n)), np.zeros((DRAWS, n), bool)
    for _ in range(k):
        draw, todo = np.zeros((DRAWS, n)), np.ones(DRAWS, bool)
        while todo.any():
            rows = np.flatnonzero(todo)
            c = softmax((logits + rng.gumbel(size=(rows.size, n))) / tau)
            new = ~chosen[rows, c.argmax(-1)]
            draw[rows[new]] = c[new]
            todo[rows[new]] = False
        chosen[np.arange(DRAWS), draw.argmax(-1)] = True
        out = np.maximum(out, draw)
    return out


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats

    logits = np.log(PROBS)
    taus = (0.3, 1.0)
    fig, axes = plt.subplots(len(taus), PROBS.size, figsize=(11, 4.6), sharey="row")
    bins = np.linspace(0, 1, 41)
    for row, tau in enumerate(taus):
        ref = recipe(logits, K, tau, np.random.default_rng(row))
        x = np.broadcast_to(logits, (DRAWS, PROBS.size))
        ours = relaxcat.relaxed_topk(x, K, tau, method="max", rng=100 + row)
        for i, ax in enumerate(axes[row]):
            p = stats.ks_2samp(ours[:, i], ref[:, i]).pvalue
            ax.hist(ref[:, i], bins, density=True, alpha=0.5, label="recipe (rejection)")
            ax.hist(ours[:, i], bins, density=True, histtype="step", lw=1.6, label="relaxcat")
            ax.set_title(f"entry {i} (p={PROBS[i]}), tau={tau}\nKS p = {p:.2f}", fontsize=9)
            ax.set_yscale("log")
            print(
                f"tau={tau} entry {i}: mean recipe {ref[:, i].mean():.4f}, relaxcat "
                f"{ours[:, i].mean():.4f}, KS p = {p:.3g}"
            )
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"relaxed_topk(method='max'), k={K}: soft values, {DRAWS:,} samples each", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
