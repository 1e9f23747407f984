"""Distributional checks with fixed seeds (deterministic, thresholds at the 1e-4 level)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import relaxcat

P_MIN = 1e-4
PROBS = np.array([0.02, 0.08, 0.15, 0.25, 0.5])


@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_hard_sample_frequencies_match_softmax(bk, tau):
    n = 200_000
    logits = np.broadcast_to(np.log(PROBS) + 3.0, (n, PROBS.size))  # shift-invariant
    y = bk.to_numpy(relaxcat.gumbel_softmax(bk.asarray(logits), tau, hard=True, rng=2024))
    counts = y.sum(0)
    assert counts.sum() == n
    result = stats.chisquare(counts, n * PROBS)
    assert result.pvalue > P_MIN, (counts / n, result)


def test_hard_frequencies_along_axis_zero(bk):
    n = 100_000
    logits = np.broadcast_to(np.log(PROBS)[:, None], (PROBS.size, n))
    y = bk.to_numpy(
        relaxcat.gumbel_softmax(bk.asarray(logits, "float32"), hard=True, axis=0, rng=7)
    )
    result = stats.chisquare(y.sum(1), n * PROBS)
    assert result.pvalue > P_MIN, result


def test_chi_square_detects_wrong_probabilities(bk):
    # The statistical test above must be able to fail: against slightly wrong
    # probabilities the same sample is rejected.
    n = 200_000
    logits = np.broadcast_to(np.log(PROBS), (n, PROBS.size))
    counts = bk.to_numpy(relaxcat.gumbel_softmax(bk.asarray(logits), hard=True, rng=1)).sum(0)
    wrong = np.array([0.03, 0.07, 0.15, 0.25, 0.5])
    assert stats.chisquare(counts, n * wrong).pvalue < P_MIN


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gumbel_noise_distribution(bk, dtype):
    g = bk.to_numpy(relaxcat.gumbel_noise(bk.asarray(np.zeros(400_000), dtype), rng=99))
    g = g.astype(np.float64)
    result = stats.kstest(g, stats.gumbel_r.cdf)
    assert result.pvalue > P_MIN, result
    assert abs(g.mean() - np.euler_gamma) < 5 * np.pi / np.sqrt(6 * g.size)
