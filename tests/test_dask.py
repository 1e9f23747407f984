"""Dask: lazy calls, the logits' chunks everywhere, Dask's own generator, split category axes.

The backend suite already runs every test on Dask arrays whose category axis is split in
two, under a scheduler that fails any compute during a call (see ``conftest.py``). These
tests cover what is particular to Dask: other chunkings, noise that follows the chunks,
the generators accepted, and explicit ``noise=``/``tau`` arrays with other chunks.
"""

from __future__ import annotations

import numpy as np
import pytest

import relaxcat

pytestmark = pytest.mark.backends("dask")

RNG = np.random.default_rng(70)
LOGITS = RNG.normal(size=(40, 23)) * 3
LOGITS[::4, 5] = -np.inf
NOISE = RNG.gumbel(size=LOGITS.shape)

# Row chunks x category chunks; the category axis (23) split evenly, unevenly, by one.
CHUNKINGS = [(40, 23), (7, 23), (40, 5), (13, (1, 9, 2, 11)), (5, 1)]


def chunked(bk, a, chunks, dtype="float64"):
    return bk.lib.from_array(np.asarray(a, dtype=dtype), chunks=chunks)


def numpy_reference(**kwargs):
    return relaxcat.gumbel_softmax(LOGITS, noise=NOISE, **kwargs)


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [0.05, 1.0, 30.0])
def test_split_category_axis_equals_numpy_given_the_same_noise(bk, chunks, hard, tau):
    x = chunked(bk, LOGITS, chunks)
    y = relaxcat.gumbel_softmax(x, tau, hard=hard, noise=chunked(bk, NOISE, chunks))
    assert isinstance(y, bk.lib.Array)
    assert y.chunks == x.chunks
    got, expected = bk.to_numpy(y), numpy_reference(tau=tau, hard=hard)
    if hard:
        np.testing.assert_array_equal(got, expected)
    else:  # Dask sums a row chunk by chunk: the same numbers, added in another order
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("axis", [0, 1])
def test_other_axes_keep_the_chunks(bk, axis):
    x = chunked(bk, LOGITS, (9, 6))
    g = chunked(bk, NOISE, (9, 6))
    for hard in (False, True):
        y = relaxcat.gumbel_softmax(x, 0.4, hard=hard, axis=axis, noise=g)
        assert y.chunks == x.chunks
        expected = relaxcat.gumbel_softmax(LOGITS, 0.4, hard=hard, axis=axis, noise=NOISE)
        np.testing.assert_allclose(bk.to_numpy(y), expected, rtol=1e-13, atol=1e-300)


def test_ties_across_chunk_boundaries_go_to_the_first_index(bk):
    logits = np.zeros((4, 9))
    logits[0, [2, 3]] = 5.0  # chunk boundary between 2 and 3
    logits[1, [8, 0]] = 5.0  # first and last chunk
    logits[2, [3, 6, 7]] = 5.0  # a tie inside a later chunk, and with an earlier one
    logits[3] = 1.0  # all tied
    x = chunked(bk, logits, (2, 3))
    y = bk.to_numpy(relaxcat.gumbel_softmax(x, hard=True, noise=chunked(bk, 0 * logits, (2, 3))))
    np.testing.assert_array_equal(np.argmax(y, axis=-1), [2, 0, 3, 0])
    np.testing.assert_array_equal(y.sum(-1), 1.0)


@pytest.mark.parametrize("estimator", ["st", "reinmax", "gumbel_rao"])
def test_estimators_give_the_one_hot_with_the_logits_chunks(bk, estimator):
    x = chunked(bk, LOGITS, (11, 8))
    samples = 3 if estimator == "gumbel_rao" else 1
    kwargs = {"hard": True, "estimator": estimator, "samples": samples}
    y = relaxcat.gumbel_softmax(x, 0.5, noise=chunked(bk, NOISE, (11, 8)), rng=1, **kwargs)
    assert y.chunks == x.chunks
    np.testing.assert_array_equal(bk.to_numpy(y), numpy_reference(tau=0.5, **kwargs, rng=1))
    y = relaxcat.gumbel_softmax(x, 0.5, rng=2, **kwargs)
    assert y.chunks == x.chunks
    np.testing.assert_array_equal(bk.to_numpy(y).sum(-1), 1.0)


