"""Rankings and permutations: plackett_luce_log_prob and gumbel_sinkhorn.

References are NumPy loops written from the formulas (product of softmaxes over the items
not yet ranked; brute force over all permutations; scipy's linear_sum_assignment).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment

import relaxcat
from relaxcat._permutations import _assignment

P_MIN = 1e-4
N = 4
RNG = np.random.default_rng(21)
LOGITS = RNG.normal(size=(2, N)) * 1.3
LOGITS[1, 1] = -np.inf  # a masked item


def pl_reference(ranking, logits):
    """log P(ranking) as the product of the probabilities of each pick."""
    total, left = 0.0, list(range(logits.size))
    for r in ranking:
        finite = [i for i in left if np.isfinite(logits[i])]
        if not np.isfinite(logits[r]):
            return -np.inf
        norm = np.log(np.exp(logits[finite]).sum())
        total += logits[r] - norm
        left.remove(r)
    return total


def all_rankings(n, k):
    return np.array(list(itertools.permutations(range(n), k)))


@pytest.mark.parametrize("k", [1, 2, N])
def test_pl_matches_enumeration_and_sums_to_one(bk, k):
    rankings = all_rankings(N, k)  # (R, k)
    x = bk.asarray(LOGITS)
    for row in range(2):
        got = relaxcat.plackett_luce_log_prob(bk.asarray(rankings, "int64"), x[row, ...])
        got = bk.to_numpy(got)
        ref = np.array([pl_reference(r, LOGITS[row]) for r in rankings])
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
        # Every full ranking of row 1 contains its masked item: total probability 0.
        total = 1.0 if k <= np.isfinite(LOGITS[row]).sum() else 0.0
        np.testing.assert_allclose(np.exp(got).sum(), total, rtol=1e-12)
    assert np.isneginf(got[rankings[:, 0] == 1]).all()  # the masked item ranked: impossible


def test_pl_batched_axis_and_dtype(bk):
    ranking = np.array([[2, 0], [3, 2]])
    x = bk.asarray(LOGITS.T, "float32")  # items on axis 0, batch on axis 1
    got = relaxcat.plackett_luce_log_prob(bk.asarray(ranking, "int64"), x, axis=0)
    assert got.dtype == x.dtype and tuple(got.shape) == (2,)
    ref = [pl_reference(ranking[b], LOGITS[b]) for b in range(2)]
    np.testing.assert_allclose(bk.to_numpy(got), ref, rtol=1e-5)


def test_gumbel_topk_orders_follow_plackett_luce(bk):
    # 24 ordered triples of 4 items, 60,000 draws: chi-square against exp(log_prob).
    # Power: the law with the order reversed (the same triples, last pick first) differs
    # by up to 0.03 in probability and is rejected by the same counts at p < 1e-50.
    draws = 60_000
    logits = np.array([0.3, -0.5, 1.0, 0.0])
    idx = bk.to_numpy(
        relaxcat.gumbel_topk(bk.asarray(np.broadcast_to(logits, (draws, N)), "float32"), 3, rng=4)
    )
    orders = all_rankings(N, 3)
    codes = {tuple(o): i for i, o in enumerate(orders)}
    counts = np.bincount([codes[tuple(r)] for r in idx], minlength=len(orders))
    logp = relaxcat.plackett_luce_log_prob(bk.asarray(orders, "int64"), bk.asarray(logits))
    probs = np.exp(bk.to_numpy(logp))
    assert stats.chisquare(counts, draws * probs).pvalue > P_MIN
    reversed_probs = np.array([math.exp(pl_reference(o[::-1], logits)) for o in orders])
    assert stats.chisquare(counts, draws * reversed_probs / reversed_probs.sum()).pvalue < P_MIN


@pytest.mark.backends("torch", "jax")
def test_pl_gradient_matches_finite_differences(bk):
    ranking = np.array([[2, 0, 3], [3, 0, 2]])
    w = np.array([0.7, -1.3])

    def objective(l):
        return sum(w[b] * pl_reference(ranking[b], l[b]) for b in range(2))

    fd = np.zeros(LOGITS.shape)
    for idx in zip(*np.nonzero(np.isfinite(LOGITS)), strict=True):
        up, down = LOGITS.copy(), LOGITS.copy()
        up[idx] += 1e-6
        down[idx] -= 1e-6
        fd[idx] = (objective(up) - objective(down)) / 2e-6
    r, weights = bk.asarray(ranking, "int64"), bk.asarray(w)
    if bk.name == "torch":
        x = bk.asarray(LOGITS).requires_grad_(True)
        (relaxcat.plackett_luce_log_prob(r, x) * weights).sum().backward()
        got = bk.to_numpy(x.grad)
    else:
        f = lambda l: (relaxcat.plackett_luce_log_prob(r, l) * weights).sum()
        got = bk.to_numpy(bk.jax.grad(f)(bk.asarray(LOGITS)))
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)
    assert got[1, 1] == 0  # the masked item: no gradient, not NaN


def test_pl_errors(bk):
    x = bk.asarray(LOGITS[0])
    with pytest.raises(TypeError, match="integer item indices"):
        relaxcat.plackett_luce_log_prob(bk.asarray([0.0, 1.0]), x)
    with pytest.raises(ValueError, match="k=5 items but logits have only n=4"):
        relaxcat.plackett_luce_log_prob(bk.asarray([0, 1, 2, 3, 0], "int64"), x)
    with pytest.raises(ValueError, match="do not broadcast"):
        relaxcat.plackett_luce_log_prob(bk.asarray(np.zeros((3, 2)), "int64"), bk.asarray(LOGITS))


@pytest.mark.host_values
def test_pl_value_errors(bk):
    x = bk.asarray(LOGITS[0])
    with pytest.raises(ValueError, match="repeats an item"):
        relaxcat.plackett_luce_log_prob(bk.asarray([2, 0, 2], "int64"), x)
    with pytest.raises(ValueError, match="index 4, out of range"):
        relaxcat.plackett_luce_log_prob(bk.asarray([0, 4], "int64"), x)
    with pytest.raises(ValueError, match="index -1"):
        relaxcat.plackett_luce_log_prob(bk.asarray([-1, 2], "int64"), x)


# -- Gumbel-Sinkhorn --------------------------------------------------------------------------

S = RNG.normal(size=(6, 4, 4))
G = RNG.gumbel(size=(6, 4, 4))


def brute_force(score):
    n = score.shape[-1]
    best = max(itertools.permutations(range(n)), key=lambda p: score[np.arange(n), p].sum())
    out = np.zeros((n, n))
    out[np.arange(n), best] = 1.0
    return out


def one_chunk(bk, a):
    """Dask: the last two axes in one chunk each, as hard=True needs."""
    return a.rechunk({-2: -1, -1: -1}) if bk.name == "dask" else a


def test_sinkhorn_is_doubly_stochastic(bk):
    x = bk.asarray(S)
    y = relaxcat.gumbel_sinkhorn(x, 0.7, n_iter=200, noise=bk.asarray(G))
    bk.assert_like(y, x)
    yn = bk.to_numpy(y)
    assert (yn >= 0).all()
    np.testing.assert_allclose(yn.sum(-2), 1, rtol=1e-12)  # the last step: columns
    np.testing.assert_allclose(yn.sum(-1), 1, atol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_hard_is_the_argmax_permutation(bk, n):
    rng = np.random.default_rng(n)
    s, g = rng.normal(size=(8, n, n)), rng.gumbel(size=(8, n, n))
    x = one_chunk(bk, bk.asarray(s))
    hard = relaxcat.gumbel_sinkhorn(x, 0.5, hard=True, noise=one_chunk(bk, bk.asarray(g)))
    bk.assert_like(hard, x)
    np.testing.assert_array_equal(bk.to_numpy(hard), np.stack([brute_force(m) for m in s + g]))


def test_solver_matches_scipy():
    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(1, 12))
        s = rng.normal(size=(n, n))
        if trial % 3 == 0:
            s = np.round(s)  # ties between assignments
        cols = _assignment(s)
        rows, ref = linear_sum_assignment(s, maximize=True)
        assert sorted(cols.tolist()) == list(range(n))
        assert math.isclose(s[np.arange(n), cols].sum(), s[rows, ref].sum(), abs_tol=1e-12)
    s = np.array([[0.0, -np.inf], [1.0, 0.0]])  # a forbidden pair
    np.testing.assert_array_equal(_assignment(s), [0, 1])
    with pytest.raises(ValueError, match="every full assignment uses a -inf"):
        _assignment(np.array([[0.0, -np.inf], [1.0, -np.inf]]))


# Not on Dask: 2,000 Sinkhorn iterations over matrices split into chunks build a graph of
# 2,000 rounds of cross-chunk reductions (many minutes to schedule); the limit is the same
# arithmetic on every backend, and Dask's Sinkhorn is checked by the tests above.
@pytest.mark.backends("numpy", "array_api_strict", "torch", "jax", "cupy")
def test_low_temperature_approaches_the_hard_permutation(bk):
    x, g = bk.asarray(S), bk.asarray(G)
    hard = bk.to_numpy(
        relaxcat.gumbel_sinkhorn(one_chunk(bk, x), hard=True, noise=one_chunk(bk, g))
    )
    errors = []
    for tau in (0.3, 0.01):
        soft = bk.to_numpy(relaxcat.gumbel_sinkhorn(x, tau, n_iter=2000, noise=g))
        errors.append(np.median(np.abs(soft - hard).max((-1, -2))))
        if tau == 0.01:
            np.testing.assert_array_equal(np.round(soft), hard)
    assert errors[1] < 1e-2 < errors[0]


def test_hard_law_on_3x3_matches_independent_brute_force(bk):
    # The permutation of hard=True, drawn from rng, against brute force on independent
    # NumPy noise: a two-sample chi-square over the 6 permutations, 6,000 draws each.
    # Power: the law with one score raised by 0.6 is rejected by samples of this size
    # (p ~ 1e-34 with these seeds; checked below), and p = 0.77 for the true one.
    draws = 6_000
    score = np.array([[1.0, 0.2, 0.0], [0.3, 0.8, 0.1], [0.0, 0.5, 0.6]])
    x = one_chunk(bk, bk.asarray(np.broadcast_to(score, (draws, 3, 3))))
    hard = bk.to_numpy(relaxcat.gumbel_sinkhorn(x, hard=True, rng=3))
    perms = list(itertools.permutations(range(3)))
    code = {p: i for i, p in enumerate(perms)}

    def counts(h):
        return np.bincount([code[tuple(np.argmax(m, -1))] for m in h], minlength=6)

    rng = np.random.default_rng(5)
    index = np.array(perms)

    def reference(s):  # brute force, vectorised: the best of the 6 permutations per draw
        perturbed = s + rng.gumbel(size=(draws, 3, 3))
        totals = perturbed[:, np.arange(3), index].sum(-1)  # (draws, 6)
        return np.bincount(np.argmax(totals, -1), minlength=6)

    ours, ref = counts(hard), reference(score)
    assert stats.chi2_contingency(np.stack([ours, ref])).pvalue > P_MIN
    shifted = score.copy()
    shifted[0, 0] += 0.6
    assert stats.chi2_contingency(np.stack([ours, reference(shifted)])).pvalue < P_MIN


@pytest.mark.backends("torch", "jax")
def test_hard_has_the_soft_gradient(bk):
    g = bk.asarray(G)
    w = bk.asarray(np.random.default_rng(2).normal(size=S.shape))

    def grad(hard):
        if bk.name == "torch":
            x = bk.asarray(S).requires_grad_(True)
            (relaxcat.gumbel_sinkhorn(x, 0.5, hard=hard, noise=g) * w).sum().backward()
            return bk.to_numpy(x.grad)
        f = lambda l: (relaxcat.gumbel_sinkhorn(l, 0.5, hard=hard, noise=g) * w).sum()
        return bk.to_numpy(bk.jax.grad(f)(bk.asarray(S)))

    soft, hard = grad(False), grad(True)
    assert np.isfinite(soft).all() and np.abs(soft).max() > 0
    np.testing.assert_array_equal(hard, soft)


@pytest.mark.backends("jax")
def test_hard_under_jit_raises_clearly_and_soft_runs(bk):
    jax = bk.jax
    x, g = bk.asarray(S), bk.asarray(G)
    soft = jax.jit(lambda l: relaxcat.gumbel_sinkhorn(l, 0.5, noise=g))(x)
    np.testing.assert_allclose(
        bk.to_numpy(soft), bk.to_numpy(relaxcat.gumbel_sinkhorn(x, 0.5, noise=g)), rtol=1e-12
    )
    with pytest.raises(ValueError, match="outside jit"):
        jax.jit(lambda l: relaxcat.gumbel_sinkhorn(l, 0.5, hard=True, noise=g))(x)


@pytest.mark.backends("dask")
def test_dask_hard_needs_one_chunk_on_the_matrix_axes(bk):
    with pytest.raises(ValueError, match="rechunk"):
        relaxcat.gumbel_sinkhorn(bk.asarray(S), hard=True, rng=0)


def test_sinkhorn_errors(bk):
    with pytest.raises(ValueError, match=r"square matrix.*\(2, 3\)"):
        relaxcat.gumbel_sinkhorn(bk.asarray(np.zeros((2, 3))), rng=0)
    with pytest.raises(ValueError, match="n_iter=0"):
        relaxcat.gumbel_sinkhorn(bk.asarray(S), n_iter=0, rng=0)
    with pytest.raises(TypeError, match="n_iter must be an int"):
        relaxcat.gumbel_sinkhorn(bk.asarray(S), n_iter=2.5, rng=0)
    with pytest.raises(ValueError, match="tau"):
        relaxcat.gumbel_sinkhorn(bk.asarray(S), -1.0, rng=0)


# -- the worked example of docs/ranking.md ------------------------------------------------------


@pytest.mark.backends("torch")
def test_ranking_example_runs_and_learns(bk):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "ranking.py"
    module = runpy.run_path(str(script))
    result = module["main"](steps=150, out=None)
    # Fitted by exact maximum likelihood: the weights point the true way, and the
    # training NLL is within 0.05 nats of the true scorer's.
    w, w_true = result["w"], result["w_true"]
    assert np.corrcoef(w, w_true)[0, 1] > 0.95
    assert result["history"][-1] < result["true_nll"] + 0.05
