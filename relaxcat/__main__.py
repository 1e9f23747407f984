"""``python -m relaxcat``: sample on every installed backend and show that they agree.

Prints which array libraries are installed, draws a soft and a hard sample on each from
the same float64 noise, checks them against NumPy, and times one call per backend.
Works with NumPy alone. ``--plot out.png`` also draws samples across temperatures (like
Figure 1 of Jang et al. 2017); that needs matplotlib, imported only then.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import relaxcat

CANDIDATES = ("numpy", "torch", "jax", "cupy", "array_api_strict", "dask")
TOLERANCE = 1e-12


def _cupy_usable() -> str | None:
    try:
        import cupy

        return None if cupy.cuda.runtime.getDeviceCount() > 0 else "no CUDA GPU"
    except Exception as exc:
        return f"no usable GPU ({type(exc).__name__})"


def available() -> tuple[dict[str, Any], dict[str, str]]:
    """Installed backends as {name: converter}, and {name: why not} for the rest."""
    found: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for name in CANDIDATES:
        if importlib.util.find_spec(name) is None:
            missing[name] = "not installed"
            continue
        if name == "cupy" and (why := _cupy_usable()):
            missing[name] = why
            continue
        try:
            found[name] = importlib.import_module("dask.array" if name == "dask" else name)
        except Exception as exc:  # a broken install must not break the demo
            missing[name] = f"fails to import ({type(exc).__name__}: {exc})"
    if "jax" in found:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 agreement, as NumPy
        found["jax"] = jax.numpy
    return found, missing


def to_backend(name: str, module: Any, a: np.ndarray) -> Any:
    if name == "torch":
        return module.as_tensor(a)
    if name == "dask":  # rows and categories each split in two chunks
        return module.from_array(a, chunks=tuple(max(1, -(-d // 2)) for d in a.shape))
    return module.asarray(a)


def to_numpy(name: str, y: Any) -> np.ndarray:
    if name == "torch":
        return y.detach().cpu().numpy()
    if name == "cupy":
        import cupy

        return cupy.asnumpy(y)
    if name == "dask":
        return np.asarray(y.compute())
    return np.asarray(y)


def rng_for(name: str, seed: int) -> Any:
    if name == "jax":
        import jax

        return jax.random.key(seed)
    return seed


def time_one_call(name: str, module: Any, fn: Callable[[], Any]) -> float:
    """Median seconds of one call, after a warm-up, with device work finished."""
    sync: Callable[[Any], Any] = lambda y: y
    if name == "jax":
        sync = lambda y: y.block_until_ready()
    elif name == "cupy":
        sync = lambda y: module.cuda.Device().synchronize()
    elif name == "dask":
        sync = lambda y: y.compute()  # the call only builds the graph
    for _ in range(3):
        sync(fn())
    times = []
    for _ in range(15):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_call(name: str, x: Any, tau: float, rng: Any) -> Callable[[], Any]:
    """One soft-sample call on ``x``; jitted for JAX, as JAX users run it."""
    if name == "jax":
        import jax

        jitted = jax.jit(lambda v, k: relaxcat.gumbel_softmax(v, tau, rng=k))
        return lambda: jitted(x, rng)
    return lambda: relaxcat.gumbel_softmax(x, tau, rng=rng)


def same_seed_everywhere(found: dict[str, Any], seed: int) -> bool:
    """Print the hard sample that ``relaxcat.Philox(seed)`` draws on each backend.

    No noise is shared here: each library computes the same counter-based noise from the
    key itself, so the exact samples must be identical.
    """
    logits = np.random.default_rng(2).normal(size=(6, 1000)) * 2
    key = relaxcat.Philox(seed, offset=1)
    expected = relaxcat.sample_categorical(logits, rng=key)
    print(f"\nOne key, every library: sample_categorical(logits 6x1000, rng=Philox({seed}))")
    same = True
    for name, module in found.items():
        got = to_numpy(name, relaxcat.sample_categorical(to_backend(name, module, logits), rng=key))
        ok = bool(np.array_equal(got, expected))
        same &= ok
        print(f"{name:<18}{got.tolist()!s:<40}{'identical' if ok else 'DIFFERENT'}")
    return same


def fmt(row: np.ndarray) -> str:
    return "[" + " ".join(f"{v:.3f}" for v in row) + "]"


#: The categorical distribution of the temperature figure, and its temperatures.
PLOT_PROBS = np.array([0.05, 0.1, 0.3, 0.15, 0.25, 0.05, 0.1])
PLOT_TAUS = (0.1, 0.5, 1.0, 10.0)


def temperature_figure(path: str, *, seed: int = 0, draws: int = 100_000) -> dict[str, Any]:
    """Write the expectation and one sample of the Gumbel-softmax at several temperatures.

    The layout of Figure 1 of Jang et al. (2017): the first column is the categorical
    distribution (its probabilities, and the one-hot Gumbel-max sample of the shared
    noise); the others are the Gumbel-softmax at ``PLOT_TAUS``: the mean of ``draws``
    samples (top) and the sample of that same noise (bottom). Returns the plotted values.
    """
    import matplotlib

    matplotlib.use("Agg")  # a file, no window
    import matplotlib.pyplot as plt

    logits = np.log(PLOT_PROBS)
    noise = relaxcat.gumbel_noise(np.zeros((draws, PLOT_PROBS.size)), rng=seed)
    x = np.broadcast_to(logits, noise.shape)
    means = {tau: relaxcat.gumbel_softmax(x, tau, noise=noise).mean(axis=0) for tau in PLOT_TAUS}
    samples = {tau: relaxcat.gumbel_softmax(logits, tau, noise=noise[0]) for tau in PLOT_TAUS}
    one_hot = relaxcat.gumbel_softmax(logits, hard=True, noise=noise[0])

    columns = [("Categorical", PLOT_PROBS, one_hot)]
    columns += [(f"\u03c4 = {tau:g}", means[tau], samples[tau]) for tau in PLOT_TAUS]
    fig, axes = plt.subplots(2, len(columns), figsize=(2.3 * len(columns), 4.2), sharey="row")
    categories = np.arange(1, PLOT_PROBS.size + 1)
    for j, (title, top, bottom) in enumerate(columns):
        axes[0, j].bar(categories, top, color="tab:blue")
        axes[1, j].bar(categories, bottom, color="tab:orange")
        axes[0, j].set_title(title)
        axes[1, j].set_ylim(0, 1.05)
        for ax in axes[:, j]:
            ax.set_xticks(categories)
            ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("expectation")
    axes[1, 0].set_ylabel("sample")
    fig.suptitle(
        f"Gumbel-softmax across temperatures (expectation over {draws:,} draws; "
        "each sample uses the same noise)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {"probs": PLOT_PROBS, "one_hot": one_hot, "means": means, "samples": samples}


def require_matplotlib(parser: argparse.ArgumentParser) -> None:
    """Stop with a clear message (exit status 2) before any work if matplotlib is absent."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        parser.error(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(the demo itself needs only NumPy; run it without --plot)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m relaxcat",
        # Plain text: argparse prints the module docstring's reST markup as it is.
        description="Sample on every installed array library from the same noise, check that "
        "the samples agree with NumPy, and time one call per library. Needs only NumPy.",
    )
    parser.add_argument("--tau", type=float, default=0.5, help="temperature (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared noise")
    parser.add_argument(
        "--plot",
        metavar="OUT.png",
        help="also write a figure of samples at tau = 0.1, 0.5, 1 and 10 (needs matplotlib)",
    )
    args = parser.parse_args(argv)
    if args.plot:
        require_matplotlib(parser)

    found, missing = available()
    print(f"relaxcat {relaxcat.__version__}: the Gumbel-softmax on every array library")
    print(
        "installed: "
        + ", ".join(f"{n} {getattr(sys.modules.get(n), '__version__', '')}".strip() for n in found)
    )
    if missing:
        print("not available: " + ", ".join(f"{n} ({why})" for n, why in missing.items()))

    probs = np.array([0.1, 0.2, 0.3, 0.4])
    logits = np.log(probs)
    noise = np.random.default_rng(args.seed).gumbel(size=(1, probs.size))
    print(
        f"\nlogits = log({probs.tolist()}), tau = {args.tau}, the same float64 Gumbel noise for all"
    )

    reference = {
        hard: relaxcat.gumbel_softmax(logits[None], args.tau, hard=hard, noise=noise)[0]
        for hard in (False, True)
    }
    header = f"{'backend':<18}{'soft sample':<32}{'hard':<14}{'max |diff|':<12}{'agrees':<8}call"
    print(header)
    print("-" * len(header))
    all_agree = True
    big = np.random.default_rng(1).normal(size=(256, 1000)).astype(np.float32)
    for name, module in found.items():
        x = to_backend(name, module, logits[None])
        g = to_backend(name, module, noise)
        soft = to_numpy(name, relaxcat.gumbel_softmax(x, args.tau, noise=g))[0]
        hard = to_numpy(name, relaxcat.gumbel_softmax(x, args.tau, hard=True, noise=g))[0]
        diff = max(np.abs(soft - reference[False]).max(), np.abs(hard - reference[True]).max())
        agree = bool(diff <= TOLERANCE)
        all_agree &= agree
        xb = to_backend(name, module, big)
        fn = make_call(name, xb, args.tau, rng_for(name, args.seed))
        seconds = time_one_call(name, module, fn)
        hard_text = "[" + " ".join(str(int(v)) for v in hard) + "]"
        print(
            f"{name:<18}{fmt(soft):<32}{hard_text:<14}{diff:<12.1e}"
            f"{'yes' if agree else 'NO':<8}{seconds * 1e3:.2f} ms"
        )
    all_agree &= same_seed_everywhere(found, args.seed)
    print(
        f"\n(call = median time of one soft sample of 256x1000 float32 logits"
        f"{', jitted for jax' if 'jax' in found else ''}"
        f"{', graph built and computed for dask' if 'dask' in found else ''})"
    )
    if args.plot:
        temperature_figure(args.plot, seed=args.seed)
        print(f"\nwrote {args.plot}: the expectation and one sample at tau = 0.1, 0.5, 1 and 10")
    if all_agree:
        print(
            f"All {len(found)} installed backend(s) agree with NumPy to {TOLERANCE:g} "
            "given the same noise, and draw the same sample from one Philox key."
        )
        return 0
    print("DISAGREEMENT: some backend differs from NumPy given the same noise.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
