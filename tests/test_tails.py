"""Exact tails of the Gumbel noise, at the sizes where people sample tokens.

The noise is ``g = -log E``. Its upper tail (``E`` near 0) decides whether a category far
below the leader can win; its lower tail (``E`` large) whether the leader can lose. Each
test here failed on cb0e283 on at least one backend, at these sizes:

* the max law: for ``n`` i.i.d. standard Gumbel draws, ``max g - log n`` is standard Gumbel,
  and so is ``max E - log n`` for the exponentials ``E = exp(-g)``. Noise built from a float32
  uniform on the grid ``k * 2**-24`` stops at ``g = 16.64`` and ``E = 16.64``: with
  ``n = 2**23`` the maximum minus ``log n`` can then not exceed 0.69, which the exact law
  exceeds with probability 0.39 (a KS test over 32 batches: p ~ 1e-4), and the maximum over
  all ``32 * 2**23`` draws, tested against its own Gumbel law, cannot reach its median
  19.8 (p ~ 1e-7). A float32 exponential of exactly 0 (``g = 87.3``, once in 8 million
  draws) moves about 60 % of the batch maxima by 70;
* a dominant category over 131072 categories (probability ``1 - 1.2e-8``) must win every
  one of 400 rows: the float32 zero draws picked another category in 1.5 % of rows, so
  P(no miss in 400 rows) was about 0.2 %;
* a tail 18 nats below a leader is drawn at its exact rate (a two-sided Poisson test):
  with the 16.6 cut its rate falls about 15-fold, with the zero draws it rises 8-fold;
* a leader 40 and 50 nats ahead never loses in 10^8 draws (exact: 4e-18 and 2e-22 a
  draw); a uniform of exactly 0 made torch's favourite lose about 8 times in 10^8.

All tests use fixed seeds; the thresholds (p > 1e-4) and the power figures above are
for the seeds' draws being typical.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import stats

import relaxcat
from relaxcat._noise import E_MAX, E_MIN, exponential_from_words

ALPHA = 1e-4
BATCHES = 32


def gumbel_two_sided_p(m: float) -> float:
    cdf = math.exp(-math.exp(-m))
    return 2 * min(cdf, 1 - cdf)


@pytest.mark.host_values
@pytest.mark.parametrize(("dtype", "log2n"), [("float32", 23), ("float64", 22)])
def test_max_law_in_both_tails(bk, dtype, log2n):
    like = bk.asarray(np.zeros(2), dtype)
    n = 2**log2n
    upper, lower = [], []
    for b in range(BATCHES):
        g = bk.to_numpy(relaxcat.gumbel_noise(like, shape=(n,), rng=7919 * b + log2n))
        assert g.dtype == np.dtype(dtype)
        hi, lo = float(g.max()), float(g.min())
        assert -math.log(E_MAX) <= lo and hi <= -math.log(E_MIN), (lo, hi)
        upper.append(hi)
        lower.append(math.exp(-lo))  # the largest exponential of the batch
    log_n = math.log(n)
    for name, maxima in (("upper (max g)", upper), ("lower (max E)", lower)):
        shifted = np.array(maxima) - log_n
        ks = stats.kstest(shifted, stats.gumbel_r.cdf).pvalue
        overall = gumbel_two_sided_p(max(maxima) - log_n - math.log(BATCHES))
        assert ks > ALPHA, (name, ks, shifted)
        assert overall > ALPHA, (name, overall, max(maxima))


def test_dominant_category_wins_every_row_at_vocabulary_size(bk):
    rows, v = 100, 131072
    logits = np.full((rows, v), -30.0, np.float32)
    logits[:, 0] = 0.0  # probability 1 - 1.2e-8 per row
    x = bk.asarray(logits, "float32")
    for seed in range(2):
        idx = bk.to_numpy(relaxcat.sample_categorical(x, rng=seed))
        assert (idx == 0).all(), np.flatnonzero(idx)
        hot = bk.to_numpy(relaxcat.gumbel_softmax(x, 1.0, hard=True, rng=100 + seed))
        assert (hot[:, 0] == 1.0).all(), np.flatnonzero(hot[:, 0] != 1.0)


def test_tail_eighteen_nats_below_is_drawn_at_its_exact_rate(bk):
    v, rows, calls, depth = 2**16, 256, 64, 18.0
    logits = np.full((rows, v), -depth, np.float32)
    logits[:, 0] = 0.0
    x = bk.asarray(logits, "float32")
    tail = (v - 1) * math.exp(-depth)
    p_row = tail / (1.0 + tail)  # exact probability that a row draws a tail category
    hits = 0
    for seed in range(calls):
        hits += int((bk.to_numpy(relaxcat.sample_categorical(x, rng=seed)) != 0).sum())
    expected = rows * calls * p_row  # 16.4 in 2**30 draws
    p = 2 * min(stats.poisson.cdf(hits, expected), stats.poisson.sf(hits - 1, expected))
    assert p > ALPHA, (hits, expected)


def test_leader_far_ahead_never_loses(bk):
    n = 2**22
    logits = np.tile(np.array([0.0, -40.0], np.float32), (n, 1))
    x = bk.asarray(logits, "float32")
    losses = 0
    for seed in range(12):  # 10^8 draws; exact probability of a loss: 4e-18 each
        losses += int(bk.to_numpy(relaxcat.sample_categorical(x, rng=seed)).sum())
    assert losses == 0
    b = bk.asarray(np.full(n, -50.0), "float32")
    ones = 0
    for seed in range(12):  # 5e7 relaxed-Bernoulli draws; exact P(1) = 2e-22 each
        ones += int(bk.to_numpy(relaxcat.relaxed_bernoulli(b, 0.5, hard=True, rng=seed)).sum())
    assert ones == 0


def test_exponential_from_words_resolves_both_ends():
    # The 64 bits make U = (j + 1/2) 2**-64: the extreme words give E at both ends, finite,
    # and the middle words give the two halves' common point, E = log 2.
    import array_api_compat.numpy as xp

    hi = np.array([0, 0, 2**31 - 1, 2**31, 2**31, 2**32 - 1], np.uint32)
    lo = np.array([0, 1, 2**32 - 1, 0, 1, 2**32 - 1], np.uint32)
    for dtype in (np.float32, np.float64):
        e = exponential_from_words(xp, hi, lo, dtype).astype(np.float64)
        u = (np.array([0, 1, 2**63 - 1], dtype=np.float64) + 0.5) * 2.0**-64
        np.testing.assert_allclose(e[:3], -np.log(u), rtol=1e-6)
        np.testing.assert_allclose(e[3:5], [0.5 * 2.0**-64, 1.5 * 2.0**-64], rtol=1e-6)
        np.testing.assert_allclose(e[5], np.log(2.0), rtol=1e-6)


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_uniforms_have_53_bits(bk):
    # The float64 uniforms behind torch's small draws: on the 2**-53 grid, not 2**-24.
    torch = bk.lib
    from relaxcat._backends._torch import TorchSource

    u = TorchSource(torch.Generator().manual_seed(0), torch.device("cpu"))._uniform64((4096,))
    k = u.numpy() * 2.0**53
    np.testing.assert_array_equal(k, np.floor(k))
    assert np.mean(u.numpy() * 2.0**24 != np.floor(u.numpy() * 2.0**24)) > 0.99


@pytest.mark.backends("torch", "jax")
@pytest.mark.host_values
def test_every_int_seed_has_its_own_noise(bk):
    like = bk.asarray(np.zeros(64), "float32")
    base = bk.to_numpy(relaxcat.gumbel_noise(like, rng=5))
    for other in (5 + 2**32, 5 + 2**63, 2**64 - 1):
        assert not np.array_equal(base, bk.to_numpy(relaxcat.gumbel_noise(like, rng=other)))
    np.testing.assert_array_equal(base, bk.to_numpy(relaxcat.gumbel_noise(like, rng=5)))


def test_seed_out_of_range_names_rng(bk):
    like = bk.asarray(np.zeros(4), "float32")
    for seed in (-1, 2**64):
        with pytest.raises(ValueError, match=r"rng=.*\[0, 2\*\*64\)"):
            relaxcat.gumbel_softmax(like, rng=seed)


@pytest.mark.backends("jax")
def test_jax_raw_keys_of_every_implementation(bk):
    jax = bk.jax
    like = bk.asarray(np.zeros((2, 8)), "float32")
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
        typed = jax.random.key(3, impl=impl)
        raw = jax.random.key_data(typed)
        a = bk.to_numpy(relaxcat.gumbel_noise(like, rng=typed))
        b = bk.to_numpy(relaxcat.gumbel_noise(like, rng=raw))
        assert np.isfinite(a).all()
        if impl != "unsafe_rbg":  # its raw uint32[4] keys read as rbg keys unless it is the default
            np.testing.assert_array_equal(a, b)


def _child_noise(queue):
    import numpy as np

    import relaxcat

    queue.put(relaxcat.gumbel_noise(np.zeros(16)).tolist())


@pytest.mark.backends("numpy")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_forked_workers_draw_their_own_noise_with_rng_none(bk):
    import multiprocessing

    relaxcat.gumbel_noise(np.zeros(16))  # the parent's default generator exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_child_noise, args=(queue,)) for _ in range(2)]
    for w in workers:
        w.start()
    draws = [queue.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    parent = relaxcat.gumbel_noise(np.zeros(16)).tolist()
    assert draws[0] != draws[1]
    assert parent not in draws
