"""Agreement: identical noise fed to every installed backend gives NumPy's answer.

Run by the ``agreement`` nox session, which installs every CPU backend. Outputs must agree
with NumPy to 1e-12 in float64 and 1e-6 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import relaxcat

TOL = {"float64": 1e-12, "float32": 1e-6}
RNG = np.random.default_rng(20260101)
LOGITS = RNG.normal(size=(64, 3, 33)) * 3
LOGITS[::7, 0, 5] = -np.inf  # some masked categories (never a whole row on any axis)
LOGITS[::5, 2, 9] = -np.inf
NOISE = RNG.gumbel(size=LOGITS.shape)  # float64 noise, fed to everyone
TAUS = np.exp(RNG.normal(size=(64, 3, 1)))

CASES = {
    "soft": {"tau": 0.37},
    "soft-axis1": {"tau": 2.0, "axis": 1},
    "soft-tau-array": {"tau": TAUS},
    "soft-tiny-tau": {"tau": 1e-4},
    "hard": {"tau": 0.5, "hard": True},
    "hard-axis0": {"tau": 0.5, "hard": True, "axis": 0},
    "hard-reinmax": {"tau": 1.5, "hard": True, "estimator": "reinmax"},
    "hard-gumbel-rao": {
        "tau": 0.5,
        "hard": True,
        "estimator": "gumbel_rao",
        "samples": 4,
        "rng": 0,
    },
}


def run_case(bk, dtype, case):
    kwargs = dict(CASES[case])
    if isinstance(kwargs["tau"], np.ndarray):
        tau = kwargs["tau"]
        if kwargs.get("axis", -1) != -1:
            tau = np.moveaxis(tau, -1, kwargs["axis"])
        kwargs["tau"] = bk.asarray(tau, dtype)
    logits = bk.asarray(LOGITS, dtype)
    noise = bk.asarray(NOISE.astype(dtype), dtype)
    return bk.to_numpy(relaxcat.gumbel_softmax(logits, noise=noise, **kwargs)).astype(np.float64)


def reference(dtype, case):
    kwargs = dict(CASES[case])
    if isinstance(kwargs["tau"], np.ndarray):
        kwargs["tau"] = kwargs["tau"].astype(dtype)
    return relaxcat.gumbel_softmax(
        LOGITS.astype(dtype), noise=NOISE.astype(dtype), **kwargs
    ).astype(np.float64)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backends_agree_with_numpy(bk, dtype, case):
    got = run_case(bk, dtype, case)
    expected = reference(dtype, case)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL[dtype])
    if CASES[case].get("hard"):
        np.testing.assert_array_equal(got, expected)  # one-hot: exactly equal


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seeded_noise_is_standard_gumbel_everywhere(bk, dtype):
    # Seeds differ between libraries (each has its own generator), but each one's noise
    # must be standard Gumbel: compare the first two moments with NumPy's sample.
    g = bk.to_numpy(relaxcat.gumbel_noise(bk.asarray(np.zeros(200_000), dtype), rng=5))
    g = g.astype(np.float64)
    assert abs(g.mean() - np.euler_gamma) < 0.02
    assert abs(g.var() - np.pi**2 / 6) < 0.05


# -- the distribution functions ---------------------------------------------------------
# Inputs come from their own generator, so the arrays above stay as they were.

DRNG = np.random.default_rng(20260303)
K = 4
NOISE_K = DRNG.gumbel(size=(K, *LOGITS.shape))  # relaxed_topk(method="max") draws
LOGISTIC = DRNG.logistic(size=LOGITS.shape)  # relaxed_bernoulli noise
LOGITS_P = DRNG.normal(size=LOGITS.shape) * 2
LOGITS_P[::7, 0, 5] = -np.inf  # masked in both
LOGITS_P[1, 1, 3] = -np.inf  # q > 0 where p = 0: that row's KL is +inf
SAMPLE = relaxcat.gumbel_softmax(LOGITS, 0.6, noise=NOISE)  # a point of the simplex
LOG_SAMPLE = relaxcat.log_gumbel_softmax(LOGITS, 0.6, noise=NOISE)
UNIT = DRNG.uniform(0.001, 0.999, size=LOGITS.shape)
TAUS_AXIS1 = np.exp(DRNG.normal(size=(64, 1, 33)))  # per-distribution tau for axis=1


def _distribution_cases():
    r = relaxcat
    return {
        "log_gumbel_softmax": lambda c: r.log_gumbel_softmax(c(LOGITS), 0.37, noise=c(NOISE)),
        "log_gumbel_softmax-tiny-tau": lambda c: r.log_gumbel_softmax(
            c(LOGITS), 1e-4, noise=c(NOISE)
        ),
        "log_gumbel_softmax-tau-array-axis1": lambda c: r.log_gumbel_softmax(
            c(LOGITS), c(TAUS_AXIS1), axis=1, noise=c(NOISE)
        ),
        "concrete_log_prob": lambda c: r.concrete_log_prob(c(SAMPLE), c(LOGITS), 0.6),
        "concrete_log_prob-tau-array": lambda c: r.concrete_log_prob(c(SAMPLE), c(LOGITS), c(TAUS)),
        "exp_concrete_log_prob": lambda c: r.exp_concrete_log_prob(c(LOG_SAMPLE), c(LOGITS), 0.6),
        "relaxed_bernoulli": lambda c: r.relaxed_bernoulli(c(LOGITS), 0.7, noise=c(LOGISTIC)),
        "relaxed_bernoulli-hard": lambda c: r.relaxed_bernoulli(
            c(LOGITS), 0.7, hard=True, noise=c(LOGISTIC)
        ),
        "relaxed_bernoulli_log_prob": lambda c: r.relaxed_bernoulli_log_prob(
            c(UNIT), c(LOGITS), c(TAUS)
        ),
        "relaxed_topk": lambda c: r.relaxed_topk(c(LOGITS), K, 0.5, noise=c(NOISE)),
        "relaxed_topk-hard": lambda c: r.relaxed_topk(c(LOGITS), K, 0.5, hard=True, noise=c(NOISE)),
        "relaxed_topk-tiny-tau-axis0": lambda c: r.relaxed_topk(
            c(LOGITS), K, 1e-6, axis=0, noise=c(NOISE)
        ),
        "relaxed_topk-max": lambda c: r.relaxed_topk(
            c(LOGITS), K, 0.5, method="max", noise=c(NOISE_K)
        ),
        "relaxed_topk-max-hard": lambda c: r.relaxed_topk(
            c(LOGITS), K, 0.5, hard=True, method="max", noise=c(NOISE_K)
        ),
        "categorical_kl": lambda c: r.categorical_kl(c(LOGITS), c(LOGITS_P)),
    }


DISTRIBUTION_CASES = list(_distribution_cases())


def _summed_magnitude(log_y, tau):
    """sum_k |la_k - tau log y_k| + |la_k| + |log y_k|, over unmasked k: the size of the
    terms a Concrete log-density adds up, which bounds its rounding error in any order."""
    finite = np.isfinite(LOGITS)
    la = np.where(finite, LOGITS - special.logsumexp(LOGITS, axis=-1, keepdims=True), 0.0)
    ly = np.where(finite, log_y, 0.0)
    return np.sum(np.abs(la - tau * ly) + np.abs(la) + np.abs(ly), axis=-1)


# Reductions over 33 categories in float32: summation order differs between libraries.
SCALE = {
    "concrete_log_prob": lambda: _summed_magnitude(np.log(np.where(SAMPLE > 0, SAMPLE, 1)), 0.6),
    "concrete_log_prob-tau-array": lambda: _summed_magnitude(
        np.log(np.where(SAMPLE > 0, SAMPLE, 1)), TAUS
    ),
    "exp_concrete_log_prob": lambda: _summed_magnitude(LOG_SAMPLE, 0.6),
}


def assert_close(got, expected, rtol, atol):
    """|got - expected| <= atol + rtol |expected| (atol may be an array); infs must match."""
    inf = np.isinf(expected)
    np.testing.assert_array_equal(got[inf], expected[inf])
    err = np.abs(got[~inf] - expected[~inf])
    bound = (np.broadcast_to(atol, expected.shape)[~inf]) + rtol * np.abs(expected[~inf])
    worst = np.argmax(err - bound) if err.size else 0
    assert (err <= bound).all(), (err[worst], bound[worst], got[~inf][worst])


@pytest.mark.parametrize("case", DISTRIBUTION_CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_distributions_agree_with_numpy(bk, dtype, case):
    # Relative and absolute tolerance TOL (log-samples reach 1e4 at tau = 1e-4, where only
    # a relative tolerance means anything); for the log-densities the absolute tolerance is
    # TOL times the summed magnitude of their terms.
    f = _distribution_cases()[case]
    got = bk.to_numpy(f(lambda a: bk.asarray(a.astype(dtype), dtype))).astype(np.float64)
    expected = f(lambda a: a.astype(dtype)).astype(np.float64)
    assert not np.isnan(got).any()
    atol = TOL[dtype] * (SCALE[case]() if case in SCALE else 1.0)
    assert_close(got, expected, TOL[dtype], atol)
    if case.endswith("hard"):
        np.testing.assert_array_equal(got, expected)


# -- one Philox key, no shared noise -----------------------------------------------------
# Every library computes the same counter-based noise from the key itself: exact samples
# are identical, soft ones agree to the tolerance of a few ulp of noise.

PHILOX_SEEDS = DRNG.integers(0, 2**62, size=(64, 3))


def _whole_matrices(a):
    """Dask: each matrix in one chunk (hard Sinkhorn solves one assignment per task)."""
    return a.rechunk({-2: -1, -1: -1}) if hasattr(a, "rechunk") else a


def _philox_cases():
    r = relaxcat
    key = r.Philox(2026, offset=12)
    rows = r.Philox(PHILOX_SEEDS, offset=3)
    kw_rao = {"hard": True, "estimator": "gumbel_rao", "samples": 3}
    return {
        "gumbel_softmax": lambda c: r.gumbel_softmax(c(LOGITS), 0.6, rng=key),
        "gumbel_softmax-hard": lambda c: r.gumbel_softmax(c(LOGITS), 0.6, hard=True, rng=key),
        "gumbel_softmax-rows-hard": lambda c: r.gumbel_softmax(c(LOGITS), 0.6, hard=True, rng=rows),
        "gumbel_softmax-axis0-hard": lambda c: r.gumbel_softmax(
            c(LOGITS), 0.6, hard=True, axis=0, rng=key
        ),
        "gumbel_rao-hard": lambda c: r.gumbel_softmax(c(LOGITS), 0.6, rng=key, **kw_rao),
        "sample_categorical-exact": lambda c: r.sample_categorical(c(LOGITS), rng=rows),
        "gumbel_topk-exact": lambda c: r.gumbel_topk(c(LOGITS), K, rng=key),
        "relaxed_bernoulli": lambda c: r.relaxed_bernoulli(c(LOGITS), 0.7, rng=key),
        "relaxed_topk-max-hard": lambda c: r.relaxed_topk(
            c(LOGITS), K, 0.5, hard=True, method="max", rng=rows
        ),
        "gumbel_noise": lambda c: r.gumbel_noise(c(LOGITS), rng=rows),
        "simple_ksubset-exact": lambda c: r.simple_ksubset(c(LOGITS[:, 0, :12]), 3, rng=key),
        "gumbel_sinkhorn-hard": lambda c: r.gumbel_sinkhorn(
            _whole_matrices(c(LOGITS[:8, :, :3])), 0.5, hard=True, rng=key
        ),
        "hard_concrete": lambda c: r.hard_concrete(c(LOGITS), 0.5, rng=rows),
    }


@pytest.mark.parametrize("case", list(_philox_cases()))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_one_philox_key_gives_numpys_sample(bk, dtype, case):
    f = _philox_cases()[case]
    got = bk.to_numpy(f(lambda a: bk.asarray(a.astype(dtype), dtype)))
    expected = f(lambda a: a.astype(dtype))
    if case.endswith(("hard", "exact")):
        np.testing.assert_array_equal(got, expected)
    else:  # the noise differs by a few ulp: 4 eps relative, 4 eps absolute below 1
        eps = np.finfo(dtype).eps
        bound = 16 * eps * np.maximum(np.abs(expected), 1.0)
        assert (np.abs(got.astype(np.float64) - expected) <= bound).all()
