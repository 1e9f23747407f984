"""categorical_kl against SciPy's rel_entr, with underflow and masked categories."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

import relaxcat
from tests.conftest import HALF

HALF_DTYPES = [pytest.param(d, marks=pytest.mark.backends(*b)) for d, b in HALF.items()]

B, N = 6, 5
RNG = np.random.default_rng(7)
LQ = RNG.normal(size=(B, N)) * 2
LP = RNG.normal(size=(B, N)) * 2


def reference(lq, lp, axis=-1):
    """sum rel_entr(q, p): SciPy's elementwise q log(q/p), 0 at q = 0, inf at p = 0 < q."""
    q = special.softmax(lq, axis=axis)
    p = special.softmax(lp, axis=axis)
    return special.rel_entr(q, p).sum(axis=axis)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_rel_entr(bk, dtype):
    kl = relaxcat.categorical_kl(bk.asarray(LQ, dtype), bk.asarray(LP, dtype))
    assert tuple(kl.shape) == (B,) and kl.dtype == bk.asarray(LQ, dtype).dtype
    rtol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(bk.to_numpy(kl), reference(LQ, LP), rtol=rtol)


def test_kl_of_a_distribution_with_itself_is_zero_and_kl_is_positive(bk):
    same = bk.to_numpy(relaxcat.categorical_kl(bk.asarray(LQ), bk.asarray(LQ + 3.0)))
    np.testing.assert_allclose(same, 0.0, atol=1e-15)
    assert (bk.to_numpy(relaxcat.categorical_kl(bk.asarray(LQ), bk.asarray(LP))) > 0).all()


def test_axis_and_broadcasting(bk):
    prior = np.zeros(N)  # uniform prior for every row
    kl = bk.to_numpy(relaxcat.categorical_kl(bk.asarray(LQ), bk.asarray(prior)))
    np.testing.assert_allclose(kl, reference(LQ, np.broadcast_to(prior, LQ.shape)), rtol=1e-12)
    kl0 = bk.to_numpy(relaxcat.categorical_kl(bk.asarray(LQ.T), bk.asarray(LP.T), axis=0))
    np.testing.assert_allclose(kl0, reference(LQ, LP), rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_finite_where_probabilities_underflow(bk, dtype):
    # exp(-800) and exp(-1e4) underflow to 0 in both dtypes; their terms are ~0, not NaN.
    lq = np.array([[0.0, -800.0, -1e4, 1.0, -50.0]] * B)
    lp = np.array([[-1e4, 0.0, 0.0, -3e3, 2.0]] * B)
    kl = bk.to_numpy(relaxcat.categorical_kl(bk.asarray(lq, dtype), bk.asarray(lp, dtype)))
    assert np.isfinite(kl).all()
    # In float64 by hand: only q_0, q_3 (and q_4 ~ e^-51) matter.
    lqn = lq[0] - special.logsumexp(lq[0])
    lpn = lp[0] - special.logsumexp(lp[0])
    expected = np.sum(np.exp(lqn) * (lqn - lpn))
    np.testing.assert_allclose(kl, expected, rtol=1e-12 if dtype == "float64" else 1e-5)


def test_masked_categories(bk):
    inf = np.inf
    lq = np.array(
        [
            [0.0, -inf, 1.0, 0.5, -1.0],  # q masked where p is not: contributes 0
            [0.0, -inf, 1.0, 0.5, -1.0],  # masked in both: contributes 0
            [0.0, 0.3, 1.0, 0.5, -1.0],  # q > 0 where p is masked: +inf
            [-inf, -inf, -inf, 2.0, -inf],  # a point mass
            [0.0, -800.0, 1.0, 0.5, -1.0],  # q underflows where p is masked: still +inf
            [0.0, 0.1, 0.2, 0.3, 0.4],
        ]
    )
    lp = np.array(
        [
            [0.5, 0.0, 0.0, -1.0, 0.0],
            [0.5, -inf, 0.0, -1.0, 0.0],
            [0.5, -inf, 0.0, -1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.5, -inf, 0.0, -1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    kl = bk.to_numpy(relaxcat.categorical_kl(bk.asarray(lq), bk.asarray(lp)))
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = reference(lq, lp)
    # Row 4: SciPy sees q_1 = exp(-800) as 0 after underflow; it is > 0, and p_1 = 0.
    expected[4] = np.inf
    np.testing.assert_allclose(kl, expected, rtol=1e-12)
    assert kl[2] == np.inf and kl[4] == np.inf
    np.testing.assert_allclose(kl[3], np.log(N), rtol=1e-12)  # KL(point mass || uniform)


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision(bk, dtype):
    lq, lp = bk.asarray(LQ, dtype), bk.asarray(LP, dtype)
    kl = relaxcat.categorical_kl(lq, lp)
    assert kl.dtype == lq.dtype
    ref = reference(bk.to_numpy(lq).astype(np.float64), bk.to_numpy(lp).astype(np.float64))
    np.testing.assert_allclose(bk.to_numpy(kl).astype(np.float64), ref, rtol=2e-2, atol=1e-2)
