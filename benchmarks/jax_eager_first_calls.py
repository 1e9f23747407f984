"""Eager JAX: the first call of each sampler on a new shape, and how many XLA compilations.

Eager JAX compiles every primitive on its own for every new shape (tens of milliseconds
each on a small CPU), and so does an eager ``jax.grad`` for each operation of the forward
and backward passes. relaxcat runs its math through ``Backend.compiled`` to make that a
few compilations. Each case runs in a fresh process (nothing compiled is reused), after a
warm-up call on another shape that pays JAX's start-up; it prints the call's time and the
number of XLA compilations JAX reports during it (the arrays it makes count too).
``categorical 256x65536``: two calls of ``sample_categorical`` (the first compiles, the
second only computes 2**24 draws).

Run: ``python benchmarks/jax_eager_first_calls.py``; to compare with another version of
relaxcat, run the same file with ``PYTHONPATH`` pointing at that checkout.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

CHILD = r"""
import sys, time
import jax, jax.numpy as jnp, numpy as np
import jax.monitoring
jax.config.update("jax_enable_x64", True)
import relaxcat
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: compiles.append(event)
    if event.endswith("backend_compile_duration") else None
)
key = jax.random.key(0)
relaxcat.gumbel_softmax(jnp.zeros((2, 3)), rng=key).block_until_ready()  # start-up
compiles.clear()
case = sys.argv[1]
x = jnp.asarray(np.random.default_rng(4).normal(size=(8, 50)))
w = jnp.asarray(np.random.default_rng(5).normal(size=(8, 50)))
grad = lambda f: jax.grad(lambda l: (f(l) * w).sum())(x)
cases = {
    "gumbel_softmax noise=": lambda: relaxcat.gumbel_softmax(x, 0.5, noise=w),
    "grad soft": lambda: grad(lambda l: relaxcat.gumbel_softmax(l, 0.5, rng=key)),
    "grad hard st": lambda: grad(lambda l: relaxcat.gumbel_softmax(l, 0.5, hard=True, rng=key)),
    "grad reinmax": lambda: grad(
        lambda l: relaxcat.gumbel_softmax(l, 0.5, hard=True, estimator="reinmax", rng=key)
    ),
    "grad gumbel_rao": lambda: grad(
        lambda l: relaxcat.gumbel_softmax(
            l, 0.5, hard=True, estimator="gumbel_rao", samples=4, rng=key
        )
    ),
    "log_gumbel_softmax": lambda: relaxcat.log_gumbel_softmax(x, 0.5, rng=key),
    "relaxed_bernoulli": lambda: relaxcat.relaxed_bernoulli(x, 0.5, rng=key),
}
if case == "categorical 256x65536":
    big = jnp.zeros((256, 2**16), jnp.float32)
    out = []
    for seed in (1, 2):
        compiles.clear()
        t = time.perf_counter()
        relaxcat.sample_categorical(big, rng=seed).block_until_ready()
        out.append(f"{time.perf_counter() - t:.2f} s ({len(compiles)} compilations)")
    print(" then ".join(out))
else:
    t = time.perf_counter()
    jax.block_until_ready(cases[case]())
    print(f"{time.perf_counter() - t:.2f} s, {len(compiles)} compilations")
"""

CASES = (
    "gumbel_softmax noise=",
    "grad soft",
    "grad hard st",
    "grad reinmax",
    "grad gumbel_rao",
    "log_gumbel_softmax",
    "relaxed_bernoulli",
    "categorical 256x65536",
)

if __name__ == "__main__":
    for case in CASES:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, case],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),  # not a checkout: PYTHONPATH decides which relaxcat
        )
        print(f"{case:24s} first call {out.stdout.strip()}")
