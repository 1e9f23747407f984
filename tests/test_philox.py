"""relaxcat.Philox: the same noise from one key on every backend, chunking and batch.

The reference is NumPy: every backend must give its 32-bit words bit for bit, float64 noise
within a few ulp (libraries' ``log`` differ in the last bit), and identical exact samples.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import relaxcat
from relaxcat._backends import backend_of
from relaxcat._philox import philox4x32
from tests.conftest import result_of_forked_child

ROOT = Path(__file__).resolve().parents[1]

#: Random123's known-answer vectors for philox4x32 with 10 rounds (tests/kat_vectors of
#: github.com/DEShawResearch/random123): counter, key, output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]

RNG = np.random.default_rng(20261201)
#: 10^6 elements: 1000 rows of 1000 categories
LOGITS = RNG.normal(size=(1000, 1000)) * 2
SEEDS = RNG.integers(0, 2**63, size=1000)
OFFSETS = RNG.integers(0, 2**40, size=1000)
KEYS = {
    "scalar": relaxcat.Philox(2**64 - 5, offset=2**33 + 7),
    "per-row": relaxcat.Philox(SEEDS, offset=11),
    "per-row-offsets": relaxcat.Philox(SEEDS, offset=OFFSETS),
}


def key_for(bk, name: str) -> relaxcat.Philox:
    """The key ``name``; JAX without 64-bit integers takes 32-bit seeds (see the docs)."""
    return KEYS[name]


def words_of(bk, key, shape, axis=-1):
    """The (hi, lo) words a backend computes for ``shape``, as NumPy uint64 arrays."""
    like = bk.asarray(np.zeros(shape))
    source = backend_of(like).noise_source(key, backend_of(like).device(like), axis)
    hi, lo = source.words(tuple(shape))
    return (bk.to_numpy(hi).astype(np.uint64), bk.to_numpy(lo).astype(np.uint64))


# -- the generator itself ----------------------------------------------------------------


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_known_answers_in_python_integers(counter, key, expected):
    assert tuple(philox4x32(None, "uint64", counter, key)) == expected


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_known_answers_in_the_backends_own_integers(bk, counter, key, expected):
    backend = backend_of(bk.asarray(np.zeros(1)))
    xp, kind = backend.xp, backend.philox_words()
    dtype = getattr(xp, kind)
    arrays = tuple(xp.asarray([c], dtype=dtype) for c in counter)
    out = philox4x32(xp, kind, arrays, key)
    assert tuple(int(bk.to_numpy(o)[0]) for o in out) == expected


@pytest.mark.parametrize("kind", ["uint64", "int64", "uint32"])
def test_the_three_word_kinds_agree_on_random_counters(kind):
    import array_api_compat.numpy as xnp

    dtype = getattr(np, kind)
    c = RNG.integers(0, 2**32, size=(4, 5000), dtype=np.uint64)
    k = RNG.integers(0, 2**32, size=(2, 5000), dtype=np.uint64)
    expected = philox4x32(xnp, "uint64", tuple(c), tuple(k))
    got = philox4x32(xnp, kind, tuple(c.astype(dtype)), tuple(k.astype(dtype)))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g.astype(np.uint64), e)


def test_words_follow_the_documented_counter_layout():
    # Element p of a one-seed array: counter (p >> 1, stream << 16, offset lo, offset hi),
    # key (seed lo, seed hi); even p takes words (x0, x1), odd p takes (x2, x3).
    seed, offset = 0x0123456789ABCDEF, 0xFEDCBA9876543210
    key = relaxcat.Philox(seed, offset=offset)
    x = np.zeros((3, 5))
    source = backend_of(x).noise_source(key, "cpu", -1)
    source.skip()  # stream 1
    hi, lo = source.words((3, 5))
    for p in range(15):
        counter = (p >> 1, 1 << 16, offset & 0xFFFFFFFF, offset >> 32)
        out = philox4x32(None, "uint64", counter, (seed & 0xFFFFFFFF, seed >> 32))
        want = (out[0], out[1]) if p % 2 == 0 else (out[2], out[3])
        assert (int(hi.reshape(-1)[p]), int(lo.reshape(-1)[p])) == want, p


# -- one key, one sample, everywhere -----------------------------------------------------


@pytest.mark.parametrize("name", list(KEYS))
def test_words_are_bit_identical_to_numpy(bk, name):
    key = key_for(bk, name)
    expected = words_of_numpy(key, LOGITS.shape)
    got = words_of(bk, key, LOGITS.shape)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def words_of_numpy(key, shape, axis=-1):
    source = backend_of(np.zeros(1)).noise_source(key, "cpu", axis)
    hi, lo = source.words(tuple(shape))
    return hi.astype(np.uint64), lo.astype(np.uint64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(KEYS))
def test_noise_agrees_with_numpy_to_a_few_ulp(bk, name, dtype):
    key = key_for(bk, name)
    expected = relaxcat.gumbel_noise(LOGITS.astype(dtype), rng=key)
    got = bk.to_numpy(relaxcat.gumbel_noise(bk.asarray(LOGITS, dtype), rng=key))
    assert got.dtype == np.dtype(dtype)
    assert_close_noise(got, expected)


def assert_close_noise(got, expected):
    """Within 4 ulp of ``E = exp(-g)``: an absolute error of 4 eps in ``g``, or 4 ulp of ``g``.

    ``g = -log E`` turns a relative error ``d`` of ``E`` into an absolute error ``d``.
    """
    eps = np.finfo(expected.dtype).eps
    bound = 4 * eps * np.maximum(np.abs(expected), 1.0)
    assert np.all(np.abs(got.astype(np.float64) - expected) <= bound), np.max(
        np.abs(got.astype(np.float64) - expected) / bound
    )


@pytest.mark.parametrize("name", list(KEYS))
def test_exact_samples_are_identical_on_every_backend(bk, name):
    # 10^6 elements of random logits; float64 noise differs from NumPy's by a few ulp at
    # most, which could flip an arg max only at a near-tie of the perturbed logits.
    key = key_for(bk, name)
    x = bk.asarray(LOGITS)
    np.testing.assert_array_equal(
        bk.to_numpy(relaxcat.sample_categorical(x, rng=key)),
        relaxcat.sample_categorical(LOGITS, rng=key),
    )
    np.testing.assert_array_equal(
        bk.to_numpy(relaxcat.gumbel_topk(x, 5, rng=key)), relaxcat.gumbel_topk(LOGITS, 5, rng=key)
    )
    np.testing.assert_array_equal(
        bk.to_numpy(relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=key)),
        relaxcat.gumbel_softmax(LOGITS, 0.5, hard=True, rng=key),
    )
    soft = bk.to_numpy(relaxcat.gumbel_softmax(x, 0.5, rng=key))
    np.testing.assert_allclose(soft, relaxcat.gumbel_softmax(LOGITS, 0.5, rng=key), atol=1e-12)


def test_a_key_is_a_value_and_advance_gives_fresh_noise(bk):
    # The shape of test_draws_of_one_call_use_streams_in_order (any shape does): on JAX
    # the Philox program of a shape is compiled once for both tests.
    x = bk.asarray(np.zeros((20, 30)))
    key = relaxcat.Philox(3)
    a = bk.to_numpy(relaxcat.gumbel_noise(x, rng=key))
    np.testing.assert_array_equal(a, bk.to_numpy(relaxcat.gumbel_noise(x, rng=key)))
    b = bk.to_numpy(relaxcat.gumbel_noise(x, rng=key.advance()))
    np.testing.assert_array_equal(
        b, bk.to_numpy(relaxcat.gumbel_noise(x, rng=relaxcat.Philox(3, offset=1)))
    )
    assert not np.isclose(a, b).any()


def test_per_row_seeds_are_batch_invariant(bk):
    # A row's noise depends on its seed, its offset and the category index only: the words
    # are identical in any batch, the noise to a few ulp (a compiler may evaluate the same
    # formula differently for another shape), the exact sample identically.
    seeds, offsets = SEEDS[:40], OFFSETS[:40]
    order = RNG.permutation(40)[:13]
    one = int(order[0])
    batches = {
        "full": (LOGITS[:40], seeds, offsets),
        "part": (LOGITS[order], seeds[order], offsets[order]),
        "one": (LOGITS[one], int(seeds[one]), int(offsets[one])),
    }
    noise, hard = {}, {}
    for name, (x, s, o) in batches.items():
        key = relaxcat.Philox(
            s if isinstance(s, int) else bk_ints(bk, s),
            offset=o if isinstance(o, int) else bk_ints(bk, o),
        )
        noise[name] = bk.to_numpy(relaxcat.gumbel_noise(bk.asarray(x), rng=key))
        hard[name] = bk.to_numpy(relaxcat.gumbel_softmax(bk.asarray(x), 0.3, hard=True, rng=key))
    assert_close_noise(noise["part"], noise["full"][order])
    assert_close_noise(noise["one"], noise["full"][one])
    np.testing.assert_array_equal(hard["part"], hard["full"][order])
    np.testing.assert_array_equal(hard["one"], hard["full"][one])


def bk_ints(bk, a):
    """An integer array of the backend's library (Dask: a Dask array), or NumPy for JAX x32."""
    if bk.name in ("numpy", "array_api_strict"):
        return np.asarray(a)
    return bk.asarray(np.asarray(a), None)


