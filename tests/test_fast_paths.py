"""Every native fast path equals the generic array-API path, and keeps its statistics.

``relaxcat._core.FAST_PATHS = False`` forces the generic implementation; each test runs the
same call both ways. Backends without a fast path pass trivially (the two runs coincide).
"""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from scipy import stats

import relaxcat
import relaxcat._core as core
from tests.conftest import HALF, result_of_forked_child


def both_ways(f):
    """``f()`` with fast paths on, then off."""
    fast = f()
    core.FAST_PATHS = False
    try:
        generic = f()
    finally:
        core.FAST_PATHS = True
    return fast, generic


def close(bk, a, b, dtype):
    a, b = bk.to_numpy(a), bk.to_numpy(b)
    if dtype == "float64":  # fused GPU kernels accumulate the row sum in another order
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-300)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


LOGITS = np.random.default_rng(0).normal(size=(40, 3, 17)) * 4
LOGITS[::3, 1, 4] = -np.inf


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("tau", [0.05, 1.0, 7.0])
def test_fast_equals_generic_given_noise(bk, dtype, axis, tau):
    x = bk.asarray(LOGITS, dtype)
    g = bk.asarray(np.random.default_rng(1).gumbel(size=LOGITS.shape), dtype)
    soft, soft_generic = both_ways(lambda: relaxcat.gumbel_softmax(x, tau, axis=axis, noise=g))
    close(bk, soft, soft_generic, dtype)
    hard, hard_generic = both_ways(
        lambda: relaxcat.gumbel_softmax(x, tau, hard=True, axis=axis, noise=g)
    )
    np.testing.assert_array_equal(bk.to_numpy(hard), bk.to_numpy(hard_generic))


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize(
    "tracked", [False, pytest.param(True, id="tracked", marks=pytest.mark.backends("torch"))]
)
def test_hard_sample_ties_go_to_the_first_index_on_every_path(bk, axis, tracked):
    # Rows whose maximum appears two or three times, among rows without a tie: the one-hot
    # is at the first maximum, as the generic argmax gives. torch's CPU kernels find the
    # maxima by comparing with the row maximum, so they must resolve ties the same way.
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(300, 40)).astype(np.float32)
    noise = rng.gumbel(size=logits.shape).astype(np.float32)
    ties = {0: [3, 17], 5: [0, 39], 7: [1, 2, 30], 299: [38, 39]}
    for row, cols in ties.items():
        logits[row, cols] = 30.0  # above every other x + g of the row: P(g > 25) < 1e-10
        noise[row, cols] = 0.0  # so x + g is exactly 30 at each tied entry
    expected = np.zeros_like(logits)
    expected[np.arange(300), np.argmax(logits + noise, axis=1)] = 1.0
    assert all(expected[row, cols[0]] == 1.0 for row, cols in ties.items())
    if axis == 0:
        logits, noise, expected = logits.T.copy(), noise.T.copy(), expected.T.copy()
    x, g = bk.asarray(logits, "float32"), bk.asarray(noise, "float32")
    if tracked:
        x.requires_grad_(True)
    fast, generic = both_ways(
        lambda: relaxcat.gumbel_softmax(x, 0.5, hard=True, axis=axis, noise=g)
    )
    np.testing.assert_array_equal(bk.to_numpy(fast), expected)
    np.testing.assert_array_equal(bk.to_numpy(generic), expected)