def test_noise_follows_the_logits_chunks(bk):
    x = chunked(bk, LOGITS, (13, (1, 9, 2, 11)), "float32")
    g = relaxcat.gumbel_noise(x, rng=5)
    assert g.chunks == x.chunks and g.dtype == x.dtype
    g2 = relaxcat.gumbel_noise(x, shape=(3, *x.shape), rng=5)  # extra leading axis: one chunk
    assert g2.chunks == ((3,), *x.chunks)
    g3 = relaxcat.gumbel_noise(x, shape=(5, 7), rng=5)  # unrelated shape: Dask's choice
    assert g3.shape == (5, 7)
    assert np.isfinite(bk.to_numpy(g3)).all()


def test_a_seed_reproduces_the_sample_for_the_same_chunking(bk):
    x = chunked(bk, LOGITS, (7, 6))
    a = bk.to_numpy(relaxcat.gumbel_softmax(x, 0.5, rng=11))
    b = bk.to_numpy(relaxcat.gumbel_softmax(chunked(bk, LOGITS, (7, 6)), 0.5, rng=11))
    np.testing.assert_array_equal(a, b)
    via_noise = relaxcat.gumbel_softmax(x, 0.5, noise=relaxcat.gumbel_noise(x, rng=11))
    np.testing.assert_array_equal(a, bk.to_numpy(via_noise))
    # Documented: Dask draws one stream per chunk, so another chunking is another sample.
    c = bk.to_numpy(relaxcat.gumbel_softmax(chunked(bk, LOGITS, (20, 23)), 0.5, rng=11))
    assert not np.allclose(a, c)


def test_seed_is_dasks_default_rng(bk):
    x = chunked(bk, np.zeros((6, 10)), (3, 4), "float32")
    # float64 draws (exact tails), rounded to float32 chunk by chunk, clamped at E_MIN
    e = bk.lib.random.default_rng(3).standard_exponential(
        size=x.shape, dtype=np.float64, chunks=x.chunks
    )
    expected = -np.log(np.maximum(bk.to_numpy(e).astype(np.float32), np.float32(2.0**-56)))
    np.testing.assert_array_equal(bk.to_numpy(relaxcat.gumbel_noise(x, rng=3)), expected)


def test_a_lazy_result_is_the_same_each_time_it_is_computed(bk):
    # The chunks' seeds are fixed in the graph when it is built, even with rng=None.
    y = relaxcat.gumbel_softmax(chunked(bk, LOGITS, (7, 6)), 0.5)
    np.testing.assert_array_equal(bk.to_numpy(y), bk.to_numpy(y))
    np.testing.assert_array_equal(bk.to_numpy(y[5:20, 3:]), bk.to_numpy(y)[5:20, 3:])


@pytest.mark.parametrize("kind", ["dask", "numpy"])
def test_generators_advance_and_reproduce(bk, kind):
    make = bk.lib.random.default_rng if kind == "dask" else np.random.default_rng
    x = chunked(bk, LOGITS, (7, 6))
    gen = make(4)
    a = bk.to_numpy(relaxcat.gumbel_softmax(x, rng=gen))
    b = bk.to_numpy(relaxcat.gumbel_softmax(x, rng=gen))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, bk.to_numpy(relaxcat.gumbel_softmax(x, rng=make(4))))


def test_legacy_random_states_are_refused(bk):
    x = chunked(bk, LOGITS, (7, 6))
    for legacy in (bk.lib.random.RandomState(0), np.random.RandomState(0)):
        with pytest.raises(TypeError, match="default_rng"):
            relaxcat.gumbel_softmax(x, rng=legacy)


def test_explicit_noise_and_tau_with_other_chunks_are_aligned(bk):
    x = chunked(bk, LOGITS, (7, 6))
    noise = chunked(bk, NOISE, (20, 5))
    taus = np.exp(RNG.normal(size=(40, 1)))
    tau = chunked(bk, taus, (3, 1))
    y = relaxcat.gumbel_softmax(x, tau, noise=noise)
    assert y.chunks == x.chunks
    expected = relaxcat.gumbel_softmax(LOGITS, taus, noise=NOISE)
    np.testing.assert_allclose(bk.to_numpy(y), expected, rtol=1e-13, atol=1e-300)