def test_per_row_seeds_along_another_axis_and_with_extra_dims(bk):
    x = RNG.normal(size=(7, 5, 6))
    seeds = RNG.integers(0, 2**62, size=(7, 6))
    key = relaxcat.Philox(seeds)
    got = bk.to_numpy(relaxcat.gumbel_noise(bk.asarray(x), rng=key, axis=1))
    for i in range(7):
        for j in range(6):
            row = relaxcat.gumbel_noise(np.zeros(5), rng=relaxcat.Philox(int(seeds[i, j])))
            assert_close_noise(got[i, :, j], row)
    # a seed broadcast over the heads: the heads differ (positions count over them)
    heads = bk.to_numpy(
        relaxcat.gumbel_noise(
            bk.asarray(np.zeros((3, 4, 8))), rng=relaxcat.Philox(np.arange(3)[:, None])
        )
    )
    assert len({tuple(np.round(h, 12)) for h in heads.reshape(12, 8)}) == 12


@pytest.mark.parametrize(
    "chunks", [(100, 1000), (1000, 300), (333, 251), ((10, 990), (1, 999))], ids=str
)
@pytest.mark.parametrize("name", list(KEYS))
def test_any_dask_chunking_equals_numpy(name, chunks):
    da = pytest.importorskip("dask.array")
    key = KEYS[name]
    expected = relaxcat.gumbel_noise(LOGITS, rng=key)
    got = relaxcat.gumbel_noise(da.from_array(LOGITS, chunks=chunks), rng=key)
    assert got.chunks == da.from_array(LOGITS, chunks=chunks).chunks
    np.testing.assert_array_equal(got.compute(scheduler="sync"), expected)


