"""Distributional checks of the new samplers, with fixed seeds, at the 1e-4 level.

Every test has a partner showing that the same sample rejects a slightly wrong null, so
the tests can fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import special, stats

import relaxcat

P_MIN = 1e-4
PROBS = np.array([0.02, 0.08, 0.15, 0.25, 0.5])
N = PROBS.size
DRAWS = 100_000
LOGITS = np.broadcast_to(np.log(PROBS) + 1.7, (DRAWS, N))  # shift-invariant
PAIRS = list(itertools.permutations(range(N), 2))
SUBSETS = list(itertools.combinations(range(N), 2))


def ordered_pair_probs(p):
    """Gumbel top-2: P(first = i, second = j) = p_i p_j / (1 - p_i)."""
    return np.array([p[i] * p[j] / (1 - p[i]) for i, j in PAIRS])


def subset_probs(p):
    """Unordered pairs {i, j} drawn without replacement."""
    o = dict(zip(PAIRS, ordered_pair_probs(p), strict=True))
    return np.array([o[(i, j)] + o[(j, i)] for i, j in SUBSETS])


def subset_counts(hot):
    """Counts of each 2-subset in rows of an exact 2-hot array."""
    assert (hot.sum(-1) == 2).all()
    bits = np.bincount((hot @ 2.0 ** np.arange(N)).astype(int), minlength=2**N)
    return np.array([bits[2**i + 2**j] for i, j in SUBSETS])


def ordered_pair_counts(idx):
    codes = np.bincount(idx[:, 0] * N + idx[:, 1], minlength=N * N)
    return np.array([codes[i * N + j] for i, j in PAIRS])


# -- sample_categorical ---------------------------------------------------------------------


def test_sample_categorical_frequencies(bk):
    draws = bk.to_numpy(relaxcat.sample_categorical(bk.asarray(LOGITS, "float32"), rng=2024))
    counts = np.bincount(draws, minlength=N)
    assert stats.chisquare(counts, DRAWS * PROBS).pvalue > P_MIN
    wrong = np.array([0.025, 0.075, 0.15, 0.25, 0.5])
    assert stats.chisquare(counts, DRAWS * wrong).pvalue < P_MIN


# -- gumbel_topk ------------------------------------------------------------------------


def test_gumbel_topk_ordered_pairs(bk):
    idx = bk.to_numpy(relaxcat.gumbel_topk(bk.asarray(LOGITS, "float32"), 2, rng=11))
    counts = ordered_pair_counts(idx)
    assert counts.sum() == DRAWS
    assert stats.chisquare(counts, DRAWS * ordered_pair_probs(PROBS)).pvalue > P_MIN
    # The wrong law p_i p_j / (1 - p_j) (as if the second were drawn first) is rejected.
    wrong = np.array([PROBS[i] * PROBS[j] / (1 - PROBS[j]) for i, j in PAIRS])
    assert stats.chisquare(counts, DRAWS * wrong / wrong.sum()).pvalue < P_MIN


# -- relaxed_topk(hard=True) against gumbel_topk -------------------------------------------


@pytest.mark.parametrize("method", ["successive", "max"])
def test_hard_relaxed_topk_subsets_match_gumbel_topk(bk, method):
    x = bk.asarray(LOGITS, "float32")
    hot = bk.to_numpy(relaxcat.relaxed_topk(x, 2, 0.5, hard=True, method=method, rng=5))
    idx = bk.to_numpy(relaxcat.gumbel_topk(x, 2, rng=6))
    ref = np.zeros((DRAWS, N))
    np.put_along_axis(ref, idx, 1.0, axis=-1)
    ours, theirs = subset_counts(hot), subset_counts(ref)
    # Same law: a two-sample test on the 10 subsets, and each against the exact law.
    assert stats.chi2_contingency(np.stack([ours, theirs])).pvalue > P_MIN
    assert stats.chisquare(ours, DRAWS * subset_probs(PROBS)).pvalue > P_MIN
    # Inclusion frequencies agree with those of gumbel_topk (and the exact ones).
    inclusion = subset_probs(PROBS) @ np.array([[i in s for i in range(N)] for s in SUBSETS])
    for counts in (hot.sum(0), ref.sum(0)):
        z = (counts - DRAWS * inclusion) / np.sqrt(DRAWS * inclusion * (1 - inclusion))
        assert (2 * stats.norm.sf(np.abs(z)) > P_MIN).all()
    # Can fail: two independent draws conditioned to differ, P({i,j}) ~ p_i p_j, is rejected.
    independent = np.array([PROBS[i] * PROBS[j] for i, j in SUBSETS])
    assert stats.chisquare(ours, DRAWS * independent / independent.sum()).pvalue < P_MIN


# -- relaxed Bernoulli ------------------------------------------------------------------


def test_relaxed_bernoulli_hard_mean_is_sigmoid(bk):
    logits = np.array([-2.0, -0.5, 0.0, 0.7, 3.0])
    x = bk.asarray(np.broadcast_to(logits, (DRAWS, 5)), "float32")
    ones = bk.to_numpy(relaxcat.relaxed_bernoulli(x, 0.3, hard=True, rng=17)).sum(0)
    p = special.expit(logits)
    for count, prob in zip(ones, p, strict=True):
        assert stats.binomtest(int(count), DRAWS, prob).pvalue > P_MIN
    shifted = special.expit(logits + 0.06)  # can fail: a 0.06 shift in the logits
    assert (
        min(stats.binomtest(int(c), DRAWS, q).pvalue for c, q in zip(ones, shifted, strict=True))
        < P_MIN
    )


@pytest.mark.parametrize(("tau", "logit"), [(0.5, 0.7), (2.0, -1.3)])
def test_binary_concrete_ks_against_its_cdf(bk, tau, logit):
    y = bk.to_numpy(relaxcat.relaxed_bernoulli(bk.asarray(np.full(DRAWS, logit)), tau, rng=23))

    def cdf(v, t=tau, l=logit):
        with np.errstate(divide="ignore"):
            return special.expit(t * special.logit(v) - l)

    assert stats.kstest(y, cdf).pvalue > P_MIN
    assert stats.kstest(y, lambda v: cdf(v, t=tau * 1.05)).pvalue < P_MIN
    assert stats.kstest(y, lambda v: cdf(v, l=logit + 0.05)).pvalue < P_MIN