def test_unknown_chunk_sizes_are_refused(bk):
    import dask

    x = chunked(bk, LOGITS, (7, 6))
    rows = x[x[:, 0] > 0]  # a boolean index: Dask does not know how many rows are left
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        relaxcat.gumbel_softmax(rows, rng=0)
    with dask.config.set(scheduler="sync"):  # not relaxcat's call: computing is allowed
        rows = rows.compute_chunk_sizes()
    assert relaxcat.gumbel_softmax(rows, rng=0).chunks == rows.chunks


def test_unknown_chunk_sizes_message_fits_functions_that_draw_no_noise(bk):
    x = chunked(bk, LOGITS, (7, 6))
    rows = x[x[:, 0] > 0]
    for call in (
        lambda: relaxcat.categorical_kl(rows, rows),
        lambda: relaxcat.concrete_log_prob(rows, rows, 0.5),
        lambda: relaxcat.gumbel_softmax(rows, rng=0),
    ):
        with pytest.raises(ValueError, match="compute_chunk_sizes") as info:
            call()
        message = str(info.value)
        assert "unknown chunk sizes (NaN); relaxcat needs the chunk sizes" in message
        assert "noise" not in message


def test_nothing_is_computed_during_a_call(bk):
    import dask

    computed = []

    class Record(dask.callbacks.Callback):
        def _start(self, dsk):
            computed.append(len(dsk))

    x = chunked(bk, LOGITS, (7, 6))
    tau = chunked(bk, np.full((40, 1), 0.5), (7, 1))
    with Record():
        for hard in (False, True):
            relaxcat.gumbel_softmax(x, tau, hard=hard, rng=0)
            relaxcat.gumbel_softmax(x, 0.5, hard=hard, noise=chunked(bk, NOISE, (7, 6)))
        relaxcat.gumbel_softmax(x, hard=True, estimator="gumbel_rao", samples=2, rng=0)
        relaxcat.gumbel_noise(x)
        relaxcat.anneal_tau(chunked(bk, np.arange(5), 2))
    assert computed == []


@pytest.mark.parametrize("hard", [False, True])
def test_memory_is_bounded_by_the_chunks_not_the_array(bk, hard):
    # 48 chunks of 1 MiB of float32 logits, made lazily; computing the category counts
    # must hold a few chunks at a time (the logits, the noise, the sample), not the array.
    import tracemalloc

    def category_counts(rows, cols, chunk_rows):
        x = bk.lib.random.default_rng(0).standard_normal(
            size=(rows, cols), dtype=np.float32, chunks=(chunk_rows, cols)
        )
        return relaxcat.gumbel_softmax(x, 0.5, hard=hard, rng=1).sum(axis=0)

    rows, cols, chunk_rows = 48 * 1024, 256, 1024
    bk.to_numpy(category_counts(2, cols, 1))  # first computes allocate caches: not counted
    counts = category_counts(rows, cols, chunk_rows)
    chunk = chunk_rows * cols * 4
    tracemalloc.start()
    try:
        total = bk.to_numpy(counts).sum()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(total, rows, rtol=1e-6)
    assert peak < 12 * chunk, f"peak {peak / chunk:.1f} chunks of {chunk} bytes"


def test_namespace_clip_keeps_chunks_and_dtype(bk):
    xp = relaxcat._backends.backend_of(chunked(bk, LOGITS, (7, 6))).xp
    a = np.linspace(-3, 3, 40 * 23).reshape(40, 23).astype(np.float32)
    x = chunked(bk, a, (7, 6), "float32")
    bounds = np.linspace(-1, 0, 23)
    for lo, hi, expected in [
        (-1.0, 2, np.clip(a, -1, 2)),
        (None, 0.5, np.minimum(a, 0.5)),
        (None, None, a),
        (chunked(bk, bounds, 6), 1.0, np.clip(a, bounds, 1.0).astype(np.float32)),
    ]:
        y = xp.clip(x, min=lo, max=hi)
        assert y.dtype == x.dtype and y.chunks == x.chunks
        np.testing.assert_array_equal(bk.to_numpy(y), expected)


