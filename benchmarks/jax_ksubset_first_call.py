"""Eager JAX: the first call of ``simple_ksubset`` on a new shape, compilation included.

Each case runs in a fresh process (so no compilation is reused), after a warm-up call of
``gumbel_softmax`` that pays JAX's start-up. ``sample``: ``simple_ksubset(x, k, rng=key)``;
``grad``: ``jax.grad`` of a weighted sum of it. Run: ``python
benchmarks/jax_ksubset_first_call.py``; to compare with another version of relaxcat, run the
same file with ``PYTHONPATH`` pointing at that checkout.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

CHILD = r"""
import sys, time
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import relaxcat
n, k, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
x = jnp.asarray(np.random.default_rng(4).normal(size=(2, n)) * 4, jnp.float32)
w = jnp.asarray(np.random.default_rng(5).normal(size=(2, n)), jnp.float32)
key = jax.random.key(0)
relaxcat.gumbel_softmax(jnp.zeros((2, 3)), rng=key).block_until_ready()  # start-up
t = time.perf_counter()
if mode == "sample":
    relaxcat.simple_ksubset(x, k, rng=key).block_until_ready()
else:
    jax.grad(lambda l: (relaxcat.simple_ksubset(l, k, rng=key) * w).sum())(x).block_until_ready()
print(f"{time.perf_counter() - t:.1f} s (relaxcat from {relaxcat.__file__})")
"""

if __name__ == "__main__":
    for n, k, mode in ((100, 10, "sample"), (1000, 100, "sample"), (1000, 100, "grad")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(k), mode],
            check=True,
            capture_output=True,
            text=True,
            cwd=tempfile.gettempdir(),  # not a checkout: PYTHONPATH decides which relaxcat
        )
        print(f"n={n:5d} k={k:4d} {mode:6s} first call {out.stdout.strip()}")
