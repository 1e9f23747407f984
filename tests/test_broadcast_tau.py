"""A temperature that adds batch dimensions: logits ``(n,)`` with ``tau`` of shape ``(B, 1)``.

As in torch.distributions and TFP, the logits are broadcast against the temperature: the
result has the broadcast shape, equals the result for explicitly broadcast logits with the
same noise, and its gradient reaches the logits summed over the broadcast.
"""

from __future__ import annotations

import numpy as np
import pytest

import relaxcat
from relaxcat import _core

N, K = 4, 2
RNG = np.random.default_rng(11)
LOGITS = RNG.normal(size=N)
TAU = np.array([[0.4], [1.0], [2.5]])  # (3, 1): three distributions per row of logits
FULL = (3, N)
NOISE = RNG.gumbel(size=FULL)
NOISE_K = RNG.gumbel(size=(K, *FULL))
LOGISTIC = RNG.logistic(size=FULL)
Y = RNG.dirichlet(np.ones(N))
YB = RNG.uniform(0.05, 0.95, size=N)


def samplers(bk):
    """name -> f(logits, tau) that broadcasts, all with explicit noise of the full shape."""
    noise, noise_k, logistic = bk.asarray(NOISE), bk.asarray(NOISE_K), bk.asarray(LOGISTIC)
    return {
        "soft": lambda x, t: relaxcat.gumbel_softmax(x, t, noise=noise),
        "hard": lambda x, t: relaxcat.gumbel_softmax(x, t, hard=True, noise=noise),
        "reinmax": lambda x, t: relaxcat.gumbel_softmax(
            x, t, hard=True, noise=noise, estimator="reinmax"
        ),
        "gumbel_rao": lambda x, t: relaxcat.gumbel_softmax(
            x, t, hard=True, noise=noise, estimator="gumbel_rao", samples=3, rng=bk.rng(0)
        ),
        "log": lambda x, t: relaxcat.log_gumbel_softmax(x, t, noise=noise),
        "topk_successive": lambda x, t: relaxcat.relaxed_topk(x, K, t, noise=noise),
        "topk_successive_hard": lambda x, t: relaxcat.relaxed_topk(x, K, t, hard=True, noise=noise),
        "topk_max": lambda x, t: relaxcat.relaxed_topk(x, K, t, method="max", noise=noise_k),
        "topk_max_hard": lambda x, t: relaxcat.relaxed_topk(
            x, K, t, method="max", hard=True, noise=noise_k
        ),
        "bernoulli": lambda x, t: relaxcat.relaxed_bernoulli(x, t, noise=logistic),
        "bernoulli_hard": lambda x, t: relaxcat.relaxed_bernoulli(x, t, hard=True, noise=logistic),
    }


def densities(bk):
    y, log_y, yb = bk.asarray(Y), bk.asarray(np.log(Y)), bk.asarray(YB)
    return {
        "concrete": (lambda x, t: relaxcat.concrete_log_prob(y, x, t), (3,)),
        "exp_concrete": (lambda x, t: relaxcat.exp_concrete_log_prob(log_y, x, t), (3,)),
        "bernoulli": (lambda x, t: relaxcat.relaxed_bernoulli_log_prob(yb, x, t), FULL),
    }


