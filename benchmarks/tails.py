"""Tail exactness of the Gumbel noise per backend: the figures behind docs/guide/random-numbers.md.

For each installed CPU backend (NumPy, array-api-strict, torch, JAX, Dask) it prints

* the dominant-category misses: rows of 131072 float32 logits ``[0, -30, ..., -30]`` (the
  leader has probability ``1 - 1.2e-8``), how many of ``--rows`` rows ``sample_categorical``
  assigns to another category (exact expectation: ``rows * 1.2e-8``);
* the max-law p-values: KS tests of ``max g - log n`` (upper tail) and ``max exp(-g) - log n``
  (lower tail) against the standard Gumbel law over ``--batches`` batches of ``2**--log2n``
  float32 draws from ``gumbel_noise``.

Run it from a checkout (``python benchmarks/tails.py``) to compare versions: it imports the
``relaxcat`` found first on ``sys.path``. Not a test: the suite's ``tests/test_tails.py``
holds the same properties with fixed seeds.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time

import numpy as np
from scipy import stats

import relaxcat


def arrays(name: str) -> tuple[object, object]:
    """``(asarray, to_numpy)`` for a backend."""
    if name == "numpy":
        return np.asarray, np.asarray
    if name == "array_api_strict":
        import array_api_strict as xp

        return xp.asarray, np.asarray
    if name == "torch":
        import torch

        return torch.from_numpy, lambda t: t.numpy()
    if name == "jax":
        import jax.numpy as jnp

        return jnp.asarray, np.asarray
    import dask.array as da

    return (lambda a: da.from_array(a, chunks=tuple(max(1, d // 2) for d in a.shape))), (
        lambda d: np.asarray(d.compute(scheduler="threads"))
    )


def rng_for(name: str, seed: int) -> object:
    if name == "jax":
        import jax

        return jax.random.key(seed)
    return seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--log2n", type=int, default=23)
    parser.add_argument("--backends", default="numpy,array_api_strict,torch,jax,dask")
    args = parser.parse_args()
    print(f"relaxcat from {relaxcat.__file__}")
    print("| backend | dominant misses / rows | KS p, upper tail | KS p, lower tail | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.backends.split(","):
        if importlib.util.find_spec(name) is None:
            continue
        asarray, to_numpy = arrays(name)
        start = time.perf_counter()
        logits = np.full((100, 131072), -30.0, np.float32)
        logits[:, 0] = 0.0
        x = asarray(logits)
        misses = 0
        for seed in range(-(-args.rows // 100)):
            idx = to_numpy(relaxcat.sample_categorical(x, rng=rng_for(name, seed)))
            misses += int((idx != 0).sum())
        n = 2**args.log2n
        like = asarray(np.zeros(2, np.float32))
        upper, lower = [], []
        for b in range(args.batches):
            g = to_numpy(relaxcat.gumbel_noise(like, shape=(n,), rng=rng_for(name, 1000 + b)))
            upper.append(float(g.max()) - math.log(n))
            lower.append(math.exp(-float(g.min())) - math.log(n))
        p_up = stats.kstest(upper, stats.gumbel_r.cdf).pvalue
        p_low = stats.kstest(lower, stats.gumbel_r.cdf).pvalue
        rows = 100 * -(-args.rows // 100)
        seconds = time.perf_counter() - start
        print(f"| {name} | {misses} / {rows} | {p_up:.2g} | {p_low:.2g} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
