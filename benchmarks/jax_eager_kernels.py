"""Eager JAX: each distribution function as one compiled kernel vs op by op.

relaxcat runs the math of each new function through ``Backend.compiled``: on JAX a
``jax.jit`` of the kernel, elsewhere the function itself. This measures what that buys an
eager (un-jitted) JAX caller: the first call on a new shape (compilation) and a repeated
call (dispatch). Run: ``python benchmarks/jax_eager_kernels.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import relaxcat
from relaxcat._backends import backend_of


def timed(f):
    t0 = time.perf_counter()
    jax.block_until_ready(f())
    return time.perf_counter() - t0


def calls(shape):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape), dtype=jnp.float32)
    y = jnp.asarray(rng.dirichlet(np.ones(shape[-1]), size=shape[0]), dtype=jnp.float32)
    g = relaxcat.gumbel_noise(x, rng=1)
    return {
        "concrete_log_prob": lambda: relaxcat.concrete_log_prob(y, x, 0.5),
        "relaxed_topk(k=3)": lambda: relaxcat.relaxed_topk(x, 3, 0.5, noise=g),
        "categorical_kl": lambda: relaxcat.categorical_kl(x, x[::-1]),
    }


def run(label):
    print(f"{label}:")
    for name in calls((8, 16)):
        first = [timed(calls((8 + i, 16))[name]) for i in range(3)]  # new shapes
        f = calls((8, 16))[name]
        timed(f)
        repeat = min(timed(f) for _ in range(20))
        ms, us = np.median(first) * 1e3, repeat * 1e6
        print(f"  {name:20s} first call {ms:6.0f} ms, repeat {us:6.0f} us")


if __name__ == "__main__":
    # Each mode in a fresh process, so neither reuses the other's compilations.
    if len(sys.argv) == 1:
        print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
        for mode in ("compiled", "op-by-op"):
            subprocess.run([sys.executable, __file__, mode], check=True)
    elif sys.argv[1] == "compiled":
        run("compiled kernels (as shipped)")
    else:
        backend = type(backend_of(jnp.zeros(1)))
        backend.compiled = lambda self, fn, static: fn  # the same math, op by op
        run("op by op")
