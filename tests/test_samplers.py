"""Samplers beyond gumbel_softmax: log-space, relaxed Bernoulli, exact and relaxed subsets.

References are plain NumPy float64 code written here from the formulas in the docstrings
(no stabilisation tricks, on inputs where none are needed). Few distinct shapes are used:
on JAX every new shape compiles every primitive again.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import relaxcat
from relaxcat import _distributions
from tests.conftest import HALF

HALF_DTYPES = [pytest.param(d, marks=pytest.mark.backends(*b)) for d, b in HALF.items()]

B, N = 6, 5
RNG = np.random.default_rng(42)
LOGITS = RNG.normal(size=(B, N)) * 2
NOISE = RNG.gumbel(size=(B, N))
NOISE_K = RNG.gumbel(size=(3, B, N))
LOGISTIC = RNG.logistic(size=(B, N))
MASKED = LOGITS.copy()
MASKED[0, [1, 3]] = -np.inf
MASKED[4, 0] = -np.inf


def softmax(z, axis=-1):
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def naive_successive(s, k, tau):
    """Xie & Ermon, literally: p = softmax(a / tau); a += log(1 - p); sum of the p's."""
    a, total = s.copy(), 0.0
    for _ in range(k):
        p = softmax(a / tau)
        total = total + p
        a = a + np.log(1 - p)
    return total


def conditioned_draws(x, g, k):
    """The m-hot recipe's k accepted perturbed logits, from the noise g, and the chosen set.

    Written from competing exponentials in plain float64 (exp and log of moderate values):
    with W = exp(-(x + g)) and the pick D = argmin of W over the categories U not chosen
    yet, T = W_D, the conditioned draw is W' = W - T + T Z_U / Z on U, W' = W + T Z_U / Z
    on the chosen categories, and W'_D = T Z_U / Z; the perturbed logits are -log W'.
    """
    chosen = np.zeros(x.shape, bool)
    draws = []
    z = np.exp(x).sum(-1, keepdims=True)
    for j in range(k):
        w = np.exp(-(x + g[j]))
        pick = np.arange(x.shape[-1]) == np.argmin(np.where(chosen, np.inf, w), -1)[..., None]
        if j == 0:
            draws.append(x + g[0])
        else:
            t = np.where(pick, w, 0.0).sum(-1, keepdims=True)
            shift = t * np.where(chosen, 0.0, np.exp(x)).sum(-1, keepdims=True) / z
            w2 = np.where(pick, shift, np.where(chosen, w + shift, w - t + shift))
            with np.errstate(divide="ignore"):
                draws.append(-np.log(w2))
        chosen |= pick
    return draws, chosen


def naive_max(x, g, k, tau):
    """The m-hot recipe's law without rejection: max of the k conditioned draws' softmaxes."""
    draws, chosen = conditioned_draws(x, g, k)
    best = np.zeros(x.shape)
    for d in draws:
        best = np.maximum(best, softmax(d / tau))
    return best, chosen


def top_k_hot(s, k):
    order = np.argsort(-s, axis=-1, kind="stable")[..., :k]
    hot = np.zeros(s.shape)
    np.put_along_axis(hot, order, 1.0, axis=-1)
    return hot


# -- log_gumbel_softmax -----------------------------------------------------------------


