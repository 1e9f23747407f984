"""Logit-space relaxed Bernoulli, its CDF, and Hard Concrete gates, on every backend.

Statistical tests use fixed seeds; each states its power and has a partner showing that
the same sample rejects a slightly wrong null, so the test can fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import relaxcat

P_MIN = 1e-4
LIMITS = (-0.1, 1.1)
T0 = math.log(0.1 / 1.1)  # log(-low / high)
T1 = math.log(1.1 / 0.1)  # log((1 - low) / (high - 1))


def p_zero(logits, tau, t0=T0):
    return special.expit(tau * t0 - logits)


def p_one(logits, tau, t1=T1):
    return special.expit(logits - tau * t1)


def grad_np(bk, f, x):
    """Gradient of sum(f(x)) with respect to x (NumPy in, NumPy out)."""
    if bk.name == "torch":
        t = bk.asarray(x).requires_grad_(True)
        f(t).sum().backward()
        return bk.to_numpy(t.grad)
    return bk.to_numpy(bk.jax.grad(lambda a: f(a).sum())(bk.asarray(x)))


# -- logit-space relaxed Bernoulli ------------------------------------------------------


@pytest.mark.parametrize("tau", [0.1, 0.7, 2.0])
def test_sigmoid_of_logit_sample_is_the_relaxed_bernoulli_sample(bk, tau):
    logits = bk.asarray(np.linspace(-3, 3, 24).reshape(4, 6))
    z = relaxcat.logit_relaxed_bernoulli(logits, tau, rng=bk.rng(3))
    y = relaxcat.relaxed_bernoulli(logits, tau, rng=bk.rng(3))
    bk.assert_like(z, logits)
    np.testing.assert_allclose(special.expit(bk.to_numpy(z)), bk.to_numpy(y), rtol=1e-12)


def test_logit_sample_with_explicit_noise(bk):
    logits = np.array([[-1.0, 0.0, 2.5]])
    noise = np.array([[0.3, -2.0, 1.0]])
    z = relaxcat.logit_relaxed_bernoulli(bk.asarray(logits), 0.5, noise=bk.asarray(noise))
    np.testing.assert_allclose(bk.to_numpy(z), (logits + noise) / 0.5, rtol=1e-14)


@pytest.mark.parametrize("tau", [0.05, 0.5, 3.0])
def test_logit_log_prob_is_the_logistic_density(bk, tau):
    rng = np.random.default_rng(0)
    x, logits = rng.normal(scale=20, size=(3, 50)), rng.normal(size=(1, 50))
    got = relaxcat.logit_relaxed_bernoulli_log_prob(bk.asarray(x), bk.asarray(logits), tau)
    expected = stats.logistic.logpdf(x, loc=logits / tau, scale=1 / tau)
    np.testing.assert_allclose(bk.to_numpy(got), expected, rtol=1e-10, atol=1e-10)


def test_logit_log_prob_plus_jacobian_is_the_relaxed_bernoulli_density(bk):
    rng = np.random.default_rng(1)
    x, logits = rng.normal(scale=3, size=40), rng.normal(size=40)
    lp = relaxcat.logit_relaxed_bernoulli_log_prob(bk.asarray(x), bk.asarray(logits), 0.4)
    y = special.expit(x)
    rb = relaxcat.relaxed_bernoulli_log_prob(bk.asarray(y), bk.asarray(logits), 0.4)
    jac = np.logaddexp(0, x) + np.logaddexp(0, -x)  # -log(y (1 - y))
    np.testing.assert_allclose(bk.to_numpy(lp) + jac, bk.to_numpy(rb), rtol=1e-9)


@pytest.mark.parametrize("tau", [0.1, 0.01])
def test_logit_log_prob_of_own_samples_is_finite_in_float32(bk, tau):
    # The relaxed sample rounds to 0 or 1 for ~16% (tau 0.1) and ~48% (tau 0.01) of these
    # draws in float32, where its density is infinite; the logit sample never does.
    logits = bk.asarray(np.zeros(20_000), "float32")
    z = relaxcat.logit_relaxed_bernoulli(logits, tau, rng=bk.rng(7))
    y = bk.to_numpy(relaxcat.relaxed_bernoulli(logits, tau, rng=bk.rng(7)))
    assert ((y == 0) | (y == 1)).mean() > 0.1
    lp = bk.to_numpy(relaxcat.logit_relaxed_bernoulli_log_prob(z, logits, tau))
    assert lp.dtype == np.float32
    assert np.isfinite(lp).all()


def test_logit_log_prob_at_infinities(bk):
    x = bk.asarray([-np.inf, np.inf, 0.0, np.inf, -np.inf])
    logits = bk.asarray([0.0, 0.0, np.inf, np.inf, -np.inf])
    lp = bk.to_numpy(relaxcat.logit_relaxed_bernoulli_log_prob(x, logits, 0.5))
    np.testing.assert_array_equal(lp, [-np.inf, -np.inf, -np.inf, np.inf, np.inf])


# -- CDF --------------------------------------------------------------------------------


@pytest.mark.parametrize(("logit", "tau"), [(0.0, 1.0), (1.3, 0.4), (-2.0, 2.5)])
def test_cdf_is_the_integral_of_the_density(bk, logit, tau):
    # Integrated in logit space, where the density is smooth: z = logit(y), dy = y (1 - y) dz.
    for y in (0.05, 0.3, 0.5, 0.9):
        z = np.linspace((logit - 40) / tau, special.logit(y), 40_001)
        v = special.expit(z)
        lp = relaxcat.relaxed_bernoulli_log_prob(bk.asarray(v), bk.asarray([logit]), tau)
        mass = integrate.simpson(np.exp(bk.to_numpy(lp)) * v * (1 - v), x=z)
        got = relaxcat.relaxed_bernoulli_cdf(bk.asarray([y]), bk.asarray([logit]), tau)
        assert bk.to_numpy(got)[0] == pytest.approx(mass, abs=1e-7)


def test_cdf_matches_sample_frequencies(bk):
    # Kolmogorov-Smirnov with 20,000 draws: rejects a CDF off by 0.015 anywhere with power
    # > 0.999 (critical distance 0.0137 at level 1e-4); the partner (logit shifted by 0.1,
    # a distance of ~0.02) is rejected.
    logits = bk.asarray(np.full(20_000, 0.7))
    y = np.sort(bk.to_numpy(relaxcat.relaxed_bernoulli(logits, 0.6, rng=bk.rng(11))))

    def cdf(v, logit):
        return relaxcat.relaxed_bernoulli_cdf(np.asarray(v), np.array([logit]), 0.6)

    assert stats.kstest(y, lambda v: cdf(v, 0.7)).pvalue > P_MIN
    assert stats.kstest(y, lambda v: cdf(v, 0.8)).pvalue < P_MIN


def test_cdf_edges_and_point_masses(bk):
    y = bk.asarray([-0.5, 0.0, 1.0, 2.0, 0.0, 0.5, 0.5, 1.0])
    logits = bk.asarray([0.3, 0.3, 0.3, 0.3, -np.inf, -np.inf, np.inf, np.inf])
    got = bk.to_numpy(relaxcat.relaxed_bernoulli_cdf(y, logits, 0.5))
    np.testing.assert_array_equal(got, [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0])


def test_cdf_with_array_tau_broadcasts(bk):
    tau = bk.asarray([[0.5], [2.0]])
    got = relaxcat.relaxed_bernoulli_cdf(bk.asarray([0.2, 0.7]), bk.asarray([0.0, 1.0]), tau)
    y, lg, t = np.array([0.2, 0.7]), np.array([0.0, 1.0]), np.array([[0.5], [2.0]])
    expected = special.expit(t * special.logit(y) - lg)
    np.testing.assert_allclose(bk.to_numpy(got), expected, rtol=1e-12)


# -- Hard Concrete ----------------------------------------------------------------------


@pytest.mark.parametrize(("logit", "tau"), [(0.0, 2 / 3), (1.5, 0.5), (-1.0, 1.5)])
def test_hard_concrete_atoms_match_closed_forms(bk, logit, tau):
    # 200,000 draws: the standard error of a frequency is at most 0.0011. A two-sided
    # binomial test at level 1e-4 (|z| < 3.9) rejects an atom off by 0.01 (z > 8.9) with
    # power > 0.999; the partner (closed form + 0.01) is rejected.
    n = 200_000
    z = bk.to_numpy(relaxcat.hard_concrete(bk.asarray(np.full(n, logit)), tau, rng=bk.rng(5)))
    assert ((z >= 0) & (z <= 1)).all()
    for count, p in [((z == 0).sum(), p_zero(logit, tau)), ((z == 1).sum(), p_one(logit, tau))]:
        assert stats.binomtest(int(count), n, p).pvalue > P_MIN
        assert stats.binomtest(int(count), n, p + 0.01).pvalue < P_MIN


def test_hard_concrete_l0_is_one_minus_p_zero(bk):
    logits = np.linspace(-6, 6, 13)
    for tau in (0.2, 2 / 3, 1.7):
        l0 = bk.to_numpy(relaxcat.hard_concrete_l0(bk.asarray(logits), tau))
        np.testing.assert_allclose(l0, 1 - p_zero(logits, tau), rtol=1e-12)
        lp0 = relaxcat.hard_concrete_log_prob(bk.asarray(np.zeros(13)), bk.asarray(logits), tau)
        np.testing.assert_allclose(l0, 1 - np.exp(bk.to_numpy(lp0)), rtol=1e-10)


def test_hard_concrete_l0_other_limits(bk):
    l0 = bk.to_numpy(relaxcat.hard_concrete_l0(bk.asarray([0.5]), 0.5, limits=(-0.5, 1.2)))
    np.testing.assert_allclose(l0, 1 - p_zero(0.5, 0.5, math.log(0.5 / 1.2)), rtol=1e-12)


def test_hard_concrete_is_the_clamped_stretch_of_the_relaxed_bernoulli(bk):
    logits = bk.asarray(np.linspace(-4, 4, 400))
    z = bk.to_numpy(relaxcat.hard_concrete(logits, 0.5, rng=bk.rng(2)))
    s = bk.to_numpy(relaxcat.relaxed_bernoulli(logits, 0.5, rng=bk.rng(2)))
    np.testing.assert_allclose(z, np.clip(-0.1 + 1.2 * s, 0, 1), atol=1e-12)
    assert (z == 0).any() and (z == 1).any() and ((z > 0) & (z < 1)).any()


def test_hard_concrete_keeps_type_dtype_and_shape(bk):
    for dtype in ("float32", "float64"):
        logits = bk.asarray(np.zeros((3, 4)), dtype)
        bk.assert_like(relaxcat.hard_concrete(logits, rng=bk.rng(0)), logits)
        bk.assert_like(relaxcat.hard_concrete_l0(logits), logits)


@pytest.mark.backends("torch", "jax")
def test_hard_concrete_gradient_is_zero_on_clamped_gates_and_positive_inside(bk):
    logits = np.linspace(-3, 3, 300)
    noise = np.random.default_rng(4).logistic(size=300)

    def f(x):
        return relaxcat.hard_concrete(x, 0.5, noise=bk.asarray(noise))

    g = grad_np(bk, f, logits)
    z = bk.to_numpy(f(bk.asarray(logits)))
    clamped = (z == 0) | (z == 1)
    assert clamped.sum() > 50 and (~clamped).sum() > 50
    assert (g[clamped] == 0).all()
    assert (g[~clamped] > 0).all()
    s = special.expit((logits + noise) / 0.5)
    np.testing.assert_allclose(g[~clamped], (1.2 * s * (1 - s) / 0.5)[~clamped], rtol=1e-9)


@pytest.mark.backends("torch", "jax")
def test_hard_concrete_l0_gradient(bk):
    logits = np.array([-2.0, 0.0, 3.0])
    g = grad_np(bk, lambda x: relaxcat.hard_concrete_l0(x, 2 / 3), logits)
    p = 1 - p_zero(logits, 2 / 3)
    np.testing.assert_allclose(g, p * (1 - p), rtol=1e-10)


@pytest.mark.parametrize(("logit", "tau"), [(0.0, 2 / 3), (2.0, 0.3), (-1.0, 2.0)])
def test_hard_concrete_law_has_total_mass_one(bk, logit, tau):
    atoms = relaxcat.hard_concrete_log_prob(bk.asarray([0.0, 1.0]), bk.asarray([logit]), tau)
    np.testing.assert_allclose(
        np.exp(bk.to_numpy(atoms)), [p_zero(logit, tau), p_one(logit, tau)], rtol=1e-12
    )
    # The interior density is bounded (the stretch keeps s away from 0 and 1): Simpson's
    # rule on a fine grid of the open interval.
    z = np.linspace(1e-12, 1 - 1e-12, 40_001)
    lp = relaxcat.hard_concrete_log_prob(bk.asarray(z), bk.asarray([logit]), tau)
    inside = integrate.simpson(np.exp(bk.to_numpy(lp)), x=z)
    assert np.exp(bk.to_numpy(atoms)).sum() + inside == pytest.approx(1.0, abs=1e-6)


def test_hard_concrete_interior_density_matches_sample_histogram(bk):
    # 100,000 draws: the interior's CDF, F(b) - F(0) for b in (0, 1), is checked by a
    # chi-square test on 10 bins (level 1e-4); the partner, a logit off by 0.15, is rejected.
    logits = bk.asarray(np.full(100_000, 0.3))
    z = bk.to_numpy(relaxcat.hard_concrete(logits, 0.5, rng=bk.rng(9)))
    edges = np.linspace(0, 1, 11)
    inner = z[(z > 0) & (z < 1)]
    counts = np.histogram(inner, edges)[0]

    def expected(logit):
        s = (edges - LIMITS[0]) / (LIMITS[1] - LIMITS[0])
        cdf = special.expit(0.5 * special.logit(s) - logit)
        probs = np.diff(cdf)
        return probs / probs.sum() * counts.sum()

    assert stats.chisquare(counts, expected(0.3)).pvalue > P_MIN
    assert stats.chisquare(counts, expected(0.45)).pvalue < P_MIN


def test_hard_concrete_log_prob_of_own_samples_is_finite_in_float32(bk):
    logits = bk.asarray(np.linspace(-3, 3, 20_000), "float32")
    for tau in (0.01, 0.1, 2 / 3):
        z = relaxcat.hard_concrete(logits, tau, rng=bk.rng(1))
        lp = bk.to_numpy(relaxcat.hard_concrete_log_prob(z, logits, tau))
        assert np.isfinite(lp).all()


def test_hard_concrete_log_prob_outside_and_point_masses(bk):
    z = bk.asarray([-0.1, 1.5, 0.0, 1.0, 0.5])
    lp = bk.to_numpy(relaxcat.hard_concrete_log_prob(z, bk.asarray([0.0]), 0.5))
    assert lp[0] == -np.inf and lp[1] == -np.inf and np.isfinite(lp[2:]).all()
    z = bk.asarray([1.0, 0.0, 0.5, 0.0])
    logits = bk.asarray([np.inf, np.inf, np.inf, -np.inf])
    np.testing.assert_array_equal(
        bk.to_numpy(relaxcat.hard_concrete_log_prob(z, logits, 0.5)), [0.0, -np.inf, -np.inf, 0.0]
    )
    g = bk.to_numpy(relaxcat.hard_concrete(logits, 0.5, rng=bk.rng(0)))
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0, 0.0])


def test_hard_concrete_with_array_tau(bk):
    tau = bk.asarray([[0.3], [1.0]])
    z = relaxcat.hard_concrete(bk.asarray(np.zeros(5)), tau, rng=bk.rng(0))
    assert tuple(z.shape) == (2, 5)
    l0 = bk.to_numpy(relaxcat.hard_concrete_l0(bk.asarray(np.zeros(5)), tau))
    np.testing.assert_allclose(
        l0, np.broadcast_to(1 - p_zero(0.0, np.array([[0.3], [1.0]])), (2, 5))
    )


@pytest.mark.parametrize("limits", [(0.0, 1.1), (-0.1, 1.0), (0.1, 0.9), (-np.inf, 2.0)])
def test_bad_limits_raise(bk, limits):
    with pytest.raises(ValueError, match="low < 0 and high > 1"):
        relaxcat.hard_concrete(bk.asarray([0.0]), limits=limits, rng=bk.rng(0))


def test_limits_must_be_a_pair(bk):
    with pytest.raises(TypeError, match="pair of numbers"):
        relaxcat.hard_concrete_l0(bk.asarray([0.0]), limits=1.1)  # type: ignore[arg-type]


@pytest.mark.host_values
def test_nan_logits_raise_where_readable(bk):
    with pytest.raises(ValueError, match="NaN"):
        relaxcat.hard_concrete(bk.asarray([np.nan]), rng=bk.rng(0))
