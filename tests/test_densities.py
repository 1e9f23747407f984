"""Exact densities: Concrete, ExpConcrete and relaxed Bernoulli, on every backend.

The references here are written independently of relaxcat's log-space formulas: the
Concrete and ExpConcrete densities in Maddison et al.'s product form (powers and ratios in
float64, on inputs where that does not overflow), the relaxed Bernoulli through SciPy's
logistic distribution and a change of variables, and, on torch, ``torch.distributions``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

import relaxcat
from tests.conftest import HALF

HALF_DTYPES = [pytest.param(d, marks=pytest.mark.backends(*b)) for d, b in HALF.items()]

RNG = np.random.default_rng(31)
TAUS = (0.3, 1.0, 2.5)
# Few distinct shapes: on JAX every new shape compiles every primitive again (seconds).
B, N = 6, 5


def simplex_points(shape, rng, concentration=2.0):
    """Interior points of the simplex along the last axis."""
    return rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])


def product_form(y, logits, tau):
    """log of (n-1)! tau^(n-1) prod(pi y^(-tau-1)) / (sum pi y^(-tau))^n, in float64."""
    n = y.shape[-1]
    pi = special.softmax(logits, axis=-1)
    num = math.factorial(n - 1) * tau ** (n - 1) * np.prod(pi * y ** (-tau - 1), axis=-1)
    den = np.sum(pi * y ** (-tau), axis=-1) ** n
    return np.log(num / den)


def exp_product_form(x, logits, tau):
    """The ExpConcrete density (n-1)! tau^(n-1) prod(pi e^(-tau x)) / (sum pi e^(-tau x))^n."""
    n = x.shape[-1]
    pi = special.softmax(logits, axis=-1)
    w = pi * np.exp(-tau * x)
    return np.log(math.factorial(n - 1) * tau ** (n - 1) * np.prod(w, -1) / np.sum(w, -1) ** n)


def binary_closed_form(y, logits, tau):
    """logit(Y) is logistic with location logits/tau and scale 1/tau (SciPy), then dz/dy."""
    z = special.logit(y)
    return stats.logistic.logpdf(z, loc=logits / tau, scale=1 / tau) - np.log(y * (1 - y))


# -- closed forms -----------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, N])
@pytest.mark.parametrize("tau", TAUS)
def test_concrete_matches_product_form(bk, n, tau):
    logits = RNG.normal(size=(B, n))
    y = simplex_points((B, n), RNG)
    got = bk.to_numpy(relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), tau))
    np.testing.assert_allclose(got, product_form(y, logits, tau), rtol=1e-10)


@pytest.mark.parametrize("n", [2, N])
@pytest.mark.parametrize("tau", TAUS)
def test_exp_concrete_matches_product_form(bk, n, tau):
    logits = RNG.normal(size=(B, n))
    x = np.log(simplex_points((B, n), RNG))
    got = bk.to_numpy(relaxcat.exp_concrete_log_prob(bk.asarray(x), bk.asarray(logits), tau))
    np.testing.assert_allclose(got, exp_product_form(x, logits, tau), rtol=1e-10)


@pytest.mark.parametrize("tau", TAUS)
def test_relaxed_bernoulli_log_prob_matches_logistic(bk, tau):
    y = RNG.uniform(0.001, 0.999, size=(B, N))
    logits = RNG.normal(size=(B, N)) * 3
    got = relaxcat.relaxed_bernoulli_log_prob(bk.asarray(y), bk.asarray(logits), tau)
    np.testing.assert_allclose(bk.to_numpy(got), binary_closed_form(y, logits, tau), rtol=1e-10)


def test_identity_concrete_is_exp_concrete_minus_sum_log_y(bk):
    # log p_Concrete(y) = log p_ExpConcrete(log y) - sum_k log y_k
    logits = RNG.normal(size=(B, N)) * 2
    y = simplex_points((B, N), RNG, 0.5)
    taus = np.array([[0.1], [0.5], [1.0], [2.0], [7.0], [30.0]])
    lp = relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), bk.asarray(taus))
    lpe = relaxcat.exp_concrete_log_prob(
        bk.asarray(np.log(y)), bk.asarray(logits), bk.asarray(taus)
    )
    np.testing.assert_allclose(
        bk.to_numpy(lp), bk.to_numpy(lpe) - np.log(y).sum(-1), rtol=1e-12, atol=1e-10
    )


@pytest.mark.parametrize("tau", TAUS)
def test_two_category_concrete_is_the_relaxed_bernoulli(bk, tau):
    y1 = RNG.uniform(0.01, 0.99, size=B)
    l1, l2 = 0.7, -0.4
    logits = np.broadcast_to([l1, l2], (B, 2))
    y = np.stack([y1, 1 - y1], -1)
    cat = bk.to_numpy(relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), tau))
    bern = relaxcat.relaxed_bernoulli_log_prob(bk.asarray(y1), bk.asarray(np.full(B, l1 - l2)), tau)
    np.testing.assert_allclose(cat, bk.to_numpy(bern), rtol=1e-10)


# -- normalisation by quadrature ----------------------------------------------------------


def test_two_category_concrete_integrates_to_one(bk):
    # y1 = sigmoid(t), y2 = sigmoid(-t) (both accurate); dy1/dt = y1 * y2.
    cases = [(0.4, 0.0, 0.0), (0.4, 2.0, -1.0), (1.0, -1.5, 0.5), (3.0, 1.0, 0.0)]
    t = np.linspace(-150, 150, 30001)
    y = np.stack([special.expit(t), special.expit(-t)], -1)
    taus = np.array([[[c[0]]] for c in cases])
    logits = np.array([[c[1:]] for c in cases])
    lp = relaxcat.concrete_log_prob(
        bk.asarray(np.broadcast_to(y, (len(cases), *y.shape))),
        bk.asarray(np.broadcast_to(logits, (len(cases), t.size, 2))),
        bk.asarray(taus),
    )
    integrand = np.exp(bk.to_numpy(lp)) * y[:, 0] * y[:, 1]
    np.testing.assert_allclose(integrate.simpson(integrand, x=t, axis=-1), 1.0, rtol=1e-8)


@pytest.mark.parametrize("tau", [0.4, 1.0, 3.0])
def test_relaxed_bernoulli_density_integrates_to_one(bk, tau):
    # The density has integrable singularities at 0 and 1 for tau < 1. Integrate y in
    # (0, 1/2] on the logit scale (y = sigmoid(t), t <= 0, represented exactly), and use
    # p(1 - y; l) = p(y; -l) for the other half.
    logits = np.array([[-2.0], [0.0], [1.3]])
    t = np.linspace(-200, 0, 40001)
    y = special.expit(t)
    lp = relaxcat.relaxed_bernoulli_log_prob(
        bk.asarray(np.broadcast_to(y, (6, t.size))), bk.asarray(np.vstack([logits, -logits])), tau
    )
    integrand = np.exp(bk.to_numpy(lp)) * y * special.expit(-t)
    halves = integrate.simpson(integrand, x=t, axis=-1)
    np.testing.assert_allclose(halves[:3] + halves[3:], 1.0, rtol=1e-8)


# -- boundaries, masks, underflow: never NaN -------------------------------------------


def test_concrete_on_the_boundary_is_the_limit(bk):
    logits = np.array([0.3, -0.2, 1.0])
    la = logits - special.logsumexp(logits)
    y = np.array(
        [
            [1.0, 0.0, 0.0],  # m=2 zeros, n-m=1: 2 > 1*tau -> +inf (tau=0.5)
            [0.5, 0.5, 0.0],  # m=1, n-m=2: 1 > 2*0.4 -> +inf
            [0.3, 0.7, 0.0],  # tau=1: 1 < 2 -> -inf
            [0.2, 0.8, 0.0],  # tau=0.5: 1 == 2*0.5: finite limit
        ]
    )
    taus = np.array([[0.5], [0.4], [1.0], [0.5]])
    got = bk.to_numpy(
        relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), bk.asarray(taus))
    )
    assert got[0] == np.inf and got[1] == np.inf and got[2] == -np.inf
    # Finite limit: approach along y_2 = eps (the others scaled by 1 - eps); the next
    # term of the expansion is of order eps**tau.
    eps = 1e-40
    near = np.array([0.2, 0.8, 0.0]) * (1 - eps) + np.array([0, 0, eps])
    np.testing.assert_allclose(got[3], product_form(near, logits, 0.5), rtol=1e-6)
    # And the n = 2, tau = 1 case in closed form: p(y1 = 0) = pi_2 / pi_1.
    two = relaxcat.concrete_log_prob(bk.asarray([0.0, 1.0]), bk.asarray(logits[:2]), 1.0)
    np.testing.assert_allclose(bk.to_numpy(two), la[1] - la[0], rtol=1e-12)


def test_concrete_outside_the_support_is_minus_inf(bk):
    logits = np.array([[0.0, -np.inf, 1.0]] * 3)
    y = np.array([[0.5, 0.1, 0.4], [1.2, 0.0, -0.2], [0.5, 0.0, 0.5]])
    got = bk.to_numpy(relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), 0.7))
    assert got[0] == -np.inf and got[1] == -np.inf
    assert np.isfinite(got[2])


def test_masked_categories_are_left_out_of_the_density(bk):
    # With a masked category, the distribution is the Concrete of the other categories.
    logits = np.array([[0.4, -np.inf, -1.0, 0.2], [-np.inf, 1.0, -np.inf, 0.0]])
    y = np.array([[0.2, 0.0, 0.5, 0.3], [0.0, 0.6, 0.0, 0.4]])
    keep = [[0, 2, 3], [1, 3]]
    for tau in (0.3, 1.7):
        got = bk.to_numpy(relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), tau))
        gote = bk.to_numpy(
            relaxcat.exp_concrete_log_prob(
                bk.asarray(np.log(np.where(y > 0, y, 1.0)) + np.where(y > 0, 0, -np.inf)),
                bk.asarray(logits),
                tau,
            )
        )
        for row, cols in enumerate(keep):
            ref = product_form(y[row, cols], logits[row, cols], tau)
            np.testing.assert_allclose(got[row], ref, rtol=1e-10)
            refe = exp_product_form(np.log(y[row, cols]), logits[row, cols], tau)
            np.testing.assert_allclose(gote[row], refe, rtol=1e-10)


def test_exp_concrete_is_finite_where_log_y_is_finite_at_low_temperature(bk):
    # tau = 1e-4 with 4096 categories: y underflows to exact zeros, log y does not.
    n, tau = 4096, 1e-4
    logits = np.random.default_rng(3).normal(size=(4, n))  # the shape test_samplers uses
    log_y = relaxcat.log_gumbel_softmax(bk.asarray(logits), tau, rng=5)
    lpe = bk.to_numpy(relaxcat.exp_concrete_log_prob(log_y, bk.asarray(logits), tau))
    assert np.isfinite(lpe).all()
    y = relaxcat.gumbel_softmax(bk.asarray(logits), tau, rng=5)
    lp = bk.to_numpy(relaxcat.concrete_log_prob(y, bk.asarray(logits), tau))
    assert not np.isnan(lp).any()  # boundary samples: +-inf, never NaN
    assert (bk.to_numpy(y) == 0).any()


def test_exp_concrete_at_minus_inf_is_minus_inf(bk):
    logits = np.zeros((2, 3))
    log_y = np.array([[0.0, -np.inf, -np.inf], [-0.1, 0.5, -3.0]])
    got = bk.to_numpy(relaxcat.exp_concrete_log_prob(bk.asarray(log_y), bk.asarray(logits), 0.5))
    assert got[0] == -np.inf and got[1] == -np.inf  # boundary; log y > 0 is outside


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_densities_at_extreme_logits_and_temperatures_are_never_nan(bk, dtype):
    big = 1e30
    logits = np.array([[big, -big, 0.0], [-big, -big, 5.0], [0.0, -np.inf, big]])
    y = np.array([[1.0, 0.0, 0.0], [0.3, 0.3, 0.4], [0.5, 0.0, 0.5]])
    for tau in (1e-12, 1e-4, 1.0, 1e6):
        lp = relaxcat.concrete_log_prob(bk.asarray(y, dtype), bk.asarray(logits, dtype), tau)
        assert not np.isnan(bk.to_numpy(lp)).any(), tau
        x = np.log(np.where(y > 0, y, 1.0)) + np.where(y > 0, 0.0, -np.inf)
        lpe = relaxcat.exp_concrete_log_prob(bk.asarray(x, dtype), bk.asarray(logits, dtype), tau)
        assert not np.isnan(bk.to_numpy(lpe)).any(), tau
        yb = np.array([0.0, 1e-30, 0.5, 1.0 - 1e-7, 1.0])
        lb = np.array([big, -big, 0.0, np.inf, -np.inf])
        lpb = relaxcat.relaxed_bernoulli_log_prob(
            bk.asarray(yb, dtype)[:, None], bk.asarray(lb, dtype), tau
        )
        assert not np.isnan(bk.to_numpy(lpb)).any(), tau


def test_relaxed_bernoulli_log_prob_at_the_boundaries(bk):
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, -0.1, 1.1])
    taus = np.array([0.5, 0.5, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    logits = np.full(8, 0.8)
    got = bk.to_numpy(
        relaxcat.relaxed_bernoulli_log_prob(bk.asarray(y), bk.asarray(logits), bk.asarray(taus))
    )
    expected = [np.inf, np.inf, -np.inf, -np.inf, -0.8, 0.8, -np.inf, -np.inf]
    np.testing.assert_array_equal(got, expected)
    # tau = 1: the limit at 0 is -l, at 1 it is l (closed form near the boundary agrees)
    near = binary_closed_form(np.array([1e-12, 1 - 1e-12]), 0.8, 1.0)
    np.testing.assert_allclose(near, [-0.8, 0.8], atol=1e-6)


def test_relaxed_bernoulli_log_prob_with_infinite_logits_is_a_point_mass(bk):
    y = np.array([1.0, 0.5, 0.0, 0.5])
    logits = np.array([np.inf, np.inf, -np.inf, -np.inf])
    got = bk.to_numpy(relaxcat.relaxed_bernoulli_log_prob(bk.asarray(y), bk.asarray(logits), 0.5))
    np.testing.assert_array_equal(got, [np.inf, -np.inf, np.inf, -np.inf])


# -- shapes, broadcasting, axes, dtypes -------------------------------------------------


def test_densities_broadcast_samples_against_logits(bk):
    logits = RNG.normal(size=(4, 3))
    y = simplex_points((5, 4, 3), RNG)
    got = bk.to_numpy(relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), 0.6))
    assert got.shape == (5, 4)
    np.testing.assert_allclose(got, product_form(y, logits, 0.6), rtol=1e-10)
    got_e = relaxcat.exp_concrete_log_prob(bk.asarray(np.log(y)), bk.asarray(logits), 0.6)
    np.testing.assert_allclose(
        bk.to_numpy(got_e), exp_product_form(np.log(y), logits, 0.6), rtol=1e-10
    )


def test_density_along_another_axis(bk):
    logits = RNG.normal(size=(3, 4))
    y = simplex_points((4, 3), RNG).T  # categories on axis 0
    taus = np.array([[0.4, 0.9, 1.5, 3.0]])
    got = relaxcat.concrete_log_prob(bk.asarray(y), bk.asarray(logits), bk.asarray(taus), axis=0)
    ref = [product_form(y[:, j], logits[:, j], taus[0, j]) for j in range(4)]
    np.testing.assert_allclose(bk.to_numpy(got), ref, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_density_types_and_dtypes(bk, dtype):
    logits = bk.asarray(RNG.normal(size=(4, 3)), dtype)
    y = bk.asarray(simplex_points((4, 3), RNG), dtype)
    for f in (relaxcat.concrete_log_prob, relaxcat.exp_concrete_log_prob):
        r = f(y, logits, 0.5)
        assert type(r) is type(logits) and r.dtype == logits.dtype and tuple(r.shape) == (4,)
        assert bk.device_of(r) == bk.device_of(logits)
    r = relaxcat.relaxed_bernoulli_log_prob(y, logits, 0.5)
    bk.assert_like(r, logits)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_densities_are_computed_in_float32(bk, dtype):
    logits = RNG.normal(size=(8, 3)).astype(np.float32)
    y = simplex_points((8, 3), RNG).astype(np.float32)
    lh, yh = bk.asarray(logits, dtype), bk.asarray(y, dtype)
    got = relaxcat.concrete_log_prob(yh, lh, 0.5)
    assert got.dtype == lh.dtype
    up = relaxcat.concrete_log_prob(
        bk.asarray(bk.to_numpy(yh), "float32"), bk.asarray(bk.to_numpy(lh), "float32"), 0.5
    )
    expected = bk.to_numpy(bk.asarray(bk.to_numpy(up), dtype))
    np.testing.assert_array_equal(bk.to_numpy(got), expected)


# -- torch.distributions, where it is stable -------------------------------------------


@pytest.mark.backends("torch")
@pytest.mark.parametrize("tau", TAUS)
def test_matches_torch_distributions(bk, tau):
    torch = bk.lib
    dist = torch.distributions
    logits = bk.asarray(RNG.normal(size=(6, 4)))
    y = bk.asarray(simplex_points((6, 4), RNG))
    t = torch.tensor(tau, dtype=torch.float64)
    ref = dist.RelaxedOneHotCategorical(t, logits=logits, validate_args=False).log_prob(y)
    np.testing.assert_allclose(
        bk.to_numpy(relaxcat.concrete_log_prob(y, logits, tau)), bk.to_numpy(ref), rtol=1e-10
    )
    log_y = torch.log(y)
    exp_relaxed = dist.relaxed_categorical.ExpRelaxedCategorical
    ref_e = exp_relaxed(t, logits=logits, validate_args=False).log_prob(log_y)
    np.testing.assert_allclose(
        bk.to_numpy(relaxcat.exp_concrete_log_prob(log_y, logits, tau)),
        bk.to_numpy(ref_e),
        rtol=1e-10,
    )
    yb = bk.asarray(RNG.uniform(0.01, 0.99, size=(6, 4)))
    ref_b = dist.RelaxedBernoulli(t, logits=logits, validate_args=False).log_prob(yb)
    np.testing.assert_allclose(
        bk.to_numpy(relaxcat.relaxed_bernoulli_log_prob(yb, logits, tau)),
        bk.to_numpy(ref_b),
        rtol=1e-10,
    )


@pytest.mark.backends("torch")
def test_torch_distributions_fail_where_relaxcat_does_not(bk):
    # The complaint in pytorch#18254 and friends: low-temperature samples give a NaN or
    # infinite log_prob in torch. The ExpConcrete density on the log-sample is finite.
    torch = bk.lib
    logits = bk.asarray(np.zeros((4, 1000)))
    log_y = relaxcat.log_gumbel_softmax(logits, 1e-3, rng=0)
    y = torch.exp(log_y)
    torch_lp = torch.distributions.RelaxedOneHotCategorical(
        torch.tensor(1e-3, dtype=torch.float64), logits=logits, validate_args=False
    ).log_prob(y)
    assert not torch.isfinite(torch_lp).all()
    assert torch.isfinite(relaxcat.exp_concrete_log_prob(log_y, logits, 1e-3)).all()
    assert not torch.isnan(relaxcat.concrete_log_prob(y, logits, 1e-3)).any()