def assert_exp_close(log_y, y, dtype):
    """exp(log y) == y up to rounding: a few eps, plus |log y| eps from exp of a log value.

    The two are computed differently (exp(z - log(sum(exp z))) and exp(z) / sum(exp z)), so
    they are not bitwise equal; an error of one ulp in log y is |log y| ulps in y.
    """
    eps = float(np.finfo(dtype).eps)
    log_y, y = log_y.astype(np.float64), y.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bound = (8 + np.abs(np.where(np.isfinite(log_y), log_y, 0))) * eps * y
    np.testing.assert_array_less(
        np.abs(np.exp(log_y) - y), bound + np.finfo(dtype).smallest_subnormal * 4
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tau", [0.1, 1.0, 5.0])
def test_exp_of_log_sample_is_the_sample(bk, dtype, tau):
    # Not bitwise: exp(z - log(sum(exp z))) and exp(z) / sum(exp z) round differently.
    x, g = bk.asarray(MASKED, dtype), bk.asarray(NOISE, dtype)
    log_y = bk.to_numpy(relaxcat.log_gumbel_softmax(x, tau, noise=g))
    y = bk.to_numpy(relaxcat.gumbel_softmax(x, tau, noise=g))
    assert_exp_close(log_y, y, dtype)
    assert np.all(log_y[np.isneginf(MASKED)] == -np.inf)
    assert np.isfinite(log_y[np.isfinite(MASKED)]).all()


def test_log_sample_matches_formula(bk):
    tau = 0.3
    got = bk.to_numpy(relaxcat.log_gumbel_softmax(bk.asarray(LOGITS), tau, noise=bk.asarray(NOISE)))
    np.testing.assert_allclose(got, special.log_softmax((LOGITS + NOISE) / tau, -1), rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_sample_is_finite_where_the_sample_underflows(bk, dtype):
    n, tau = 4096, 1e-4
    logits = bk.asarray(np.random.default_rng(0).normal(size=(4, n)), dtype)
    log_y = bk.to_numpy(relaxcat.log_gumbel_softmax(logits, tau, rng=1))
    y = bk.to_numpy(relaxcat.gumbel_softmax(logits, tau, rng=1))
    assert (y == 0).sum() > 4 * (n - 2)  # the sample itself is (nearly) one-hot
    assert np.isfinite(log_y).all()
    np.testing.assert_allclose(special.logsumexp(log_y.astype(np.float64), axis=-1), 0, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(log_y, -1), np.argmax(y, -1))
    assert_exp_close(log_y, y, dtype)


def test_log_sample_seed_equals_noise(bk):
    x = bk.asarray(LOGITS, "float32")
    direct = relaxcat.log_gumbel_softmax(x, 0.5, rng=9)
    via = relaxcat.log_gumbel_softmax(x, 0.5, noise=relaxcat.gumbel_noise(x, rng=9))
    np.testing.assert_array_equal(bk.to_numpy(direct), bk.to_numpy(via))


@pytest.mark.parametrize("axis", [0, -1])
def test_log_sample_axis_and_type(bk, axis):
    x = bk.asarray(LOGITS)
    log_y = relaxcat.log_gumbel_softmax(x, 0.7, axis=axis, noise=bk.asarray(NOISE))
    bk.assert_like(log_y, x)
    ref = special.log_softmax((LOGITS + NOISE) / 0.7, axis=axis)
    np.testing.assert_allclose(bk.to_numpy(log_y), ref, rtol=1e-13)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_log_sample_half_precision(bk, dtype):
    x = bk.asarray(LOGITS, dtype)
    noise32 = relaxcat.gumbel_noise(bk.asarray(LOGITS, "float32"), rng=2)
    got = relaxcat.log_gumbel_softmax(x, 0.05, noise=noise32)
    bk.assert_like(got, x)
    up = bk.asarray(bk.to_numpy(x).astype(np.float32), "float32")
    ref = relaxcat.log_gumbel_softmax(up, 0.05, noise=noise32)
    np.testing.assert_array_equal(
        bk.to_numpy(got), bk.to_numpy(bk.asarray(bk.to_numpy(ref), dtype))
    )


# -- relaxed_bernoulli ------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.1, 1.0, 3.0])
def test_relaxed_bernoulli_matches_formula(bk, tau):
    y = relaxcat.relaxed_bernoulli(bk.asarray(LOGITS), tau, noise=bk.asarray(LOGISTIC))
    np.testing.assert_allclose(
        bk.to_numpy(y), special.expit((LOGITS + LOGISTIC) / tau), rtol=1e-13, atol=1e-300
    )


def test_relaxed_bernoulli_is_two_category_gumbel_softmax(bk):
    # y = first entry of softmax(((l, 0) + (g1, g2)) / tau), with logistic noise g1 - g2.
    g = NOISE_K[:2]
    tau = 0.4
    y = relaxcat.relaxed_bernoulli(bk.asarray(LOGITS), tau, noise=bk.asarray(g[0] - g[1]))
    pair = np.stack([LOGITS, np.zeros_like(LOGITS)], -1)
    gs = relaxcat.gumbel_softmax(bk.asarray(pair), tau, noise=bk.asarray(np.stack(list(g), -1)))
    np.testing.assert_allclose(bk.to_numpy(y), bk.to_numpy(gs)[..., 0], rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_relaxed_bernoulli_seed_equals_documented_noise(bk, dtype):
    x = bk.asarray(LOGITS, dtype)
    g = relaxcat.gumbel_noise(x, shape=(2, B, N), rng=4)
    direct = relaxcat.relaxed_bernoulli(x, 0.5, rng=4)
    via = relaxcat.relaxed_bernoulli(x, 0.5, noise=g[0, ...] - g[1, ...])
    np.testing.assert_array_equal(bk.to_numpy(direct), bk.to_numpy(via))
    assert not np.array_equal(
        bk.to_numpy(direct), bk.to_numpy(relaxcat.relaxed_bernoulli(x, 0.5, rng=5))
    )


def test_relaxed_bernoulli_hard_is_exact_and_matches_threshold(bk):
    hard = bk.to_numpy(
        relaxcat.relaxed_bernoulli(bk.asarray(LOGITS), 0.5, hard=True, noise=bk.asarray(LOGISTIC))
    )
    np.testing.assert_array_equal(hard, (LOGITS + LOGISTIC > 0).astype(float))
    soft = bk.to_numpy(
        relaxcat.relaxed_bernoulli(bk.asarray(LOGITS), 0.5, noise=bk.asarray(LOGISTIC))
    )
    np.testing.assert_array_equal(hard, (soft > 0.5).astype(float))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tau", [1e-12, 1e-4, 1.0, 1e30])
def test_relaxed_bernoulli_extremes_are_finite(bk, dtype, tau):
    big = 3e38 if dtype == "float32" else 1e300
    logits = np.array([[big, -big, 0.0, 1e30, -1e30], [np.inf, -np.inf, 5.0, -5.0, 0.0]] * 3)
    for hard in (False, True):
        y = bk.to_numpy(
            relaxcat.relaxed_bernoulli(bk.asarray(logits, dtype), tau, hard=hard, rng=0)
        )
        assert np.isfinite(y).all() and ((y >= 0) & (y <= 1)).all()
        assert (y[:, 0] == 1).all() and (y[:, 1] == 0).all()  # also the +-inf logits


def test_relaxed_bernoulli_zero_dim_and_tau_array(bk):
    y = relaxcat.relaxed_bernoulli(bk.asarray(0.3), 0.5, rng=0)
    assert tuple(y.shape) == ()
    taus = np.array([[0.1], [0.5], [1.0], [2.0], [5.0], [9.0]])
    got = relaxcat.relaxed_bernoulli(
        bk.asarray(LOGITS), bk.asarray(taus), noise=bk.asarray(LOGISTIC)
    )
    np.testing.assert_allclose(
        bk.to_numpy(got), special.expit((LOGITS + LOGISTIC) / taus), rtol=1e-13
    )


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_relaxed_bernoulli_half_precision(bk, dtype):
    x = bk.asarray(LOGITS, dtype)
    y = relaxcat.relaxed_bernoulli(x, 0.05, rng=0)
    bk.assert_like(y, x)
    assert np.isfinite(bk.to_numpy(y)).all()


# -- sample_categorical and gumbel_topk -----------------------------------------------------


def test_sample_categorical_shape_and_same_noise_as_hard_gumbel_softmax(bk):
    x = bk.asarray(MASKED, "float32")
    idx = relaxcat.sample_categorical(x, rng=3)
    assert tuple(idx.shape) == (B,)
    assert bk.lib.isdtype(idx.dtype, "integral") if bk.name == "array_api_strict" else True
    idx = bk.to_numpy(idx)
    assert np.issubdtype(idx.dtype, np.integer)
    hard = bk.to_numpy(relaxcat.gumbel_softmax(x, hard=True, rng=3))
    np.testing.assert_array_equal(idx, np.argmax(hard, -1))
    assert np.isfinite(MASKED[np.arange(B), idx]).all()  # never a masked category


def test_sample_categorical_axis(bk):
    x = bk.asarray(LOGITS)
    idx = bk.to_numpy(relaxcat.sample_categorical(x, axis=0, rng=3))
    assert idx.shape == (N,)
    g = bk.to_numpy(relaxcat.gumbel_noise(x, rng=3))
    np.testing.assert_array_equal(idx, np.argmax(LOGITS + g, axis=0))


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_exact_samplers_in_half_precision_use_float32_noise(bk, dtype):
    # Logits exactly representable in half precision: the same seed gives the same draws.
    half = bk.asarray(LOGITS, dtype)
    up = bk.asarray(bk.to_numpy(half).astype(np.float32), "float32")
    for f in (
        lambda x: relaxcat.sample_categorical(x, rng=4),
        lambda x: relaxcat.gumbel_topk(x, 3, rng=4),
    ):
        np.testing.assert_array_equal(bk.to_numpy(f(half)), bk.to_numpy(f(up)))


def test_gumbel_topk_is_the_top_k_of_perturbed_logits(bk):
    x = bk.asarray(MASKED)
    idx = bk.to_numpy(relaxcat.gumbel_topk(x, 3, rng=8))
    g = bk.to_numpy(relaxcat.gumbel_noise(x, rng=8))
    s = MASKED + g
    np.testing.assert_array_equal(idx, np.argsort(-s, -1, kind="stable")[:, :3])
    assert idx.shape == (B, 3)
    vals = np.take_along_axis(s, idx, -1)
    assert (np.diff(vals, axis=-1) < 0).all()  # distinct, decreasing
    assert np.isfinite(vals).all()  # masked categories are never drawn


def test_gumbel_topk_moves_the_k_axis_last(bk):
    x = bk.asarray(np.broadcast_to(LOGITS.T[:, None, :], (N, 2, B)).copy())
    idx = bk.to_numpy(relaxcat.gumbel_topk(x, 2, axis=0, rng=1))
    assert idx.shape == (2, B, 2)
    s = bk.to_numpy(x) + bk.to_numpy(relaxcat.gumbel_noise(x, rng=1))
    np.testing.assert_array_equal(idx, np.moveaxis(np.argsort(-s, 0, kind="stable")[:2], 0, -1))


def test_ties_go_to_the_first_index_on_every_backend(bk):
    # No public sampler lets a test choose the noise of gumbel_topk, so the ordering
    # helper it uses is checked directly, and through relaxed_topk(hard=True, noise=0).
    s = np.array(
        [[1.0, 3.0, 3.0, 0.0, 3.0], [2.0, 2.0, 2.0, 2.0, 2.0], [0.0, -np.inf, 5.0, -np.inf, 5.0]]
    )
    xp = relaxcat._backends.backend_of(bk.asarray(s)).xp
    order = bk.to_numpy(_distributions._descending_order(xp, bk.asarray(s), 1))
    np.testing.assert_array_equal(order, [[1, 2, 4, 0, 3], [0, 1, 2, 3, 4], [2, 4, 0, 1, 3]])
    hot = relaxcat.relaxed_topk(bk.asarray(s), 2, hard=True, noise=bk.asarray(np.zeros_like(s)))
    np.testing.assert_array_equal(
        bk.to_numpy(hot), [[0, 1, 1, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 1]]
    )


# -- relaxed_topk -----------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, N])  # k = 1: test_k_equal_one_is_gumbel_softmax
@pytest.mark.parametrize("tau", [0.2, 1.0, 4.0])
def test_successive_matches_naive_and_sums_to_k(bk, k, tau):
    y = bk.to_numpy(relaxcat.relaxed_topk(bk.asarray(LOGITS), k, tau, noise=bk.asarray(NOISE)))
    np.testing.assert_allclose(y, naive_successive(LOGITS + NOISE, k, tau), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.sum(-1), k, rtol=1e-12)
    assert (y >= 0).all()  # but not <= 1: at tau ~ 1 an entry can exceed 1 (see docstring)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("tau", [0.2, 1.0, 4.0])
def test_max_method_matches_naive(bk, k, tau):
    g = NOISE_K[:k]
    y = relaxcat.relaxed_topk(bk.asarray(MASKED), k, tau, method="max", noise=bk.asarray(g))
    best, chosen = naive_max(MASKED, g, k, tau)
    np.testing.assert_allclose(bk.to_numpy(y), best, rtol=1e-10, atol=1e-300)
    hard = relaxcat.relaxed_topk(
        bk.asarray(MASKED), k, tau, hard=True, method="max", noise=bk.asarray(g)
    )
    np.testing.assert_array_equal(bk.to_numpy(hard), chosen.astype(float))


def test_k_equal_one_is_gumbel_softmax(bk):
    x = bk.asarray(MASKED)
    gs = bk.to_numpy(relaxcat.gumbel_softmax(x, 0.3, noise=bk.asarray(NOISE)))
    for method, noise in (("successive", NOISE), ("max", NOISE[None])):
        y = relaxcat.relaxed_topk(x, 1, 0.3, method=method, noise=bk.asarray(noise))
        np.testing.assert_allclose(bk.to_numpy(y), gs, rtol=1e-14)


@pytest.mark.parametrize("method", ["successive", "max"])
def test_hard_topk_is_exactly_k_hot(bk, method):
    x = bk.asarray(LOGITS, "float32")
    for seed in range(20):  # one shape: compiled once on JAX
        y = bk.to_numpy(relaxcat.relaxed_topk(x, 3, 0.5, hard=True, method=method, rng=seed))
        assert set(np.unique(y).tolist()) <= {0.0, 1.0}
        np.testing.assert_array_equal(y.sum(-1), np.full(B, 3.0))


def test_successive_hard_is_the_gumbel_topk_set_of_the_same_noise(bk):
    x = bk.asarray(MASKED)
    hot = bk.to_numpy(relaxcat.relaxed_topk(x, 2, 0.5, hard=True, rng=6))
    idx = bk.to_numpy(relaxcat.gumbel_topk(x, 2, rng=6))  # same seed, same noise
    expected = np.zeros((B, N))
    np.put_along_axis(expected, idx, 1.0, axis=-1)
    np.testing.assert_array_equal(hot, expected)


@pytest.mark.parametrize("method", ["successive", "max"])
def test_topk_seed_equals_documented_noise(bk, method):
    x = bk.asarray(LOGITS, "float32")
    shape = (B, N) if method == "successive" else (3, B, N)
    noise = relaxcat.gumbel_noise(x, shape=shape, rng=12)
    direct = relaxcat.relaxed_topk(x, 3, 0.5, method=method, rng=12)
    via = relaxcat.relaxed_topk(x, 3, 0.5, method=method, noise=noise)
    np.testing.assert_array_equal(bk.to_numpy(direct), bk.to_numpy(via))


def test_successive_approaches_the_k_hot_at_low_temperature(bk):
    y = bk.to_numpy(relaxcat.relaxed_topk(bk.asarray(LOGITS), 3, 1e-6, noise=bk.asarray(NOISE)))
    np.testing.assert_allclose(y, top_k_hot(LOGITS + NOISE, 3), atol=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tau", [1e-12, 1e-4, 1.0, 1e6])
@pytest.mark.parametrize("method", ["successive", "max"])
def test_topk_extremes_stay_finite_and_exact(bk, dtype, tau, method):
    big = 1e30
    logits = np.array(
        [
            [big, -big, 0.0, 5.0, big / 2],
            [-big, -big, -big, -big, -big],
            [0.0, -np.inf, big, -np.inf, 1.0],
            [
                3e38 if dtype == "float32" else 1e300,
                0.0,
                -3e38 if dtype == "float32" else -1e300,
                1.0,
                2.0,
            ],
            [0.0, 1e-30, 0.0, -1e-30, 0.0],
            [1.0, 2.0, 3.0, 4.0, 5.0],
        ]
    )
    x = bk.asarray(logits, dtype)
    y = bk.to_numpy(relaxcat.relaxed_topk(x, 3, tau, method=method, rng=0))
    assert np.isfinite(y).all() and (y >= 0).all()
    if method == "max" or tau <= 1e-4:
        assert (y <= 1).all()
    assert (y[2, [1, 3]] == 0).all()  # masked
    if method == "successive":
        np.testing.assert_allclose(y.sum(-1), 3, rtol=1e-5)
    if tau <= 1e-4:  # the one-hot limit: the three largest (1e30-scale gaps)
        # "max": a later draw keeps exp(-gap / tau) on an earlier pick whose conditioned
        # value is a gap below its own, O(1) in law: at tau = 1e-4 that can be ~1e-15.
        atol = 0.0 if method == "successive" or tau < 1e-6 else 1e-6
        np.testing.assert_allclose(y[0], [1, 0, 0, 1, 1], rtol=0, atol=atol)
        np.testing.assert_allclose(y[2], [1, 0, 1, 0, 1], rtol=0, atol=atol)
    hard = bk.to_numpy(relaxcat.relaxed_topk(x, 3, tau, hard=True, method=method, rng=0))
    np.testing.assert_array_equal(hard.sum(-1), 3)
    np.testing.assert_array_equal(hard[0], [1, 0, 0, 1, 1])
    np.testing.assert_array_equal(hard[2], [1, 0, 1, 0, 1])


def test_topk_axis_and_tau_array(bk):
    taus = np.array([[0.1, 0.5, 1.0, 2.0, 5.0, 9.0]])  # categories on axis 0
    y = relaxcat.relaxed_topk(
        bk.asarray(LOGITS.T), 2, bk.asarray(taus), axis=0, noise=bk.asarray(NOISE.T)
    )
    ref = np.stack([naive_successive((LOGITS + NOISE)[i], 2, taus[0, i]) for i in range(B)], axis=1)
    np.testing.assert_allclose(bk.to_numpy(y), ref, rtol=1e-10)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("method", ["successive", "max"])
def test_topk_half_precision(bk, dtype, method):
    x = bk.asarray(LOGITS, dtype)
    for hard in (False, True):
        y = relaxcat.relaxed_topk(x, 2, 0.05, hard=hard, method=method, rng=0)
        bk.assert_like(y, x)
        assert np.isfinite(bk.to_numpy(y)).all()
