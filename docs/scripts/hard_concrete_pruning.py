"""Prune the hidden units of a small MLP on scikit-learn's digits with Hard Concrete gates.

Each of the 128 hidden units of a one-hidden-layer MLP is multiplied by a Hard Concrete
gate (Louizos, Welling and Kingma, 2018) with its own log-odds. Training minimises the
cross-entropy plus ``lam`` times the expected number of open gates,
``relaxcat.hard_concrete_l0(log_alpha).sum()``. At test time a unit is kept when its
deterministic gate, ``clip(sigmoid(log_alpha) * (high - low) + low, 0, 1)`` (the paper's
estimator), is non-zero, and the network runs with the others removed. The script sweeps
``lam``, reports test accuracy against the fraction of units kept, and writes
``docs/data/hard_concrete_pruning.json`` and ``docs/img/hard_concrete_pruning.png``.

Run ``python docs/scripts/hard_concrete_pruning.py`` from the repository root (torch,
scikit-learn and matplotlib; about two minutes on one CPU core).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import relaxcat

DOCS = Path(__file__).resolve().parents[1]
HIDDEN = 128
LIMITS = (-0.1, 1.1)
TAU = 2 / 3
LAMBDAS = [0.0, 3e-3, 1e-2, 3e-2, 6e-2, 1e-1]


def data(seed: int) -> tuple[torch.Tensor, ...]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    return (
        torch.from_numpy(xtr),
        torch.from_numpy(ytr),
        torch.from_numpy(xte),
        torch.from_numpy(yte),
    )


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    low, high = LIMITS
    return (torch.sigmoid(log_alpha) * (high - low) + low).clamp(0, 1)


def train(lam: float, seed: int, steps: int) -> dict[str, float]:
    xtr, ytr, xte, yte = data(seed)
    torch.manual_seed(seed)
    first, second = torch.nn.Linear(64, HIDDEN), torch.nn.Linear(HIDDEN, 10)
    log_alpha = torch.nn.Parameter(torch.full((HIDDEN,), 2.0))  # gates start mostly open
    weights = [*first.parameters(), *second.parameters()]
    # the gates' log-odds move faster: a gate must travel from 2 to below logit(1/12) to close
    opt = torch.optim.Adam([{"params": weights}, {"params": [log_alpha], "lr": 5e-2}], lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    n = len(xtr)
    for _ in range(steps):
        idx = torch.randint(n, (128,), generator=gen)
        # one gate sample per unit and example: the noise of each minibatch row differs
        gates = relaxcat.hard_concrete(log_alpha.expand(128, HIDDEN), TAU, limits=LIMITS, rng=gen)
        h = torch.relu(first(xtr[idx])) * gates
        loss = torch.nn.functional.cross_entropy(second(h), ytr[idx])
        penalty = relaxcat.hard_concrete_l0(log_alpha, TAU, limits=LIMITS).sum()
        opt.zero_grad()
        (loss + lam * penalty).backward()
        opt.step()
    with torch.no_grad():
        z = deterministic_gates(log_alpha)
        kept = z > 0
        logits = second(torch.relu(first(xte)) * z)
        accuracy = (logits.argmax(-1) == yte).float().mean().item()
        expected_l0 = relaxcat.hard_concrete_l0(log_alpha, TAU, limits=LIMITS).sum().item()
    return {
        "lambda": lam,
        "seed": seed,
        "accuracy": accuracy,
        "kept": int(kept.sum()),
        "fraction_kept": kept.float().mean().item(),
        "expected_l0": expected_l0,
    }


def plot(rows: list[dict[str, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for lam in sorted({r["lambda"] for r in rows}):
        pts = [r for r in rows if r["lambda"] == lam]
        ax.scatter(
            [r["fraction_kept"] for r in pts],
            [r["accuracy"] for r in pts],
            label=f"λ = {lam:g}",
            s=28,
        )
    ax.set_xlabel("fraction of hidden units kept")
    ax.set_ylabel("test accuracy")
    ax.set_xlim(0, 1.02)
    ax.set_title("Hard Concrete L0 pruning, digits MLP (128 hidden units)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", default=str(DOCS / "data" / "hard_concrete_pruning.json"))
    parser.add_argument("--png", default=str(DOCS / "img" / "hard_concrete_pruning.png"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    rows = []
    for lam in LAMBDAS:
        for seed in range(args.seeds):
            row = train(lam, seed, args.steps)
            rows.append(row)
            print(
                f"lambda={lam:<6g} seed={seed} accuracy={row['accuracy']:.3f} "
                f"kept={row['kept']:>3}/{HIDDEN} expected L0={row['expected_l0']:.1f}"
            )
    seconds = time.perf_counter() - start
    Path(args.json).write_text(
        json.dumps({"steps": args.steps, "seconds": round(seconds, 1), "runs": rows}, indent=1)
        + "\n"
    )
    plot(rows, Path(args.png))
    print(f"{len(rows)} runs in {seconds:.0f} s; wrote {args.json} and {args.png}")


if __name__ == "__main__":
    main()