SAMPLERS = [
    "soft",
    "hard",
    "reinmax",
    "gumbel_rao",
    "log",
    "topk_successive",
    "topk_successive_hard",
    "topk_max",
    "topk_max_hard",
    "bernoulli",
    "bernoulli_hard",
]
DENSITIES = ["concrete", "exp_concrete", "bernoulli"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_samplers_broadcast_the_logits_against_tau(bk, name):
    f = samplers(bk)[name]
    tau = bk.asarray(TAU)
    got = f(bk.asarray(LOGITS), tau)
    assert tuple(got.shape) == FULL
    expected = f(bk.asarray(np.broadcast_to(LOGITS, FULL)), tau)
    np.testing.assert_array_equal(bk.to_numpy(got), bk.to_numpy(expected))
    if name in ("soft", "hard"):
        np.testing.assert_allclose(bk.to_numpy(got).sum(-1), 1.0, rtol=1e-12)
    if name == "soft":  # each row has its own temperature: lower tau, sharper sample
        y = bk.to_numpy(got)
        assert y.max(-1)[0] > y.max(-1)[1] > y.max(-1)[2]


@pytest.mark.parametrize("name", DENSITIES)
def test_densities_broadcast_the_logits_against_tau(bk, name):
    f, shape = densities(bk)[name]
    tau = bk.asarray(TAU)
    got = f(bk.asarray(LOGITS), tau)
    assert tuple(got.shape) == shape
    expected = f(bk.asarray(np.broadcast_to(LOGITS, FULL)), tau)
    np.testing.assert_allclose(bk.to_numpy(got), bk.to_numpy(expected), rtol=1e-12)
    values = bk.to_numpy(got)
    assert np.isfinite(values).all()
    assert len(np.unique(values.round(9).reshape(3, -1), axis=0)) == 3  # one per temperature


def test_shapes_with_drawn_noise(bk):
    x, tau = bk.asarray(LOGITS), bk.asarray(TAU)
    rng = bk.rng
    assert tuple(relaxcat.gumbel_softmax(x, tau, rng=rng(1)).shape) == FULL
    assert tuple(relaxcat.gumbel_softmax(x, tau, hard=True, rng=rng(1)).shape) == FULL
    assert tuple(relaxcat.log_gumbel_softmax(x, tau, rng=rng(1)).shape) == FULL
    assert tuple(relaxcat.relaxed_topk(x, K, tau, rng=rng(1)).shape) == FULL
    assert tuple(relaxcat.relaxed_topk(x, K, tau, method="max", rng=rng(1)).shape) == FULL
    assert tuple(relaxcat.relaxed_bernoulli(x, tau, rng=rng(1)).shape) == FULL
    y = bk.to_numpy(relaxcat.gumbel_softmax(x, tau, rng=rng(1)))
    assert not np.allclose(y[0], y[1])  # independent noise per broadcast row


def test_a_seed_gives_the_noise_of_the_broadcast_shape(bk):
    x, tau = bk.asarray(LOGITS), bk.asarray(TAU)
    full = bk.asarray(np.broadcast_to(LOGITS, FULL))
    if bk.name == "dask":  # Dask's draws depend on the chunks: those of the broadcast
        full = bk.lib.broadcast_to(x, FULL)
    a = relaxcat.gumbel_softmax(x, tau, rng=bk.rng(3))
    b = relaxcat.gumbel_softmax(full, tau, noise=relaxcat.gumbel_noise(full, rng=bk.rng(3)))
    np.testing.assert_allclose(bk.to_numpy(a), bk.to_numpy(b), rtol=1e-12)


def test_category_axis_is_counted_in_the_broadcast_shape(bk):
    logits = RNG.normal(size=(N, 5))  # categories on axis 0
    tau = np.array([0.5, 2.0]).reshape(2, 1, 1)
    x = bk.asarray(logits)
    noise = RNG.gumbel(size=(2, N, 5))
    y = relaxcat.gumbel_softmax(x, bk.asarray(tau), axis=1, noise=bk.asarray(noise))
    assert tuple(y.shape) == (2, N, 5)
    ref = relaxcat.gumbel_softmax(
        bk.asarray(np.broadcast_to(logits, (2, N, 5))), bk.asarray(tau), axis=1,
        noise=bk.asarray(noise),
    )  # fmt: skip
    np.testing.assert_array_equal(bk.to_numpy(y), bk.to_numpy(ref))
    np.testing.assert_allclose(bk.to_numpy(y).sum(1), 1.0, rtol=1e-12)
    neg = relaxcat.gumbel_softmax(x, bk.asarray(tau), axis=-2, noise=bk.asarray(noise))
    np.testing.assert_array_equal(bk.to_numpy(neg), bk.to_numpy(y))
    with pytest.raises(ValueError, match=r"axis=0 is a dimension that tau .* adds"):
        relaxcat.gumbel_softmax(x, bk.asarray(tau), axis=0, rng=bk.rng(0))
    lp = relaxcat.concrete_log_prob(
        bk.asarray(np.full((N, 5), 1 / N)), x, bk.asarray(tau), axis=1
    )  # fmt: skip
    assert tuple(lp.shape) == (2, 5)
    with pytest.raises(ValueError, match=r"axis=0 is a dimension that tau .* adds"):
        relaxcat.concrete_log_prob(bk.asarray(np.full((N, 5), 1 / N)), x, bk.asarray(tau), axis=0)


def test_tau_may_fill_a_size_one_batch_axis(bk):
    logits = LOGITS.reshape(1, N)
    y = relaxcat.gumbel_softmax(bk.asarray(logits), bk.asarray(TAU), noise=bk.asarray(NOISE))
    assert tuple(y.shape) == FULL


def test_noise_must_have_the_broadcast_shape(bk):
    x, tau = bk.asarray(LOGITS), bk.asarray(TAU)
    with pytest.raises(ValueError, match=r"noise has shape \(4,\); it must have shape \(3, 4\)"):
        relaxcat.gumbel_softmax(x, tau, noise=bk.asarray(NOISE[0]))
    with pytest.raises(ValueError, match=r"must have shape \(2, 3, 4\)"):
        relaxcat.relaxed_topk(x, K, tau, method="max", noise=bk.asarray(NOISE_K[:, 0]))


def test_tau_still_may_not_vary_along_the_category_axis(bk):
    with pytest.raises(ValueError, match="varies along the category axis"):
        relaxcat.gumbel_softmax(bk.asarray(LOGITS), bk.asarray(np.ones((3, N))), rng=bk.rng(0))
    with pytest.raises(ValueError, match="does not broadcast"):
        relaxcat.gumbel_softmax(
            bk.asarray(np.zeros((2, N))), bk.asarray(np.ones((3, 1))), rng=bk.rng(0)
        )
    with pytest.raises(ValueError, match="varies along the category axis"):
        relaxcat.concrete_log_prob(
            bk.asarray(Y), bk.asarray(LOGITS), bk.asarray(np.ones((3, N)))
        )  # fmt: skip


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("hard", [False, True])
def test_numpy_fast_path_equals_generic_path_with_a_broadcast_tau(bk, hard, monkeypatch):
    x, tau, noise = bk.asarray(LOGITS), bk.asarray(TAU), bk.asarray(NOISE)
    fast = relaxcat.gumbel_softmax(x, tau, hard=hard, noise=noise)
    monkeypatch.setattr(_core, "FAST_PATHS", False)
    generic = relaxcat.gumbel_softmax(x, tau, hard=hard, noise=noise)
    np.testing.assert_array_equal(fast, generic)


def _grad(bk, f, x, w):
    if bk.name == "torch":
        x = x.detach().requires_grad_(True)
        (f(x) * w).sum().backward()
        return bk.to_numpy(x.grad)
    return bk.to_numpy(bk.jax.grad(lambda a: (f(a) * w).sum())(x))


@pytest.mark.backends("torch", "jax")
@pytest.mark.parametrize("name", SAMPLERS + [f"density_{d}" for d in DENSITIES])
def test_gradient_reaches_the_logits_summed_over_the_broadcast(bk, name):
    if name.startswith("density_"):
        f = densities(bk)[name.removeprefix("density_")][0]
    else:
        f = samplers(bk)[name]
    tau = bk.asarray(TAU)
    shape = tuple(f(bk.asarray(LOGITS), tau).shape)
    w = bk.asarray(np.random.default_rng(2).normal(size=shape))
    got = _grad(bk, lambda a: f(a, tau), bk.asarray(LOGITS), w)
    assert got.shape == (N,)
    full = _grad(bk, lambda a: f(a, tau), bk.asarray(np.broadcast_to(LOGITS, FULL)), w)
    np.testing.assert_allclose(got, full.sum(0), rtol=1e-10, atol=1e-12)
    assert np.isfinite(got).all() and np.abs(got).max() > 0
