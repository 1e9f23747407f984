"""SIMPLE k-subsets: simple_ksubset and ksubset_marginals against enumeration.

References enumerate every subset of size k of a small set of items: P(S) ∝ exp(sum of the
logits in S). On JAX every new shape compiles the tree program once (seconds), so the
tests share a few shapes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

import relaxcat

P_MIN = 1e-4
N, K = 6, 3
RNG = np.random.default_rng(8)
LOGITS = RNG.normal(size=(4, N)) * 1.5
LOGITS[1, 2] = -np.inf  # an excluded item
LOGITS[3] = [30.0, -30.0, 0.0, 1.0, 2.0, -1.0]  # far apart: the tables span ~90 in log


def exact_law(logits, k):
    """Subsets of size k and their probabilities, for one row of logits."""
    subsets = list(itertools.combinations(range(logits.size), k))
    with np.errstate(invalid="ignore"):
        w = np.array([logits[list(s)].sum() for s in subsets])
    w = np.exp(w - w.max())
    return subsets, w / w.sum()


def exact_marginals(logits, k):
    out = np.zeros(logits.shape)
    for row in range(logits.shape[0]):
        subsets, probs = exact_law(logits[row], k)
        for s, p in zip(subsets, probs, strict=True):
            out[row, list(s)] += p
    return out


@pytest.mark.parametrize("k", [1, K, N])
def test_marginals_match_enumeration(bk, k):
    x = bk.asarray(LOGITS)
    if k == N:  # row 1 has only N - 1 finite logits
        x = bk.asarray(np.where(np.isfinite(LOGITS), LOGITS, 0.0))
    mu = relaxcat.ksubset_marginals(x, k)
    bk.assert_like(mu, x)
    ref = exact_marginals(bk.to_numpy(x), k)
    np.testing.assert_allclose(bk.to_numpy(mu), ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(bk.to_numpy(mu).sum(-1), k, rtol=1e-12)


def test_marginals_along_another_axis_and_in_float32(bk):
    x = bk.asarray(LOGITS.T, "float32")
    mu = relaxcat.ksubset_marginals(x, K, axis=0)
    bk.assert_like(mu, x)
    np.testing.assert_allclose(bk.to_numpy(mu), exact_marginals(LOGITS, K).T, rtol=2e-5, atol=1e-6)


def test_sample_is_exactly_k_hot_and_shaped_like_the_logits(bk):
    x = bk.asarray(LOGITS)
    z = relaxcat.simple_ksubset(x, K, rng=1)
    bk.assert_like(z, x)
    zn = bk.to_numpy(z)
    assert set(np.unique(zn).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(zn.sum(-1), K)
    assert zn[1, 2] == 0  # excluded
    z0 = relaxcat.simple_ksubset(bk.asarray(LOGITS.T), K, axis=0, rng=1)
    np.testing.assert_array_equal(bk.to_numpy(z0).sum(0), K)


def test_same_seed_same_sample(bk):
    x = bk.asarray(np.broadcast_to(LOGITS[0], (64, N)))
    a = bk.to_numpy(relaxcat.simple_ksubset(x, K, rng=5))
    b = bk.to_numpy(relaxcat.simple_ksubset(x, K, rng=5))
    c = bk.to_numpy(relaxcat.simple_ksubset(x, K, rng=6))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


DRAWS = 40_000
FREQ_LOGITS = np.array([0.5, -1.0, 1.2, 0.0, -0.3])


def subset_counts(hot, k):
    subsets = list(itertools.combinations(range(hot.shape[-1]), k))
    codes = np.bincount((hot @ 2.0 ** np.arange(hot.shape[-1])).astype(int))
    codes = np.pad(codes, (0, 2 ** hot.shape[-1] - codes.size))
    return np.array([codes[sum(2**i for i in s)] for s in subsets])


def test_sample_frequencies_match_the_conditional_law(bk):
    # Chi-square over the 10 subsets of size 2 of 5 items, 40,000 draws. Power: the
    # wrong law of Gumbel top-2 (ordered draws without replacement from softmax(logits),
    # which gives subsets P({i,j}) = p_i p_j (1/(1-p_i) + 1/(1-p_j))) differs by up to
    # 0.02 in probability and is rejected at p < 1e-30 by the same counts.
    x = bk.asarray(np.broadcast_to(FREQ_LOGITS, (DRAWS, 5)), "float32")
    hot = bk.to_numpy(relaxcat.simple_ksubset(x, 2, rng=2024))
    np.testing.assert_array_equal(hot.sum(-1), 2)
    counts = subset_counts(hot, 2)
    subsets, probs = exact_law(FREQ_LOGITS, 2)
    assert stats.chisquare(counts, DRAWS * probs).pvalue > P_MIN
    p = np.exp(FREQ_LOGITS) / np.exp(FREQ_LOGITS).sum()
    wrong = np.array([p[i] * p[j] * (1 / (1 - p[i]) + 1 / (1 - p[j])) for i, j in subsets])
    assert stats.chisquare(counts, DRAWS * wrong / wrong.sum()).pvalue < P_MIN


@pytest.mark.backends("torch", "jax")
def test_gradient_is_that_of_the_marginals_by_finite_differences(bk):
    w = np.random.default_rng(3).normal(size=LOGITS.shape)
    base = np.where(np.isfinite(LOGITS), LOGITS, -np.inf)

    def objective(l):
        return (w * exact_marginals(l, K)).sum()

    fd = np.zeros(LOGITS.shape)
    h = 1e-6
    for idx in zip(*np.nonzero(np.isfinite(base)), strict=True):
        up, down = base.copy(), base.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (objective(up) - objective(down)) / (2 * h)
    weights = bk.asarray(w)
    if bk.name == "torch":
        x = bk.asarray(LOGITS).requires_grad_(True)
        z = relaxcat.simple_ksubset(x, K, rng=0)
        (z * weights).sum().backward()
        got = bk.to_numpy(x.grad)
        zn = bk.to_numpy(z)
    else:
        jax = bk.jax
        key = jax.random.key(0)
        got = bk.to_numpy(
            jax.grad(lambda l: (relaxcat.simple_ksubset(l, K, rng=key) * weights).sum())(
                bk.asarray(LOGITS)
            )
        )
        zn = bk.to_numpy(relaxcat.simple_ksubset(bk.asarray(LOGITS), K, rng=key))
    np.testing.assert_array_equal(zn.sum(-1), K)  # the forward value is the exact sample
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)
    assert got[1, 2] == 0  # an excluded item has no gradient, not NaN


def test_stable_at_n_1000_k_100_in_float32(bk):
    x = np.random.default_rng(4).normal(size=(2, 1000)) * 4
    x[1, :10] = 40.0  # ten near-certain items
    xb = bk.asarray(x, "float32")
    mu = bk.to_numpy(relaxcat.ksubset_marginals(xb, 100))
    assert np.isfinite(mu).all() and (mu >= 0).all() and (mu <= 1 + 1e-6).all()
    np.testing.assert_allclose(mu.sum(-1), 100, rtol=1e-3)
    # float32 log-space tables of size |log e_k| ~ 1e3 here: a relative error ~1e-4 is
    # the dtype's, not the algorithm's (float64 is checked against enumeration above).
    np.testing.assert_allclose(mu[1, :10], 1, rtol=5e-4)
    z = bk.to_numpy(relaxcat.simple_ksubset(xb, 100, rng=0))
    np.testing.assert_array_equal(z.sum(-1), 100)
    assert (z[1, :10] == 1).all()


@pytest.mark.backends("torch", "jax")
def test_gradient_stable_at_n_1000_k_100_in_float32(bk):
    x = np.random.default_rng(4).normal(size=(2, 1000)) * 4
    w = bk.asarray(np.random.default_rng(5).normal(size=(2, 1000)), "float32")
    if bk.name == "torch":
        xt = bk.asarray(x, "float32").requires_grad_(True)
        (relaxcat.simple_ksubset(xt, 100, rng=0) * w).sum().backward()
        g = bk.to_numpy(xt.grad)
    else:
        key = bk.jax.random.key(0)
        g = bk.to_numpy(
            bk.jax.grad(lambda l: (relaxcat.simple_ksubset(l, 100, rng=key) * w).sum())(
                bk.asarray(x, "float32")
            )
        )
    assert np.isfinite(g).all() and np.abs(g).max() > 0


@pytest.mark.backends("jax")
def test_runs_under_jax_jit(bk):
    jax = bk.jax
    x = bk.asarray(LOGITS)
    key = jax.random.key(9)
    eager = relaxcat.simple_ksubset(x, K, rng=key)
    jitted = jax.jit(lambda l, kk: relaxcat.simple_ksubset(l, K, rng=kk))(x, key)
    np.testing.assert_array_equal(bk.to_numpy(eager), bk.to_numpy(jitted))
    mu = jax.jit(lambda l: relaxcat.ksubset_marginals(l, K))(x)
    np.testing.assert_allclose(bk.to_numpy(mu), exact_marginals(LOGITS, K), rtol=1e-10)


def test_errors_name_the_argument_and_the_fix(bk):
    x = bk.asarray(LOGITS)
    with pytest.raises(TypeError, match="k must be an int"):
        relaxcat.simple_ksubset(x, 2.0, rng=0)
    with pytest.raises(ValueError, match=r"k=7 is out of range.*between 1 and 6"):
        relaxcat.ksubset_marginals(x, 7)
    with pytest.raises(TypeError, match="real floating"):
        relaxcat.ksubset_marginals(bk.asarray(np.zeros((2, 3)), "int64"), 1)


@pytest.mark.host_values
def test_value_errors_where_values_can_be_read(bk):
    with pytest.raises(ValueError, match="only 5 unmasked"):
        relaxcat.simple_ksubset(bk.asarray(LOGITS), N, rng=0)
    bad = LOGITS.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        relaxcat.ksubset_marginals(bk.asarray(bad), 2)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"\+inf"):
        relaxcat.simple_ksubset(bk.asarray(bad), 2, rng=0)
