"""JAX: a sharded array keeps its sharding through relaxcat, and gives the unsharded sample.

``jax.jit(gumbel_softmax)`` (and eager calls, and ``relaxed_topk``) on arrays sharded over 4
host devices: batch-sharded, with automatic and explicit mesh axes, and with the category
axis sharded too. The output keeps the input's sharding and equals the unsharded result for
the same key.

XLA's host platform makes 4 CPU devices only if ``XLA_FLAGS`` says so before JAX starts,
and other tests in this process have started it already: the checks run in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("jax")

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import relaxcat

    assert jax.device_count() == 4, jax.devices()
    axis_type = getattr(jax.sharding, "AxisType", None)  # JAX with explicit sharding

    def mesh(shape, names, kind=None):
        devices = np.array(jax.devices()).reshape(shape)
        if kind is None:
            return Mesh(devices, names)
        return Mesh(devices, names, axis_types=(getattr(axis_type, kind),) * len(names))

    cases = [(mesh((4,), ("batch",)), P("batch", None))]  # batch-sharded
    if axis_type is not None:
        cases.append((mesh((4,), ("batch",), "Explicit"), P("batch", None)))
    cases.append((mesh((2, 2), ("batch", "cat")), P("batch", "cat")))  # categories split too

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 12)).astype(np.float32) * 3
    logits[::5, 3] = -np.inf
    x = jnp.asarray(logits)
    key = jax.random.key(7)
    sample = jax.jit(relaxcat.gumbel_softmax, static_argnames=("hard", "estimator", "samples"))
    unsharded = {hard: sample(x, 0.5, hard=hard, rng=key) for hard in (False, True)}
    unsharded_noise = jax.jit(relaxcat.gumbel_noise)(x, rng=key)

    for i, (m, spec) in enumerate(cases):
        sharding = NamedSharding(m, spec)
        xs = jax.device_put(x, sharding)
        where = f"{spec} on a mesh with axis types {getattr(m, 'axis_types', '?')}"
        # Eager calls compile every operation anew for each sharding: the first case only.
        runs = [("jit", sample), ("eager", relaxcat.gumbel_softmax)][: 2 if i == 0 else 1]
        for hard in (False, True):
            for name, run in runs:
                y = run(xs, 0.5, hard=hard, rng=key)
                assert y.sharding.is_equivalent_to(sharding, 2), (where, name, y.sharding)
                if hard:
                    np.testing.assert_array_equal(y, unsharded[hard], err_msg=where)
                    np.testing.assert_array_equal(np.asarray(y).sum(-1), 1.0)
                else:  # a sharded category axis sums a row in another order
                    np.testing.assert_allclose(y, unsharded[hard], rtol=1e-6, err_msg=where)
        # gumbel_noise: eagerly it draws with the sharding of `like`. Under jit its result
        # does not depend on the values of `like`, so placing it is the jit's business.
        if i == 0:
            placed = jax.jit(relaxcat.gumbel_noise, out_shardings=sharding)
            for name, g in (
                ("eager", relaxcat.gumbel_noise(xs, rng=key)),
                ("jit", placed(xs, rng=key)),
            ):
                assert g.sharding.is_equivalent_to(sharding, 2), (where, name, g.sharding)
                np.testing.assert_array_equal(g, unsharded_noise, err_msg=where)
            y = sample(xs, 0.5, hard=True, rng=key, estimator="gumbel_rao", samples=3)
            assert y.sharding.is_equivalent_to(sharding, 2), ("gumbel_rao", y.sharding)
            # A distribution function (its math runs as one compiled kernel, even eagerly).
            topk = jax.jit(relaxcat.relaxed_topk, static_argnums=1, static_argnames="hard")
            expected = topk(x, 3, 0.5, hard=True, rng=key)
            for name, y in (
                ("jit", topk(xs, 3, 0.5, hard=True, rng=key)),
                ("eager", relaxcat.relaxed_topk(xs, 3, 0.5, hard=True, rng=key)),
            ):
                assert y.sharding.is_equivalent_to(sharding, 2), ("relaxed_topk", name, y.sharding)
                np.testing.assert_array_equal(y, expected)
    print("sharding ok")
""")


def test_sharded_arrays_keep_their_sharding_and_sample(bk):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("sharding ok")