def relaxcat_references(graph):
    """The relaxcat modules each task of a Dask graph needs, as ``{key: (task, names)}``.

    Workers unpickle tasks with cloudpickle, and every module that imports is named in the
    pickle as a string: the module of a global (``GLOBAL``, or the string pushed before
    ``STACK_GLOBAL``), the ``__module__`` of a function pickled by value, an imported module
    (``subimport``). So a task needs relaxcat iff one of its strings is ``relaxcat`` or
    ``relaxcat.<name>``. Searching the bytes instead also finds the file paths that Dask's
    own closures carry, which contain "relaxcat" in a clone or virtualenv named after it.
    """
    import pickletools
    import re

    cloudpickle = pytest.importorskip("cloudpickle", reason="cloudpickle is not installed")
    module = re.compile(r"relaxcat(?:\.\w+)*")
    found = {}
    for key, task in dict(graph).items():
        strings = []
        for op, arg, _ in pickletools.genops(cloudpickle.dumps(task)):
            if op.name in ("GLOBAL", "INST"):  # "module name" in one argument
                strings += arg.split(" ", 1)
            elif isinstance(arg, str):
                strings.append(arg)
        names = []
        for s, after in zip(strings, [*strings[1:], ""], strict=True):
            if module.fullmatch(s):  # the string after a module is its global's name
                named = after.isidentifier() and not after.startswith("__")
                names.append(f"{s}.{after}" if named else s)
        if names:
            found[key] = (task, names)
    return found


def assert_no_relaxcat(graph):
    found = relaxcat_references(graph)
    if found:
        lines = [
            f"  {key}: {str(task)[:120]} uses {', '.join(n)}" for key, (task, n) in found.items()
        ]
        pytest.fail(f"{len(found)} task(s) need relaxcat on the workers:\n" + "\n".join(lines[:5]))


def test_workers_need_no_relaxcat(bk):
    # The graph holds NumPy and Dask functions only: relaxcat need not be on the workers.
    x = chunked(bk, LOGITS, (7, 6))
    # The check finds relaxcat code: a function by reference, a module, a function by value.
    by_value = lambda e: e  # a local function: cloudpickle copies it with its __module__
    by_value.__module__ = "relaxcat._core"
    core, meta = relaxcat._core, np.array(())
    for graph, expected in [
        (x.map_blocks(core.gumbel_from_exponential, meta=meta).dask, r"relaxcat\.\w+\.gumbel_from"),
        ({("probe", 0): (getattr, core, "gumbel_from_exponential")}, r"relaxcat\._core"),
        (x.map_blocks(by_value, meta=meta).dask, r"relaxcat\._core"),
    ]:
        with pytest.raises(pytest.fail.Exception, match=expected):
            assert_no_relaxcat(graph)
    tau = chunked(bk, np.full((40, 1), 0.5), (7, 1))
    for y in (
        relaxcat.gumbel_softmax(x, tau, rng=0),
        relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=0),
        relaxcat.gumbel_softmax(x, hard=True, estimator="reinmax", rng=0),
        relaxcat.gumbel_noise(x),
    ):
        assert_no_relaxcat(y.__dask_graph__())


# -- the distribution functions ----------------------------------------------------------

SPLIT = (13, (1, 9, 2, 11))  # uneven chunks, the category axis in four


def both(bk, a, chunks=SPLIT):
    """``a`` as NumPy float64 and as a Dask array with ``chunks``."""
    a = np.asarray(a, dtype=np.float64)
    return a, chunked(bk, a, chunks)


@pytest.mark.parametrize("tau", [0.05, 1.0])
def test_log_gumbel_softmax_equals_numpy(bk, tau):
    (x_np, x), (g_np, g) = both(bk, LOGITS), both(bk, NOISE)
    y = relaxcat.log_gumbel_softmax(x, tau, noise=g)
    assert y.chunks == x.chunks
    expected = relaxcat.log_gumbel_softmax(x_np, tau, noise=g_np)
    got = bk.to_numpy(y)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hard", [False, True])
def test_relaxed_bernoulli_equals_numpy(bk, hard):
    logits = RNG.normal(size=(40, 23)) * 2
    (x_np, x), (l_np, logistic) = both(bk, logits), both(bk, RNG.logistic(size=logits.shape))
    y = relaxcat.relaxed_bernoulli(x, 0.3, hard=hard, noise=logistic)
    assert y.chunks == x.chunks
    expected = relaxcat.relaxed_bernoulli(x_np, 0.3, hard=hard, noise=l_np)
    np.testing.assert_allclose(bk.to_numpy(y), expected, rtol=1e-13, atol=1e-300)
    y = relaxcat.relaxed_bernoulli(x, 0.3, hard=hard, rng=3)  # (2, *shape) draws, aligned
    assert y.chunks == x.chunks
    assert np.all((bk.to_numpy(y) >= 0) & (bk.to_numpy(y) <= 1))