def test_dask_seed_arrays_may_be_dask_arrays():
    da = pytest.importorskip("dask.array")
    key = relaxcat.Philox(
        da.from_array(SEEDS, chunks=300), offset=da.from_array(OFFSETS, chunks=70)
    )
    got = relaxcat.gumbel_noise(da.from_array(LOGITS, chunks=(250, 400)), rng=key)
    expected = relaxcat.gumbel_noise(LOGITS, rng=relaxcat.Philox(SEEDS, offset=OFFSETS))
    np.testing.assert_array_equal(got.compute(scheduler="sync"), expected)


# -- several draws in one call use distinct streams --------------------------------------


def test_draws_of_one_call_use_streams_in_order(bk):
    x = bk.asarray(LOGITS[:20, :30])
    key = relaxcat.Philox(99, offset=4)
    g = relaxcat.gumbel_noise(x, rng=key)
    # Gumbel-Rao: stream 0 decides the sample, stream 1 holds the conditional draws; with
    # noise= the sample is fixed and stream 1 is still the conditional draws.
    kw = {"hard": True, "estimator": "gumbel_rao", "samples": 3}
    a = relaxcat.gumbel_softmax(x, 0.5, rng=key, **kw)
    b = relaxcat.gumbel_softmax(x, 0.5, noise=g, rng=key, **kw)
    np.testing.assert_array_equal(bk.to_numpy(a), bk.to_numpy(b))
    np.testing.assert_array_equal(
        bk.to_numpy(a), bk.to_numpy(relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=key))
    )
    # relaxed_topk(method="max") draws one (k, *shape) array: stream 0, its leading index
    # part of the position, so draw 0 is gumbel_noise's
    s = relaxcat.gumbel_noise(x, shape=(2, 20, 30), rng=key)
    s = bk.to_numpy(s)
    np.testing.assert_array_equal(s[0], bk.to_numpy(g))
    assert not np.isclose(s[1], bk.to_numpy(g)).any()