@pytest.mark.parametrize("shape", [(3, 10), (50, 40), (300, 4000)])
@pytest.mark.parametrize("hard", [False, True])
def test_fast_equals_generic_given_seed(bk, shape, hard):
    # Same seed, same noise stream: the fast path draws exactly what the generic one does.
    x = bk.asarray(np.random.default_rng(2).normal(size=shape), "float32")
    fast, generic = both_ways(lambda: relaxcat.gumbel_softmax(x, 0.5, hard=hard, rng=3))
    if hard:
        np.testing.assert_array_equal(bk.to_numpy(fast), bk.to_numpy(generic))
    else:  # small torch tensors evaluate log/exp with NumPy: equal up to rounding
        np.testing.assert_allclose(bk.to_numpy(fast), bk.to_numpy(generic), rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize(
    "dtype", [pytest.param("float16", marks=pytest.mark.backends(*HALF["float16"])), "float32"]
)
def test_fast_path_half_precision_and_dtype(bk, dtype):
    x = bk.asarray(LOGITS[:, 0], dtype)
    g = bk.asarray(np.random.default_rng(4).gumbel(size=LOGITS[:, 0].shape), "float32")
    fast, generic = both_ways(lambda: relaxcat.gumbel_softmax(x, 0.3, noise=g))
    bk.assert_like(fast, x)
    if dtype == "float16":  # both round the same float32 result to half precision
        np.testing.assert_allclose(
            bk.to_numpy(fast).astype(np.float64),
            bk.to_numpy(generic).astype(np.float64),
            rtol=1e-3,
            atol=1e-7,
        )
    else:
        close(bk, fast, generic, dtype)


@pytest.mark.backends("torch")
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_torch_registered_backward_equals_autodiff(bk, hard, axis):
    torch = bk.lib
    g = bk.asarray(np.random.default_rng(5).gumbel(size=(12, 9)))
    w = bk.asarray(np.random.default_rng(6).normal(size=(12, 9)))

    def grad():
        x = bk.asarray(np.random.default_rng(7).normal(size=(12, 9))).requires_grad_(True)
        y = relaxcat.gumbel_softmax(x, 0.6, hard=hard, axis=axis, noise=g)
        (y * w).sum().backward()
        return y, x.grad

    (y_fast, g_fast), (y_gen, g_gen) = both_ways(grad)
    assert graph_has(y_fast.grad_fn, "SampleBackward")  # the registered rule ran
    close(bk, y_fast, y_gen, "float64")
    np.testing.assert_allclose(bk.to_numpy(g_fast), bk.to_numpy(g_gen), rtol=1e-12, atol=1e-15)
    x = bk.asarray(np.random.default_rng(8).normal(size=(5, 4))).requires_grad_(True)
    noise = bk.asarray(np.random.default_rng(9).gumbel(size=(5, 4)))

    def f(v):
        return relaxcat.gumbel_softmax(v, 0.6, hard=hard, axis=axis, noise=noise) * 1.0

    assert torch.autograd.gradgradcheck(f, (x,))
    if not hard:
        assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.backends("torch")
def test_torch_fast_path_preserves_half_precision_gradients(bk):
    torch = bk.lib
    x = bk.asarray(np.random.default_rng(10).normal(size=(6, 5)), "float16").requires_grad_(True)
    y = relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=0)
    y.backward(torch.ones_like(y))
    assert x.grad.dtype == torch.float16
    assert torch.isfinite(x.grad).all()


def graph_has(node, name, depth=6):
    """Whether an autograd node called ``*name*`` lies within ``depth`` steps of ``node``."""
    if node is None or depth < 0:
        return False
    if name in type(node).__name__:
        return True
    return any(graph_has(n, name, depth - 1) for n, _ in node.next_functions)


# -- torch's parallel block RNG for large CPU draws ------------------------------------


