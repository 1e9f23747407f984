"""Learning to rank with plackett_luce_log_prob: the worked example of docs/ranking.md.

Each of 300 queries shows 8 items with 5 features; a hidden linear scorer ``w_true`` sets
the items' Plackett-Luce scores, and each query comes with the top 4 of one ranking drawn
from that model with ``relaxcat.gumbel_topk``. A linear scorer is fitted by maximising
the exact Plackett-Luce log-likelihood of the observed partial rankings (PyTorch, Adam,
full batch). The figure shows the training negative log-likelihood against that of the
true scorer, and the learned weights against the true ones. Run
``python docs/scripts/ranking.py`` from the repository root (a few seconds on a CPU);
``tests/test_permutations.py`` runs it with fewer steps.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the checkout's relaxcat, not an installed one

import relaxcat  # noqa: E402

OUT = ROOT / "docs" / "img" / "ranking.png"
QUERIES, ITEMS, FEATURES, TOP = 300, 8, 5, 4


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(Q, n, d)``, the true weights ``(d,)`` and observed top-4 rankings."""
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=FEATURES)
    features = rng.normal(size=(QUERIES, ITEMS, FEATURES))
    rankings = relaxcat.gumbel_topk(features @ w_true, TOP, rng=seed + 1)  # (Q, 4)
    return features, w_true, rankings


def fit(steps: int = 300, seed: int = 0) -> dict[str, object]:
    """Fit a linear scorer by maximum Plackett-Luce likelihood; return the history."""
    import torch

    features, w_true, rankings = make_data(seed)
    x = torch.as_tensor(features)
    r = torch.as_tensor(rankings)
    w = torch.zeros(FEATURES, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        nll = -relaxcat.plackett_luce_log_prob(r, x @ w).mean()
        nll.backward()
        opt.step()
        history.append(float(nll.detach()))
    true_nll = -float(relaxcat.plackett_luce_log_prob(rankings, features @ w_true).mean())
    return {"history": history, "w": w.detach().numpy(), "w_true": w_true, "true_nll": true_nll}


def main(steps: int = 300, out: Path | None = OUT) -> dict[str, object]:
    result = fit(steps)
    w, w_true = result["w"], result["w_true"]
    print(
        f"final NLL {result['history'][-1]:.4f} per ranking; true scorer {result['true_nll']:.4f}"
    )
    print("true weights   ", np.round(w_true, 2))
    print("learned weights", np.round(w, 2))
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
        a.plot(result["history"], label="fitted scorer")
        a.axhline(result["true_nll"], color="k", ls="--", lw=1, label="true scorer")
        a.set_xlabel("Adam step")
        a.set_ylabel("NLL per top-4 ranking")
        a.set_title("exact Plackett-Luce likelihood")
        a.legend()
        b.scatter(w_true, w)
        lim = float(np.abs(np.concatenate([w_true, w])).max()) * 1.1
        b.plot([-lim, lim], [-lim, lim], color="k", lw=0.8)
        b.set_xlabel("true weight")
        b.set_ylabel("learned weight")
        b.set_title(f"{QUERIES} queries, {ITEMS} items, top {TOP}")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