# -- the law of the noise -----------------------------------------------------------------


@pytest.mark.host_values
def test_max_law_in_both_tails_and_chi_square(bk):
    # max g - log n is standard Gumbel (the upper tail, to 2**-65 resolution) and max E -
    # log n too (the lower tail). 16 batches of 2**21 float32 draws; a 2**-24 uniform grid
    # would put every batch's upper statistic below 16.6 - 14.6 = 2.0, which the exact law
    # exceeds with probability 0.13: P(all 16 below) is 0.1, and KS sees the cut.
    like = bk.asarray(np.zeros(2), "float32")
    n = 2**21
    upper, lower = [], []
    for b in range(16):
        g = bk.to_numpy(relaxcat.gumbel_noise(like, shape=(n,), rng=relaxcat.Philox(b, offset=77)))
        upper.append(float(g.max()) - math.log(n))
        lower.append(math.exp(-float(g.min())) - math.log(n))
        if b == 0:
            # 20 equiprobable bins of the Gumbel law: chi-square, 19 degrees of freedom
            edges = stats.gumbel_r.ppf(np.linspace(0, 1, 21)[1:-1])
            counts = np.bincount(np.searchsorted(edges, g), minlength=20)
            assert stats.chisquare(counts).pvalue > 1e-4
    assert stats.kstest(upper, stats.gumbel_r.cdf).pvalue > 1e-4
    assert stats.kstest(lower, stats.gumbel_r.cdf).pvalue > 1e-4


@pytest.mark.host_values
def test_consecutive_row_seeds_give_independent_categorical_samples(bk):
    # 20000 rows with seeds 0..19999, each drawing from the same 4 categories: the counts
    # must follow the categorical law (chi-square, 3 dof). Correlated streams between
    # neighbouring seeds (the failure of hashing seeds badly) would distort them.
    p = np.array([0.1, 0.2, 0.3, 0.4])
    x = bk.asarray(np.broadcast_to(np.log(p), (20000, 4)).copy())
    idx = bk.to_numpy(relaxcat.sample_categorical(x, rng=relaxcat.Philox(np.arange(20000))))
    counts = np.bincount(idx, minlength=4)
    assert stats.chisquare(counts, 20000 * p).pvalue > 1e-4
    pairs = np.bincount(idx[:-1] * 4 + idx[1:], minlength=16)  # neighbours independent
    assert stats.chisquare(pairs, 19999 * np.outer(p, p).ravel()).pvalue > 1e-4


# -- JAX transformations and sharding ----------------------------------------------------


@pytest.mark.backends("jax")
def test_jax_jit_and_vmap_with_traced_seeds(bk):
    jax, jnp = bk.jax, bk.lib
    x = bk.asarray(LOGITS[:50, :40])
    seeds = SEEDS[:50]
    expected = relaxcat.gumbel_softmax(
        LOGITS[:50, :40], 0.5, hard=True, rng=relaxcat.Philox(seeds, offset=3)
    )
    f = jax.jit(
        lambda x, s, o: relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=relaxcat.Philox(s, offset=o))
    )
    np.testing.assert_array_equal(np.asarray(f(x, jnp.asarray(seeds), jnp.asarray(3))), expected)
    # vmap over rows: each row's seed is a 0-d traced array, i.e. one seed for that row
    g = jax.vmap(
        lambda row, s: relaxcat.gumbel_softmax(
            row, 0.5, hard=True, rng=relaxcat.Philox(s, offset=3)
        )
    )
    np.testing.assert_array_equal(np.asarray(g(x, jnp.asarray(seeds))), expected)


