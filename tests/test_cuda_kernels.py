"""The fused CUDA kernels (CuPy, and torch CUDA tensors through DLPack); GPU runs only.

The noise is checked against an independent NumPy Philox4x32-10, and the fused sampler
against the generic array-API path, on the code paths the kernels have: a row cached in
shared memory or recomputed, the category axis last or not, each storage dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

import relaxcat
import relaxcat._core as core


@pytest.fixture
def kbk(bk):
    """A backend whose arrays go through the fused kernels."""
    if bk.name == "torch":
        pytest.importorskip("cupy", reason="cupy is not installed: torch CUDA uses its own path")
    return bk


def test_reference_philox_known_answers():
    # Random123's known-answer vectors for philox4x32-10.
    got = philox4x32(*([np.uint32(0)] * 4), 0, 0)
    assert [int(w) for w in got] == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    ones = 0xFFFFFFFF
    got = philox4x32(ones, ones, ones, ones, ones, ones)
    assert [int(w) for w in got] == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]


def philox4x32(c0, c1, c2, c3, k0, k1):
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in (c0, c1, c2, c3))
    k0, k1 = np.uint64(k0), np.uint64(k1)
    mask = np.uint64(0xFFFFFFFF)
    for _ in range(10):
        p0 = c0 * np.uint64(0xD2511F53)
        p1 = c2 * np.uint64(0xCD9E8D57)
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ k0,
            p1 & mask,
            (p0 >> np.uint64(32)) ^ c3 ^ k1,
            p0 & mask,
        )
        k0 = (k0 + np.uint64(0x9E3779B9)) & mask
        k1 = (k1 + np.uint64(0xBB67AE85)) & mask
    return [c.astype(np.uint32) for c in (c0, c1, c2, c3)]


def reference_noise(n, key, stream, dtype):
    L = np.arange(n, dtype=np.uint64)
    per = 4 if dtype == np.float32 else 2
    q = L // np.uint64(per)
    words = philox4x32(
        q & np.uint64(0xFFFFFFFF),
        q >> np.uint64(32),
        stream & 0xFFFFFFFF,
        stream >> 32,
        key & 0xFFFFFFFF,
        key >> 32,
    )
    w = np.stack(words)  # (4, n)
    if dtype == np.float32:
        u = (w[(L % np.uint64(4)).astype(np.int64), np.arange(n)] >> np.uint32(8)).astype(
            np.float32
        ) * np.float32(2.0**-24)
    else:
        odd = (L % np.uint64(2)).astype(bool)
        a = np.where(odd, w[2], w[0]).astype(np.float64)
        b = np.where(odd, w[3], w[1]).astype(np.float64)
        u = (np.floor(a / 32) * 2.0**26 + np.floor(b / 64)) * 2.0**-53
    with np.errstate(divide="ignore"):
        e = -np.log(u)
    info = np.finfo(dtype)
    return (-np.log(np.clip(e, info.smallest_normal, info.max))).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.backends("cupy", "torch")
@pytest.mark.cuda_kernels
def test_noise_is_philox4x32_10(kbk, dtype):
    seed = 0x1234_5678_9ABC
    like = kbk.asarray(np.zeros((3, 1001)), dtype)
    g = kbk.to_numpy(relaxcat.gumbel_noise(like, rng=seed)).ravel()
    expected = reference_noise(g.size, seed, 0, np.dtype(dtype).type)
    # float32 kernels take -log(E) with the hardware approximation (absolute error < 1e-6)
    rtol = 1e-5 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(g, expected, rtol=rtol, atol=2e-5 if dtype == "float32" else 1e-14)


def both_ways(f):
    fast = f()
    core.FAST_PATHS = False
    try:
        return fast, f()
    finally:
        core.FAST_PATHS = True


@pytest.mark.parametrize("n", [7, 4096, 20000])  # 20000 floats: not cached in shared memory
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.backends("cupy", "torch")
@pytest.mark.cuda_kernels
def test_fused_equals_generic_given_seed(kbk, n, axis, hard):
    logits = np.random.default_rng(n).normal(size=(6, n)) * 3
    logits[1, :: max(1, n // 3)] = -np.inf
    if axis == 0:
        logits = np.ascontiguousarray(logits.T)
    x = kbk.asarray(logits, "float32")
    fast, generic = both_ways(lambda: relaxcat.gumbel_softmax(x, 0.4, hard=hard, axis=axis, rng=9))
    a, b = kbk.to_numpy(fast), kbk.to_numpy(generic)
    if hard:
        np.testing.assert_array_equal(a, b)
    else:
        # hardware exp approximation: a few ulp, relatively more for probabilities < 1e-12
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)
        np.testing.assert_allclose(a.sum(axis), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "dtype",
    ["float16", "float64", pytest.param("bfloat16", marks=pytest.mark.backends("torch"))],
)
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.backends("cupy", "torch")
@pytest.mark.cuda_kernels
def test_fused_dtypes(kbk, dtype, hard):
    x = kbk.asarray(np.random.default_rng(1).normal(size=(33, 300)) * 4, dtype)
    fast, generic = both_ways(lambda: relaxcat.gumbel_softmax(x, 0.7, hard=hard, rng=2))
    kbk.assert_like(fast, x)
    a = kbk.to_numpy(fast).astype(np.float64)
    b = kbk.to_numpy(generic).astype(np.float64)
    if hard or dtype == "float64":
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    else:  # one rounding to half precision apart at most
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3)


@pytest.mark.backends("cupy")
@pytest.mark.cuda_kernels
def test_cupy_generator_draws_the_key_on_the_device(kbk):
    cupy = kbk.lib
    x = cupy.zeros((4, 50), dtype=cupy.float32)
    a = relaxcat.gumbel_softmax(x, rng=cupy.random.default_rng(5))
    b = relaxcat.gumbel_softmax(x, rng=cupy.random.default_rng(5))
    c = relaxcat.gumbel_softmax(x, rng=cupy.random.default_rng(6))
    assert bool((a == b).all())
    assert not bool((a == c).all())
    gen = cupy.random.default_rng(7)
    assert not bool((relaxcat.gumbel_noise(x, rng=gen) == relaxcat.gumbel_noise(x, rng=gen)).all())


@pytest.mark.backends("cupy", "torch")
@pytest.mark.cuda_kernels
def test_large_gpu_draw_is_finite_and_one_hot(kbk):
    x = kbk.asarray(np.zeros((8192, 4096)), "float32")
    for seed in range(2):
        y = kbk.to_numpy(relaxcat.gumbel_softmax(x, 0.05, hard=True, rng=seed))
        np.testing.assert_array_equal(y.sum(-1), 1.0)
        s = kbk.to_numpy(relaxcat.gumbel_softmax(x, 0.05, rng=seed))
        assert np.isfinite(s).all()
        assert np.abs(s.sum(-1) - 1).max() < 1e-4


@pytest.mark.backends("cupy", "torch")
@pytest.mark.cuda_kernels
def test_noise_upper_tail_is_exact(kbk):
    # The largest float32 uniform below 1 is 1 - 2**-24: the noise cannot exceed
    # -log(-log(1 - 2**-24)) = 16.6355; an inaccurate log near 1 would overshoot it.
    g = kbk.to_numpy(relaxcat.gumbel_noise(kbk.asarray(np.zeros(1 << 25), "float32"), rng=1))
    assert g.max() <= 16.6356
    assert g.max() > 15.0
    top = np.sort(g)[-64:]
    assert np.all(np.diff(top) >= 0)