@pytest.mark.parametrize("method", ["successive", "max"])
@pytest.mark.parametrize("hard", [False, True])
def test_relaxed_topk_equals_numpy_with_split_categories(bk, method, hard):
    k = 3
    x_np, x = both(bk, LOGITS)
    noise = NOISE if method == "successive" else RNG.gumbel(size=(k, *LOGITS.shape))
    chunks = SPLIT if method == "successive" else ((k,), *x.chunks)
    g_np, g = both(bk, noise, chunks)
    y = relaxcat.relaxed_topk(x, k, 0.5, hard=hard, method=method, noise=g)
    assert y.chunks == x.chunks
    expected = relaxcat.relaxed_topk(x_np, k, 0.5, hard=hard, method=method, noise=g_np)
    got = bk.to_numpy(y)
    if hard:
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got.sum(-1), k)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    y = relaxcat.relaxed_topk(x, k, 0.5, hard=hard, method=method, rng=4)
    assert y.chunks == x.chunks
    if hard or method == "successive":  # the soft "max" relaxation sums to at most k
        np.testing.assert_allclose(bk.to_numpy(y).sum(-1), k, rtol=1e-12)


def test_exact_samplers_use_the_noise_of_gumbel_noise(bk):
    x_np, x = both(bk, LOGITS)
    s = x_np + bk.to_numpy(relaxcat.gumbel_noise(x, rng=8))
    draws = relaxcat.sample_categorical(x, rng=8)
    np.testing.assert_array_equal(bk.to_numpy(draws), np.argmax(s, axis=-1))
    top = relaxcat.gumbel_topk(x, 4, rng=8)
    expected = np.argsort(-s, axis=-1, kind="stable")[:, :4]
    np.testing.assert_array_equal(bk.to_numpy(top), expected)
    hot = relaxcat.gumbel_softmax(x, hard=True, rng=8)
    np.testing.assert_array_equal(np.argmax(bk.to_numpy(hot), -1), bk.to_numpy(draws))


def test_densities_and_kl_equal_numpy(bk):
    tau = 0.7
    x_np, x = both(bk, LOGITS)
    log_y_np = relaxcat.log_gumbel_softmax(x_np, tau, noise=NOISE)
    y_np = np.exp(log_y_np)
    log_y, y = chunked(bk, log_y_np, SPLIT), chunked(bk, y_np, SPLIT)
    for f, args, args_np in [
        (relaxcat.exp_concrete_log_prob, (log_y, x, tau), (log_y_np, x_np, tau)),
        (relaxcat.concrete_log_prob, (y, x, tau), (y_np, x_np, tau)),
        (relaxcat.categorical_kl, (x, chunked(bk, NOISE, SPLIT)), (x_np, NOISE)),
    ]:
        got = f(*args)
        assert isinstance(got, bk.lib.Array)
        np.testing.assert_allclose(bk.to_numpy(got), f(*args_np), rtol=1e-10, atol=1e-10)
    b = RNG.uniform(0.05, 0.95, size=LOGITS.shape)
    got = relaxcat.relaxed_bernoulli_log_prob(chunked(bk, b, SPLIT), chunked(bk, NOISE, SPLIT), tau)
    expected = relaxcat.relaxed_bernoulli_log_prob(b, NOISE, tau)
    np.testing.assert_allclose(bk.to_numpy(got), expected, rtol=1e-12)


def test_distribution_graphs_hold_no_relaxcat_code(bk):
    x = chunked(bk, LOGITS, SPLIT)
    for y in (
        relaxcat.log_gumbel_softmax(x, 0.5, rng=0),
        relaxcat.relaxed_bernoulli(x, 0.5, rng=0),
        relaxcat.sample_categorical(x, rng=0),
        relaxcat.gumbel_topk(x, 2, rng=0),
        relaxcat.relaxed_topk(x, 2, 0.5, rng=0),
        relaxcat.relaxed_topk(x, 2, 0.5, hard=True, method="max", rng=0),
        relaxcat.exp_concrete_log_prob(x, x, 0.5),
    ):
        assert_no_relaxcat(y.__dask_graph__())
