"""Turn the digits-VAE results into the table of docs/vae.md and docs/img/digits_vae.png.

Reads the JSON files that ``examples/digits_vae.py --json`` writes (by default
``docs/data/digits_vae_torch.json`` and ``docs/data/digits_vae_jax.json``), replaces the part
of ``docs/vae.md`` between ``<!-- results:start -->`` and ``<!-- results:end -->``, and draws
the training curves. ``nox -s vae`` runs the experiment and then this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

DOCS = Path(__file__).resolve().parents[1]
# The estimators and their labels, as the example itself names them.
_spec = importlib.util.spec_from_file_location(
    "digits_vae", DOCS.parent / "examples" / "digits_vae.py"
)
assert _spec is not None and _spec.loader is not None
_EXAMPLE = importlib.util.module_from_spec(_spec)
sys.modules["digits_vae"] = _EXAMPLE  # its dataclasses look themselves up there
_spec.loader.exec_module(_EXAMPLE)
DEFAULT_INPUTS = [DOCS / "data" / f"digits_vae_{b}.json" for b in ("torch", "jax")]
PAGE = DOCS / "vae.md"
FIGURE = DOCS / "img" / "digits_vae.png"
ORDER, LABELS = _EXAMPLE.ESTIMATORS, _EXAMPLE.LABELS
COLORS = {
    "gs": "tab:blue",
    "st": "tab:orange",
    "reinmax": "tab:green",
    "gumbel_rao": "tab:red",
    "reinforce": "tab:purple",
}
REPORTED_STEPS = (1000, 3000)


def final_tau(config: dict[str, Any]) -> float:
    """The temperature of the last training step (``anneal_tau`` at ``steps - 1``)."""
    decayed = config["tau0"] * math.exp(-config["anneal_rate"] * (config["steps"] - 1))
    return max(config["tau_min"], decayed)


def value_at(run: dict[str, Any], step: int) -> float:
    """Test -ELBO at ``step``: the final 100-sample estimate at the last step."""
    curve = run["curve"]
    if step == curve["step"][-1]:
        return float(run["test_neg_elbo"])
    return float(curve["test_neg_elbo"][curve["step"].index(step)])


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"


def table(result: dict[str, Any]) -> list[str]:
    steps = [*REPORTED_STEPS, result["config"]["steps"]]
    head = "| estimator | " + " | ".join(f"step {s:,}" for s in steps) + " | wall s per run |"
    lines = [head, "| --- |" + " ---: |" * (len(steps) + 1)]
    for est in ORDER:
        runs = [r for r in result["runs"] if r["estimator"] == est]
        if not runs:
            continue
        cells = [cell([value_at(r, s) for r in runs]) for s in steps]
        seconds = np.mean([r["seconds"] for r in runs])
        lines.append(f"| {LABELS[est]} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    return lines


def paired(result: dict[str, Any]) -> list[str]:
    """Each estimator's -ELBO minus ST-GS's on the same seed: mean ± standard error."""
    steps = [*REPORTED_STEPS, result["config"]["steps"]]
    seeds = result["seeds"]
    by_key = {(r["estimator"], r["seed"]): r for r in result["runs"]}
    head = "| minus ST-GS | " + " | ".join(f"step {s:,}" for s in steps) + " |"
    lines = [head, "| --- |" + " ---: |" * len(steps)]
    for est in ORDER:
        if est == "st" or (est, seeds[0]) not in by_key:
            continue
        cells = []
        for step in steps:
            diffs = np.array(
                [value_at(by_key[est, s], step) - value_at(by_key["st", s], step) for s in seeds]
            )
            if len(diffs) > 1:
                se = diffs.std(ddof=1) / np.sqrt(len(diffs))
                cells.append(f"{diffs.mean():+.2f} ± {se:.2f} ({int((diffs < 0).sum())})")
            else:
                cells.append(f"{diffs.mean():+.2f}")
        lines.append(f"| {LABELS[est]} | " + " | ".join(cells) + " |")
    return lines


def section(results: list[dict[str, Any]]) -> str:
    out = []
    for result in results:
        env = result["environment"]
        config = result["config"]
        backend = result["backend"]
        versions = ", ".join(f"{k} {v}" for k, v in env.items() if k not in ("machine",))
        relaxed = [r["test_relaxed_objective"] for r in result["runs"] if r["estimator"] == "gs"]
        out += [
            f"### {'PyTorch' if backend == 'torch' else 'JAX'}",
            "",
            f"`{result['command']}`: {len(result['seeds'])} seeds ({result['seeds']}), "
            f"{config['steps']:,} steps of {config['batch']} digits each, "
            f"{result['wall_seconds'] / 60:.0f} minutes in all; {versions}.",
            "",
            "Test negative ELBO in nats (mean ± standard deviation over seeds; lower is better):",
            "",
            *table(result),
            "",
            "The same, minus ST-GS's on the same seed (mean ± standard error over seeds; in "
            "brackets, on how many seeds the estimator is below ST-GS):",
            "",
            *paired(result),
            "",
            f"GS's own relaxed objective on the test digits (soft samples at the final "
            f"temperature, {final_tau(config):.2g}): {cell(relaxed)}.",
            "",
        ]
    return "\n".join(out)


def figure(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 4.2), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, result in zip(axes, results, strict=True):
        for est in ORDER:
            runs = [r for r in result["runs"] if r["estimator"] == est]
            if not runs:
                continue
            steps = np.array(runs[0]["curve"]["step"])
            curves = np.array([r["curve"]["test_neg_elbo"] for r in runs])
            ax.plot(steps, curves.mean(0), color=COLORS[est], label=LABELS[est])
            if len(runs) > 1:
                ax.fill_between(
                    steps, curves.min(0), curves.max(0), color=COLORS[est], alpha=0.15, lw=0
                )
        name = "PyTorch" if result["backend"] == "torch" else "JAX"
        ax.set_title(f"{name}: mean over {len(result['seeds'])} seeds (band: min to max)")
        ax.set_xlabel("training step")
        ax.set_ylim(17.5, 24)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test negative ELBO (nats)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="*", type=Path, default=DEFAULT_INPUTS)
    args = parser.parse_args(argv)
    results = [json.loads(p.read_text()) for p in args.inputs]
    text = PAGE.read_text()
    pattern = re.compile(r"(<!-- results:start -->\n).*?(<!-- results:end -->)", re.S)
    if not pattern.search(text):
        print(f"{PAGE} has no results markers", file=sys.stderr)
        return 1
    body = section(results)
    PAGE.write_text(pattern.sub(lambda m: m.group(1) + "\n" + body + "\n" + m.group(2), text))
    figure(results, FIGURE)
    print(f"wrote {PAGE} and {FIGURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