SHARDED = """
import numpy as np, jax, jax.numpy as jnp, relaxcat
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
x = np.random.default_rng(0).normal(size=(64, 96)).astype(np.float32)
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"))
key = relaxcat.Philox(np.arange(64) * 3, offset=5)
expected = relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=key)
for spec in (P("a", None), P(None, "b"), P("a", "b")):
    xs = jax.device_put(jnp.asarray(x), NamedSharding(mesh, spec))
    for y in (relaxcat.gumbel_softmax(xs, 0.5, hard=True, rng=key),
              jax.jit(lambda v: relaxcat.gumbel_softmax(v, 0.5, hard=True, rng=key))(xs)):
        np.testing.assert_array_equal(np.asarray(y), expected)
print("sharded ok")
"""


@pytest.mark.backends("jax")
def test_jax_sharded_arrays_draw_the_same_sample(bk):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("sharded ok")


@pytest.mark.backends("jax")
def test_jax_without_x64_gives_the_same_words(bk):
    code = (
        "import numpy as np, jax.numpy as jnp, relaxcat\n"
        "x = np.random.default_rng(0).normal(size=(30, 77)).astype(np.float32)\n"
        "key = relaxcat.Philox(np.arange(30, dtype=np.uint32) * 977, offset=12)\n"
        "a = relaxcat.sample_categorical(x, rng=key)\n"
        "b = np.asarray(relaxcat.sample_categorical(jnp.asarray(x), rng=key))\n"
        "assert jnp.asarray(x).dtype == jnp.float32 and (a == b).all(), (a, b)\n"
        "print('x32 ok')\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]


# -- errors ------------------------------------------------------------------------------


def test_bad_keys_are_named(bk):
    with pytest.raises(ValueError, match=r"seed=-1 is outside \[0, 2\*\*64\)"):
        relaxcat.Philox(-1)
    with pytest.raises(ValueError, match="offset"):
        relaxcat.Philox(1, offset=2**64)
    with pytest.raises(TypeError, match="not a bool"):
        relaxcat.Philox(True)
    with pytest.raises(TypeError, match="integer array"):
        relaxcat.Philox(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="Python int or an integer array"):
        relaxcat.Philox("7")
    x = bk.asarray(np.zeros((4, 3)))
    with pytest.raises(
        ValueError, match=r"seed of shape \(5,\) does not broadcast to the batch shape \(4,\)"
    ):
        relaxcat.gumbel_softmax(x, rng=relaxcat.Philox(np.arange(5)))
    if bk.name not in ("dask",):
        with pytest.raises(ValueError, match="negative"):
            relaxcat.gumbel_noise(x, rng=relaxcat.Philox(np.array([1, -2, 3, 4])))


@pytest.mark.backends("torch")
def test_a_seed_array_of_another_library_is_refused(bk):
    torch = bk.lib
    with pytest.raises(
        TypeError, match="Philox seed is a torch array but the logits are a numpy array"
    ):
        relaxcat.gumbel_noise(np.zeros((2, 3)), rng=relaxcat.Philox(torch.arange(2)))


# -- the native kernels equal the generic path -------------------------------------------

KERNEL_CASES = [
    ((5, 7), relaxcat.Philox(3, offset=2**40 + 5), -1),
    ((64, 1001), relaxcat.Philox(np.arange(64) * 977, offset=9), -1),
    ((3, 4, 9), relaxcat.Philox(np.arange(12).reshape(3, 4), offset=np.arange(4)), -1),
    ((20001,), relaxcat.Philox(2**63), -1),
    ((6, 5), relaxcat.Philox(np.arange(5)), -2),
    ((3, 50000), relaxcat.Philox(7), -1),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "key", "axis"), KERNEL_CASES)
def test_numpy_kernel_is_the_generic_path_bit_for_bit(shape, key, axis, dtype):
    from relaxcat._noise import gumbel_from_exponential
    from relaxcat._philox import PhiloxSource

    backend = backend_of(np.zeros(1))
    fast = backend.noise_source(key, "cpu", axis).standard_gumbel(shape, np.dtype(dtype))
    generic = PhiloxSource(backend, key, "cpu", axis).standard_exponential(shape, np.dtype(dtype))
    generic = gumbel_from_exponential(backend.xp, generic)
    assert fast.dtype == generic.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(fast, generic)


