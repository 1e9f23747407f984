"""Bias and variance of relaxcat's gradient estimators on problems with an exact answer.

The main problem: ``f(D) = <w, D>`` for a one-hot ``D ~ Categorical(softmax(l))``, with 4
and with 10 categories. The gradient of ``E[f(D)] = sum_k softmax(l)_k f(e_k)`` with respect
to the logits ``l`` is computed exactly by enumerating the categories (it equals ``J(p) w``,
``J(p) = diag(p) - p p^T``). A second problem, ``f(D) = ||D - t||^2`` with 4 categories, is
not linear in ``D``, so there the soft Gumbel-softmax and straight-through differ (for a
linear ``f`` they give the same gradient). Each estimator gives one gradient per draw; over
many draws we measure

* bias: ``||mean(estimates) - exact||``, relative to ``||exact||``;
* variance: ``trace(Cov(estimates))``, relative to ``||exact||^2``.

Estimators: straight-through Gumbel-softmax (ST), the soft Gumbel-softmax sample (soft GS:
``f`` evaluated at the relaxed sample), ReinMax, Gumbel-Rao with K = 4 and K = 16
conditional samples, and the score function (REINFORCE, no baseline).

Run it with ``nox -s estimators`` (or ``python benchmarks/estimators.py``): it rewrites the
results section of ``docs/estimators.md`` and the figure ``docs/img/estimators.png``.
It needs relaxcat, PyTorch and matplotlib, and takes a few minutes on a laptop CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import relaxcat

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "estimators.md"
FIGURE = ROOT / "docs" / "img" / "estimators.png"
START, END = "<!-- results:start -->", "<!-- results:end -->"

SEED = 20260404
TAUS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
CHUNK = 25_000  # draws per call (memory: Gumbel-Rao K=16 holds 16 x CHUNK x n numbers)
ESTIMATORS = {
    # label: keyword arguments of relaxcat.gumbel_softmax (None: the score function)
    "ST": {"hard": True},
    "soft GS": {"hard": False},
    "ReinMax": {"hard": True, "estimator": "reinmax"},
    "Gumbel-Rao K=4": {"hard": True, "estimator": "gumbel_rao", "samples": 4},
    "Gumbel-Rao K=16": {"hard": True, "estimator": "gumbel_rao", "samples": 16},
    "REINFORCE": None,
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """``f(D) = <w, D>`` (linear) or ``||D - t||^2`` (quadratic), with ``n`` categories."""

    kind: str
    n: int

    @property
    def title(self) -> str:
        formula = "<w, D>" if self.kind == "linear" else "||D - t||^2"
        return f"f(D) = {formula}, {self.n} categories"

    def parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the vector ``w`` (or target ``t``), fixed by SEED."""
        rng = np.random.default_rng([SEED, self.n, ("linear", "quadratic").index(self.kind)])
        logits = rng.normal(size=self.n)
        vector = rng.normal(size=self.n) if self.kind == "linear" else rng.uniform(size=self.n)
        return logits, vector

    def f(self, d: torch.Tensor) -> torch.Tensor:
        """``f`` of each row of ``d`` (one-hot or relaxed samples)."""
        vector = torch.tensor(self.parameters()[1])
        if self.kind == "linear":
            return d @ vector
        return ((d - vector) ** 2).sum(-1)

    def exact_gradient(self) -> np.ndarray:
        """d/dl E[f(D)] by enumeration: E[f(D)] = sum_k p_k f(e_k), differentiated by autograd."""
        logits, vector = self.parameters()
        l = torch.tensor(logits, requires_grad=True)
        p = torch.softmax(l, dim=0)
        values = self.f(torch.eye(self.n, dtype=torch.float64))  # f at every category
        (p @ values).backward()
        grad = l.grad.numpy()
        if self.kind == "linear":  # the closed form J(p) w, as a check
            pn = p.detach().numpy()
            assert np.allclose(grad, pn * vector - pn * (pn @ vector), rtol=1e-12, atol=1e-15)
        return grad


PROBLEMS = (Problem("linear", 4), Problem("linear", 10), Problem("quadratic", 4))


def seed_of(*indices: int) -> int:
    return int(np.random.SeedSequence([SEED, *indices]).generate_state(1)[0])


def estimates(
    label: str, problem: Problem, tau: float, draws: int, key: tuple[int, ...]
) -> np.ndarray:
    """``draws`` gradient estimates, one per row, in float64."""
    kwargs = ESTIMATORS[label]
    logits, _ = problem.parameters()
    out = []
    for chunk, start in enumerate(range(0, draws, CHUNK)):
        rows = min(CHUNK, draws - start)
        l = torch.tensor(np.broadcast_to(logits, (rows, problem.n)).copy(), requires_grad=True)
        # Common random numbers: every estimator sees the same seed for a given tau and
        # chunk, so ST, ReinMax and Gumbel-Rao share their one-hot samples.
        rng = seed_of(*key, chunk)
        if kwargs is None:  # score function: f(D) * d log p(D) / dl
            d = relaxcat.gumbel_softmax(l.detach(), tau, hard=True, rng=rng)
            log_p = (torch.log_softmax(l, dim=-1) * d).sum(-1)
            (problem.f(d) * log_p).sum().backward()
        else:
            problem.f(relaxcat.gumbel_softmax(l, tau, rng=rng, **kwargs)).sum().backward()
        out.append(l.grad.numpy().copy())
    return np.concatenate(out)


Results = dict[Problem, dict[str, dict[str, np.ndarray]]]


