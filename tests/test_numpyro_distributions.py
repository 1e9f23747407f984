"""relaxcat.numpyro: the distribution classes, NumPyro's generic cases and SVI.

Written from the behaviour NumPyro's ``test_distributions`` checks for every distribution
(shapes, jit and vmap of samplers and densities, distributions as pytrees, reparametrized
gradients, support and argument validation, expand, ``test_cdf_and_icdf``), and an SVI model
with a relaxed categorical and a relaxed Bernoulli latent that recovers known parameters.
Runs in the JAX cell (the ``bk`` fixture, JAX only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

numpyro = pytest.importorskip(
    "numpyro", reason="numpyro is not installed (pip install relaxcat[numpyro])"
)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO  # noqa: E402
from scipy import stats  # noqa: E402

import relaxcat  # noqa: E402
from relaxcat.numpyro import (  # noqa: E402
    ExpRelaxedCategorical,
    HardConcrete,
    LogitRelaxedBernoulli,
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
)

pytestmark = pytest.mark.backends("jax")

CATEGORICAL = (RelaxedOneHotCategorical, ExpRelaxedCategorical)
ALL = (*CATEGORICAL, RelaxedBernoulli, LogitRelaxedBernoulli, HardConcrete)
KEY = jax.random.key(0)


def make(cls, tau=0.5, batch=(2, 3), dtype=jnp.float64, **kw):
    shape = (*batch, 4) if cls in CATEGORICAL else batch
    logits = jax.random.normal(jax.random.key(1), shape, dtype=dtype)
    return cls(tau, logits=logits, **kw)


def event(cls):
    return (4,) if cls in CATEGORICAL else ()


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("sample_shape", [(), (2, 1)])
def test_dist_shape(bk, cls, sample_shape):
    d = make(cls)
    assert d.batch_shape == (2, 3) and d.event_shape == event(cls)
    x = d.sample(KEY, sample_shape)
    assert x.shape == (*sample_shape, 2, 3, *event(cls))
    assert d.log_prob(x).shape == (*sample_shape, 2, 3)
    assert bool(jnp.all(d.support(x)))
    assert d.has_rsample and d.reparametrized_params == ["temperature", "logits"]


@pytest.mark.parametrize("cls", ALL)
def test_samples_equal_the_functional_api(bk, cls):
    # The shape of make()'s logits (any shape does): JAX compiles the sampler once for both.
    logits = jax.random.normal(jax.random.key(2), (2, 3, *event(cls)))
    f = {
        RelaxedOneHotCategorical: relaxcat.gumbel_softmax,
        ExpRelaxedCategorical: relaxcat.log_gumbel_softmax,
        RelaxedBernoulli: relaxcat.relaxed_bernoulli,
        LogitRelaxedBernoulli: relaxcat.logit_relaxed_bernoulli,
        HardConcrete: relaxcat.hard_concrete,
    }[cls]
    ours = cls(0.3, logits=logits).sample(jax.random.key(3))
    ref = f(logits, 0.3, rng=jax.random.key(3))
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", ALL)
def test_jit_and_pytree(bk, cls):
    d = make(cls)
    sample = jax.jit(lambda dist, key: dist.sample(key, (3,)))
    x = sample(d, KEY)  # the distribution crosses jit as a pytree
    np.testing.assert_allclose(np.asarray(x), np.asarray(d.sample(KEY, (3,))), rtol=1e-12)
    lp = jax.jit(lambda dist, v: dist.log_prob(v))(d, x)
    np.testing.assert_allclose(np.asarray(lp), np.asarray(d.log_prob(x)), rtol=1e-10)
    leaves, tree = jax.tree.flatten(d)
    again = jax.tree.unflatten(tree, leaves)
    assert type(again) is cls and again.batch_shape == d.batch_shape


@pytest.mark.parametrize("cls", ALL)
def test_vmap(bk, cls):
    logits = jax.random.normal(jax.random.key(4), (6, *event(cls)))

    def draw(lg, key):
        d = cls(0.5, logits=lg)
        x = d.sample(key)
        return x, d.log_prob(x)

    x, lp = jax.vmap(draw)(logits, jax.random.split(KEY, 6))
    assert x.shape == (6, *event(cls)) and lp.shape == (6,)
    np.testing.assert_allclose(
        np.asarray(lp), np.asarray(cls(0.5, logits=logits).log_prob(x)), rtol=1e-9
    )


@pytest.mark.parametrize("cls", ALL)
def test_sample_gradient(bk, cls):
    # Reparametrized: the gradient of E[f(x)] flows to logits and temperature.
    def loss(logits, tau):
        x = cls(tau, logits=logits).sample(KEY, (200,))
        return jnp.mean(jnp.tanh(x) * jnp.arange(1, x.shape[-1] + 1))

    logits = jnp.zeros((3, *event(cls))) + 0.3
    g_logits, g_tau = jax.grad(loss, argnums=(0, 1))(logits, jnp.asarray(0.7))
    assert bool(jnp.isfinite(g_logits).all()) and bool(jnp.any(g_logits != 0))
    assert bool(jnp.isfinite(g_tau))


@pytest.mark.parametrize("cls", ALL)
def test_expand(bk, cls):
    d = make(cls, batch=(3,))
    e = d.expand((5, 3))
    assert e.batch_shape == (5, 3) and e.event_shape == event(cls)
    x = e.sample(KEY)
    assert x.shape == (5, 3, *event(cls))
    np.testing.assert_allclose(np.asarray(e.log_prob(x)), np.asarray(d.log_prob(x)), rtol=1e-12)


@pytest.mark.parametrize("cls", ALL)
def test_distribution_constraints(bk, cls):
    logits = jnp.zeros((2, *event(cls)))
    with pytest.raises(ValueError, match="temperature"):
        cls(-1.0, logits=logits, validate_args=True)
    with pytest.raises(ValueError, match="Either `probs` or `logits`"):
        cls(0.5)
    d = cls(0.5, logits=logits, validate_args=True)
    if cls is RelaxedOneHotCategorical:  # sums to 1, but not in the simplex
        outside = jnp.asarray([[1.5, -0.5, 0.0, 0.0]] * 2)
    elif cls in (LogitRelaxedBernoulli, ExpRelaxedCategorical):
        outside = jnp.full((2, *event(cls)), jnp.inf)
    else:
        outside = jnp.full((2,), 1.5)
    with pytest.warns(UserWarning, match="support"):
        lp = d.log_prob(outside)
    assert bool((lp == -jnp.inf).all())


@pytest.mark.parametrize("cls", ALL)
def test_probs_and_logits_agree(bk, cls):
    p = jnp.asarray([0.2, 0.3, 0.5] if cls in CATEGORICAL else [0.2, 0.7])
    a, b = (
        cls(0.5, probs=p),
        cls(0.5, logits=jnp.log(p) if cls in CATEGORICAL else jnp.log(p / (1 - p))),
    )
    np.testing.assert_allclose(np.asarray(a.logits), np.asarray(b.logits), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(b.probs), np.asarray(p), rtol=1e-12)


@pytest.mark.parametrize("cls", [RelaxedBernoulli, LogitRelaxedBernoulli])
def test_cdf_and_icdf(bk, cls):
    # NumPyro's test_cdf_and_icdf: icdf(cdf(x)) == x, cdf(icdf(q)) == q, and the
    # derivative of the CDF is the density.
    d = cls(0.6, logits=jnp.asarray([-1.0, 0.5, 2.0]))
    x = d.sample(KEY, (50,))
    np.testing.assert_allclose(np.asarray(d.icdf(d.cdf(x))), np.asarray(x), rtol=1e-6, atol=1e-9)
    q = jax.random.uniform(jax.random.key(5), (50, 3), minval=0.01, maxval=0.99)
    np.testing.assert_allclose(np.asarray(d.cdf(d.icdf(q))), np.asarray(q), rtol=1e-9)
    dens = jax.vmap(jax.vmap(jax.grad(lambda v, i: d.cdf(jnp.full(3, v))[i]), (0, None)), (None, 0))
    pts = x[:5, 0]
    got = dens(pts, jnp.arange(3))  # (3, 5): d cdf_i / dv at pts
    expected = jnp.exp(d.log_prob(jnp.broadcast_to(pts[:, None], (5, 3)))).T
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-7)


def test_logit_relaxed_bernoulli_moments(bk):
    d = LogitRelaxedBernoulli(0.4, logits=jnp.asarray([-1.0, 2.0]))
    ref = stats.logistic(loc=np.array([-1.0, 2.0]) / 0.4, scale=1 / 0.4)
    np.testing.assert_allclose(np.asarray(d.mean), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(d.variance), ref.var(), rtol=1e-12)


@pytest.mark.parametrize("tau", [0.1, 0.01])
@pytest.mark.parametrize(
    ("cls", "kw"),
    [
        (RelaxedOneHotCategorical, {}),
        (RelaxedOneHotCategorical, {"hard": True}),
        (ExpRelaxedCategorical, {}),
        (RelaxedBernoulli, {}),
        (RelaxedBernoulli, {"hard": True}),
        (LogitRelaxedBernoulli, {}),
        (HardConcrete, {}),
    ],
)
def test_log_prob_of_own_sample_is_finite_in_float32(bk, cls, kw, tau):
    logits = jax.random.normal(jax.random.key(6), event(cls), dtype=jnp.float32)
    d = cls(tau, logits=logits, **kw)
    x, inter = d.sample_with_intermediates(jax.random.key(7), (20_000,))
    assert x.dtype == jnp.float32
    lp = d.log_prob(x, inter) if inter else d.log_prob(x)
    assert lp.shape == (20_000,) and bool(jnp.isfinite(lp).all())


def test_hard_concrete_atoms(bk):
    d = HardConcrete(2 / 3, logits=jnp.asarray([-1.0, 0.0, 1.5]))
    p0 = jnp.exp(d.log_prob(jnp.zeros(3)))
    np.testing.assert_allclose(np.asarray(d.expected_l0()), np.asarray(1 - p0), rtol=1e-12)


@pytest.fixture
def float32_only():
    """JAX without 64-bit types for one test (the harness turns them on for the suite)."""
    with jax.enable_x64(False):
        yield


# NumPyro warns of the model's discrete site; the guide supplies its value, as in Pyro's test.
@pytest.mark.filterwarnings("ignore:Currently, SVI with Trace_ELBO loss does not support")
def test_guide_intermediates_keep_the_elbo_finite(bk, float32_only):
    # A straight-through guide over a discrete model, as in Pyro's test_onehot_svi_usage:
    # the guide's log_prob uses its intermediates, so the loss stays finite in float32.
    def model():
        with numpyro.plate("draws", 64):
            # a one-hot categorical: a multinomial of one trial
            numpyro.sample("z", ndist.Multinomial(1, probs=jnp.full(4, 0.25, jnp.float32)))

    def guide():
        q = numpyro.param(
            "q",
            jnp.asarray([0.1, 0.2, 0.3, 0.4], jnp.float32),
            constraint=ndist.constraints.simplex,
        )
        with numpyro.plate("draws", 64):
            numpyro.sample("z", RelaxedOneHotCategorical(0.1, probs=q, hard=True))

    svi = SVI(model, guide, numpyro.optim.Adam(0.01), Trace_ELBO())
    state = svi.init(jax.random.key(1))
    update = jax.jit(svi.update)
    tail = []
    for step in range(250):
        state, loss = update(state)
        assert bool(jnp.isfinite(loss))
        if step >= 150:
            tail.append(np.asarray(svi.get_params(state)["q"]))
    assert tail[-1].dtype == np.float32
    np.testing.assert_allclose(np.mean(tail, 0), np.full(4, 0.25), atol=0.015)


def test_svi_recovers_a_relaxed_categorical_and_a_relaxed_bernoulli(bk, float32_only, capsys):
    # The NumPyro example of docs/ppl.md, run as written, in float32 at temperature 0.1.
    # NumPyro hands the guide's value to the model without its intermediates, so the
    # latents are the log-space and logit-space forms, whose densities are finite wherever
    # the samples are. The guide's family holds the prior, so the ELBO's optimum is
    # q = prior: the guide must have recovered PI and RHO (the last Adam iterate at lr 0.02
    # scatters by about 0.01), with every loss finite.
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "ppl.md"
    blocks = re.findall(r"^```python\n(import numpyro\n.*?)^```", page.read_text(), re.M | re.S)
    assert len(blocks) == 1
    scope: dict[str, Any] = {}
    exec(compile(blocks[0], "<docs/ppl.md NumPyro example>", "exec"), scope)
    result = scope["result"]
    assert bool(jnp.isfinite(result.losses).all())
    q, r = np.asarray(result.params["q"]), np.asarray(result.params["r"])
    assert q.dtype == np.float32
    np.testing.assert_allclose(q, np.asarray(scope["PI"]), atol=0.03)
    np.testing.assert_allclose(r, np.asarray(scope["RHO"]), atol=0.03)