@pytest.mark.backends("torch")
@pytest.mark.parametrize(("shape", "key", "axis"), KERNEL_CASES[:3])
def test_torch_integer_words_equal_numpys(bk, shape, key, axis):
    # The generic path in torch's int64 words: what torch.compile, torch.func and CUDA run.
    from relaxcat._philox import PhiloxSource

    x = bk.asarray(np.zeros(shape))
    backend = backend_of(x)
    seed, offset = (
        bk.asarray(v, None) if isinstance(v, np.ndarray) else v for v in (key.seed, key.offset)
    )
    source = PhiloxSource(backend, relaxcat.Philox(seed, offset=offset), x.device, axis)
    hi, lo = source.words(shape)
    expected = words_of_numpy(key, shape, axis)
    np.testing.assert_array_equal(bk.to_numpy(hi).astype(np.uint64), expected[0])
    np.testing.assert_array_equal(bk.to_numpy(lo).astype(np.uint64), expected[1])


@pytest.mark.backends("torch")
def test_torch_compile_and_vmap_draw_the_same_sample(bk):
    torch = bk.lib
    x = bk.asarray(LOGITS[:30, :50])
    seeds = SEEDS[:30]
    expected = relaxcat.gumbel_softmax(LOGITS[:30, :50], 0.5, hard=True, rng=relaxcat.Philox(seeds))
    per_row = torch.func.vmap(
        lambda row, s: relaxcat.gumbel_softmax(row, 0.5, hard=True, rng=relaxcat.Philox(s)),
        randomness="same",
    )
    np.testing.assert_array_equal(bk.to_numpy(per_row(x, torch.as_tensor(seeds))), expected)
    compiled = torch.compile(
        lambda v, s: relaxcat.gumbel_softmax(v, 0.5, hard=True, rng=relaxcat.Philox(s)),
        fullgraph=True,
    )
    np.testing.assert_array_equal(bk.to_numpy(compiled(x, torch.as_tensor(seeds))), expected)


@pytest.mark.parametrize(
    "chunks", [(100, 1000), (333, 251), ((10, 990), (1, 999)), (1000, 7)], ids=str
)
@pytest.mark.parametrize("name", list(KEYS))
def test_dask_gumbel_blocks_equal_the_generic_path(name, chunks):
    # Blocks whose positions form runs take the NumPy kernel (odd starts included); the
    # others the generic words. Both must be NumPy's generic noise bit for bit.
    da = pytest.importorskip("dask.array")
    from relaxcat._noise import gumbel_from_exponential
    from relaxcat._philox import PhiloxSource

    key = KEYS[name]
    backend = backend_of(LOGITS)
    expected = PhiloxSource(backend, key, "cpu", -1).standard_exponential(LOGITS.shape, np.float64)
    expected = gumbel_from_exponential(backend.xp, expected)
    x = da.from_array(LOGITS, chunks=chunks)
    source = backend_of(x).noise_source(key, backend_of(x).device(x), -1)
    got = source.standard_gumbel(LOGITS.shape, np.float64)
    np.testing.assert_array_equal(got.compute(scheduler="sync"), expected)


def _philox_child(queue):  # runs in a forked child: the parent's pool threads are gone
    g = relaxcat.gumbel_noise(np.zeros((300, 1000), np.float32), rng=relaxcat.Philox(7))
    queue.put(hashlib.sha256(g.tobytes()).hexdigest())  # small (see result_of_forked_child)


@pytest.mark.backends("numpy")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_numpy_philox_threads_work_in_a_forked_child(bk):
    # 300000 elements: above the threshold from which the blocks are filled by the pool.
    from relaxcat._backends import _numpy_philox

    assert _numpy_philox.PARALLEL_MIN <= 300 * 1000
    parent = relaxcat.gumbel_noise(np.zeros((300, 1000), np.float32), rng=relaxcat.Philox(7))
    assert _numpy_philox.POOL.executor is not None  # started in the parent
    assert result_of_forked_child(_philox_child) == hashlib.sha256(parent.tobytes()).hexdigest()
