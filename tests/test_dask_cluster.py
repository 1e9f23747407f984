"""relaxcat on a real Dask cluster: a ``distributed.LocalCluster`` with two worker processes.

``gumbel_softmax`` (soft and hard) and ``relaxed_topk`` (soft and exact k-hot) build their
graphs on the client, lazily, and the workers run them; both workers must hold blocks of
each result. The results are checked against NumPy given the same noise, for exact one-hot
and k-hot values, and for row sums.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import relaxcat

pytestmark = pytest.mark.backends("dask")

RNG = np.random.default_rng(77)
LOGITS = RNG.normal(size=(600, 40)) * 2
LOGITS[::9, 7] = -np.inf
NOISE = RNG.gumbel(size=LOGITS.shape)
CHUNKS = (75, 15)  # 8 x 3 blocks: the category axis is split, unevenly (15, 15, 10)


@pytest.fixture(scope="module")
def client(bk):
    distributed = pytest.importorskip("distributed", reason="distributed is not installed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            memory_limit="768MiB",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


def on_cluster(client, y):
    """Run ``y`` on the workers; return its value and the workers that hold its blocks."""
    persisted = client.persist(y)
    value = client.compute(persisted).result()
    workers = {w for holders in client.who_has(persisted).values() for w in holders}
    return np.asarray(value), workers


def chunked(bk, a):
    return bk.lib.from_array(a, chunks=CHUNKS)


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_on_two_worker_processes(bk, client, hard):
    assert len(client.scheduler_info()["workers"]) == 2
    x = chunked(bk, LOGITS)
    y = relaxcat.gumbel_softmax(x, 0.3, hard=hard, noise=chunked(bk, NOISE))
    assert y.chunks == x.chunks
    got, workers = on_cluster(client, y)
    assert len(workers) == 2, workers  # both processes computed blocks of the sample
    expected = relaxcat.gumbel_softmax(LOGITS, 0.3, hard=hard, noise=NOISE)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)
    assert np.all(got[np.isneginf(LOGITS)] == 0.0)
    if hard:
        assert set(np.unique(got).tolist()) == {0.0, 1.0}
        np.testing.assert_array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("hard", [False, True])
def test_relaxed_topk_on_two_worker_processes(bk, client, hard):
    k = 5
    x = chunked(bk, LOGITS)
    y = relaxcat.relaxed_topk(x, k, 0.4, hard=hard, noise=chunked(bk, NOISE))
    assert y.chunks == x.chunks
    got, workers = on_cluster(client, y)
    assert len(workers) == 2, workers
    expected = relaxcat.relaxed_topk(LOGITS, k, 0.4, hard=hard, noise=NOISE)
    np.testing.assert_allclose(got.sum(-1), k, rtol=1e-12)
    assert np.all(got[np.isneginf(LOGITS)] == 0.0)
    if hard:  # exactly k-hot: the k largest logits + noise
        assert set(np.unique(got).tolist()) == {0.0, 1.0}
        np.testing.assert_array_equal(got, expected)
        top = np.argsort(-(LOGITS + NOISE), axis=-1, kind="stable")[:, :k]
        np.testing.assert_array_equal(np.take_along_axis(got, top, axis=-1), 1.0)
    else:
        assert np.all(got >= 0)  # not <= 1: see relaxed_topk's notes on "successive"
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_seeded_sample_is_the_same_on_the_cluster_and_locally(bk, client):
    # The seeds of the chunks' streams are in the graph: where it runs does not matter.
    x = chunked(bk, LOGITS.astype(np.float32))
    y = relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=2026)
    got, _ = on_cluster(client, y)
    np.testing.assert_array_equal(got, bk.to_numpy(y))
    np.testing.assert_array_equal(got.sum(-1), 1.0)