def _torch_blocks():
    from relaxcat._backends import _torch_cpu

    return _torch_cpu


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_block_rng_is_reproducible_and_thread_independent(bk):
    torch = bk.lib
    mod = _torch_blocks()
    shape = (2 * mod.PARALLEL_MIN // 1000 + 1, 1000)  # large enough for the block path
    x = torch.zeros(shape)
    torch.manual_seed(0)
    a = relaxcat.gumbel_noise(x)
    torch.manual_seed(0)
    b = relaxcat.gumbel_noise(x)
    assert torch.equal(a, b)
    old_pool, old_threads = mod.POOL.executor, torch.get_num_threads()
    try:
        mod.POOL.executor = None  # the next draw starts a pool of one thread
        torch.set_num_threads(1)
        torch.manual_seed(0)
        c = relaxcat.gumbel_noise(x)
    finally:
        torch.set_num_threads(old_threads)
        mod.POOL.executor = old_pool
    assert torch.equal(a, c)
    gen = torch.Generator().manual_seed(1)
    d, e = relaxcat.gumbel_noise(x, rng=gen), relaxcat.gumbel_noise(x, rng=gen)
    assert not torch.equal(d, e)  # the generator advances


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_block_exponentials_have_float64_resolution(bk):
    # Each block: 32-bit words from its SFC64 stream, U = w * 2**-32 in float32; the words in a tail
    # (w < 2**25 or w >= 2**32 - 2**25) are redrawn from the same stream at 53 bits after the
    # block's words. Rebuilt here with NumPy alone, in float64, the values must agree.
    torch = bk.lib
    mod = _torch_blocks()
    n = mod.PARALLEL_MIN + 12345
    e = mod.exponential_blocks((n,), torch.float32, 42).numpy()
    seeds = np.random.SeedSequence(42).spawn(-(-n // mod._BLOCK))
    expected = []
    for i, seed in enumerate(seeds):
        size = min(mod._BLOCK, n - i * mod._BLOCK)
        bits = np.random.SFC64(seed)
        words = []
        for start in range(0, size, mod._CHUNK):
            m = min(mod._CHUNK, size - start)
            words.append(bits.random_raw(-(-m // 2)).view(np.uint32)[:m])
        w32 = np.concatenate(words)
        u = (w32.astype(np.float32) * np.float32(2.0**-32)).astype(np.float64)
        out = -np.log(u)
        tail = np.flatnonzero((w32 < 2**25) | (w32 >= 2**32 - 2**25))
        w = np.maximum(np.random.Generator(bits).random(tail.size), 2.0**-54) * mod._TAIL
        out[tail] = np.maximum(np.where(u[tail] >= 0.5, -np.log1p(-w), -np.log(w)), 2.0**-56)
        expected.append(out)
    np.testing.assert_allclose(e, np.concatenate(expected), rtol=2e-6)
    assert e.min() > 0.0
    small = e[e < 2.0**-14].astype(np.float64)
    assert small.size > 0
    assert np.any(small * 2.0**24 != np.floor(small * 2.0**24))  # off the 24-bit grid


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_block_path_statistics(bk):
    torch = bk.lib
    mod = _torch_blocks()
    probs = np.array([0.05, 0.15, 0.3, 0.5])
    n = mod.PARALLEL_MIN // 2 + 1000  # x 4 categories: the block path
    logits = torch.log(torch.tensor(probs, dtype=torch.float32)).expand(n, 4).contiguous()
    torch.manual_seed(123)
    counts = relaxcat.gumbel_softmax(logits, 0.5, hard=True).sum(0).numpy()
    assert stats.chisquare(counts, n * probs).pvalue > 1e-4
    g = relaxcat.gumbel_noise(logits, rng=7).numpy().ravel()
    assert np.isfinite(g).all()
    assert stats.kstest(g[:400_000].astype(np.float64), stats.gumbel_r.cdf).pvalue > 1e-4


def _child_draw(queue):
    import torch

    from relaxcat._backends import _torch_cpu

    # Only relaxcat's own pool is exercised here: torch's OpenMP kernels themselves can
    # hang in a forked child (a torch limitation, with or without relaxcat).
    u, index, tail = _torch_cpu._uniform_blocks((_torch_cpu.PARALLEL_MIN + 1,), torch.float32, 5)
    e = -np.log(u.numpy().astype(np.float64))
    e[index] = tail
    queue.put((_torch_cpu.POOL.executor is not None, float(e.mean()), tail.size / index.size))


@pytest.mark.backends("torch")
@pytest.mark.host_values
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_torch_block_rng_works_in_a_forked_child(bk):
    torch = bk.lib
    relaxcat.gumbel_noise(torch.zeros(_torch_blocks().PARALLEL_MIN), rng=0)  # pool started
    started, mean, ratio = result_of_forked_child(_child_draw)
    assert started
    assert abs(mean - 1.0) < 0.01
    assert ratio == 1.0


# -- memory -----------------------------------------------------------------------------


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("hard", [False, True])
def test_numpy_fast_path_allocates_one_buffer(bk, hard):
    x = np.random.default_rng(0).normal(size=(512, 1024)).astype(np.float32)
    relaxcat.gumbel_softmax(x[:2], 0.5, hard=hard, rng=0)  # warm up caches
    tracemalloc.start()
    try:
        relaxcat.gumbel_softmax(x, 0.5, hard=hard, rng=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    limit = 2.2 if hard else 1.2  # hard: the noise buffer and the one-hot output
    assert peak <= limit * x.nbytes, peak / x.nbytes


@pytest.mark.backends("torch")
@pytest.mark.host_values
@pytest.mark.parametrize("hard", [False, True])
def test_torch_tiny_path_survives_a_zero_uniform_silently(bk, hard, monkeypatch):
    """A uniform draw of exactly 0 (once in 2**53) gives a finite sample and no warning.

    It stands for U < 2**-53, i.e. E > 36.7: g = -log(-log(2**-54)) = -3.62, a low draw
    of the lower tail, not the float32 maximum's -88.7 that made any leader lose.
    """
    import warnings

    torch = bk.lib
    from relaxcat._backends import _torch

    u = torch.tensor([[0.0, 0.5, 0.25, 0.75]], dtype=torch.float64)
    monkeypatch.setattr(_torch.TorchSource, "_uniform64", lambda self, shape: u.clone())
    x = torch.zeros(1, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = relaxcat.gumbel_softmax(x, 0.5, hard=hard)
        g = relaxcat.gumbel_noise(x)
    assert bool(torch.isfinite(y).all())
    np.testing.assert_allclose(float(g[0, 0]), -np.log(54 * np.log(2)), rtol=1e-6)
    np.testing.assert_allclose(g[0, 1:].numpy(), -np.log(-np.log([0.5, 0.25, 0.75])), rtol=1e-6)
    assert float(y[0, 0]) == 0.0 if hard else float(y[0, 0]) < 1e-3
    np.testing.assert_allclose(float(y.sum()), 1.0, rtol=1e-6)


@pytest.mark.parametrize("hard", [False, True])
def test_row_maxima_whose_sum_overflows_are_not_an_error(bk, hard):
    # The kernels screen rows by the float32 sum of the row maxima: finite maxima near the
    # float32 limit overflow that sum, which must only lead to the exact check, not an error.
    logits = np.full((6, 3), 3.0e38, np.float32)
    logits[:, 1] = 0.0
    x = bk.asarray(logits, "float32")
    fast, generic = both_ways(lambda: relaxcat.gumbel_softmax(x, 0.5, hard=hard, rng=4))
    y = bk.to_numpy(fast)
    np.testing.assert_array_equal(y, bk.to_numpy(generic))
    np.testing.assert_array_equal(y[:, 1], 0.0)