def measure(draws: int) -> Results:
    """results[problem][label] = {"bias", "variance", "floor"}, arrays over TAUS (relative)."""
    results: Results = {}
    for p, problem in enumerate(PROBLEMS):
        exact = problem.exact_gradient()
        scale = float(np.linalg.norm(exact))
        results[problem] = {}
        for label in ESTIMATORS:
            bias, variance, floor = [], [], []
            for i, tau in enumerate(TAUS):
                g = estimates(label, problem, tau, draws, (p, i))
                total_var = float(g.var(axis=0, ddof=1).sum())
                bias.append(float(np.linalg.norm(g.mean(axis=0) - exact)) / scale)
                variance.append(total_var / scale**2)
                # Monte Carlo noise of the bias estimate: the norm of a mean of `draws`
                # zero-mean vectors is about sqrt(trace(Cov) / draws).
                floor.append(np.sqrt(total_var / draws) / scale)
            results[problem][label] = {
                "bias": np.array(bias),
                "variance": np.array(variance),
                "floor": np.array(floor),
            }
            print(
                f"{problem.title:36s} {label:16s} bias {np.round(bias, 4)} "
                f"var {np.round(variance, 4)}",
                file=sys.stderr,
            )
    return results


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs ({threads} torch threads), "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, NumPy {np.__version__}, relaxcat {relaxcat.__version__}"
    )


def revision() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "relaxcat", "benchmarks"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    if not commit:
        return "unknown"
    return f"{commit} (with uncommitted changes)" if dirty else commit


def vector_text(v: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:.3f}" for x in v) + "]"


def fmt(value: float) -> str:
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"


def tables(results: Results) -> str:
    header = "| estimator | " + " | ".join(f"tau = {t:g}" for t in TAUS) + " |"
    rule = "| --- |" + " --- |" * len(TAUS)
    parts = []
    for problem in PROBLEMS:
        logits, vector = problem.parameters()
        p = np.exp(logits - logits.max())
        p /= p.sum()
        name = "w" if problem.kind == "linear" else "t"
        parts.append(f"### {problem.title}\n")
        parts.append(f"`softmax(l)` = {vector_text(p)}; `{name}` = {vector_text(vector)}.\n")
        for metric, title in (
            ("bias", "Relative bias, ||mean - exact|| / ||exact||"),
            ("variance", "Relative variance, trace(Cov) / ||exact||^2"),
        ):
            parts.append(f"{title}:\n")
            parts.append(header)
            parts.append(rule)
            for label, r in results[problem].items():
                cells = []
                for value, floor in zip(r[metric], r["floor"], strict=True):
                    mark = " (noise)" if metric == "bias" and value < 3 * floor else ""
                    cells.append(fmt(value) + mark)
                parts.append(f"| {label} | " + " | ".join(cells) + " |")
            parts.append("")
    return "\n".join(parts)


def plot(results: Results, draws: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(PROBLEMS), figsize=(15, 8), sharex=True)
    styles = {
        "ST": ("C0", "o-"),
        "soft GS": ("C1", "s--"),
        "ReinMax": ("C2", "^-"),
        "Gumbel-Rao K=4": ("C3", "v-"),
        "Gumbel-Rao K=16": ("C4", "D-"),
        "REINFORCE": ("C7", "x:"),
    }
    for col, problem in enumerate(PROBLEMS):
        for row, metric in enumerate(("bias", "variance")):
            ax = axes[row, col]
            for label, r in results[problem].items():
                color, style = styles[label]
                values = r[metric]
                ax.plot(TAUS, values, style, color=color, label=label, markersize=5)
                if metric == "bias":  # open markers: within Monte Carlo noise of zero
                    noise = values < 3 * r["floor"]
                    ax.plot(
                        np.array(TAUS)[noise],
                        values[noise],
                        style[0],
                        color=color,
                        markerfacecolor="white",
                        markersize=5,
                    )
            if metric == "bias":
                floor = np.max([r["floor"] for r in results[problem].values()], axis=0)
                ax.plot(TAUS, 3 * floor, color="0.6", lw=1, ls="-.", label="3 x MC noise (max)")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(TAUS, [f"{t:g}" for t in TAUS])
            ax.grid(True, which="major", alpha=0.3)
            ax.set_title(f"{problem.title}\nrelative {metric}", fontsize=10)
            if row == 1:
                ax.set_xlabel("temperature tau")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Bias and variance of gradient estimators vs tau ({draws:,} draws per point, "
        f"seed {SEED}, torch float64 on CPU; open markers: bias within noise of zero)",
        fontsize=12,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_doc(section: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Gradient estimators\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} lacks the markers {START} and {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{section}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200_000, help="draws per (estimator, tau)")
    parser.add_argument(
        "--no-write", action="store_true", help="print the results, leave docs/ unchanged"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    results = measure(args.draws)
    elapsed = time.perf_counter() - start
    section = "\n".join(
        [
            "",
            f"Generated by `python benchmarks/estimators.py` (`nox -s estimators`) on "
            f"{datetime.date.today().isoformat()} at relaxcat commit {revision()}, in "
            f"{elapsed:.0f} s on: {machine()}.",
            "",
            f"Each number is over **{args.draws:,} independent draws** (torch, float64, "
            f"CPU), seeded from {SEED}; every estimator gets the same seeds at a given tau, "
            f"so ST, ReinMax and Gumbel-Rao share their one-hot samples. A bias marked "
            f"*(noise)* is below three times its Monte Carlo noise "
            f"(about sqrt(trace(Cov) / draws)), so it is consistent with zero at this number "
            f"of draws.",
            "",
            "![Relative bias and variance of each estimator against tau](img/estimators.png)",
            "",
            tables(results),
        ]
    )
    print(section)
    if not args.no_write:
        plot(results, args.draws, FIGURE)
        write_doc(section)
        print(f"wrote {DOC.relative_to(ROOT)} and {FIGURE.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
