"""Bad input to the distribution functions raises an error that names the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest

import relaxcat

B, N = 4, 3
GOOD = np.zeros((B, N))
Y = np.full((B, N), 1 / N)

SAMPLERS = {
    "log_gumbel_softmax": lambda x, **kw: relaxcat.log_gumbel_softmax(x, **kw),
    "relaxed_bernoulli": lambda x, **kw: relaxcat.relaxed_bernoulli(x, **kw),
    "sample_categorical": lambda x, **kw: relaxcat.sample_categorical(x, **kw),
    "gumbel_topk": lambda x, **kw: relaxcat.gumbel_topk(x, 2, **kw),
    "relaxed_topk": lambda x, **kw: relaxcat.relaxed_topk(x, 2, **kw),
    "relaxed_topk_max": lambda x, **kw: relaxcat.relaxed_topk(x, 2, method="max", **kw),
}
CATEGORICAL = [n for n in SAMPLERS if n != "relaxed_bernoulli"]
DENSITIES = {
    "concrete_log_prob": relaxcat.concrete_log_prob,
    "exp_concrete_log_prob": relaxcat.exp_concrete_log_prob,
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_integer_logits(bk, name):
    with pytest.raises(TypeError, match=r"logits has dtype .*int"):
        SAMPLERS[name](bk.asarray(GOOD, "int32"), rng=0)


@pytest.mark.parametrize("name", CATEGORICAL)
def test_bad_axis(bk, name):
    with pytest.raises(np.exceptions.AxisError, match="axis=5 is out of range"):
        SAMPLERS[name](bk.asarray(GOOD), axis=5, rng=0)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_foreign_generator(bk, name):
    foreign = (
        np.random.default_rng(0) if bk.name not in ("numpy", "array_api_strict", "dask") else 3.5
    )
    with pytest.raises(TypeError, match="rng"):
        SAMPLERS[name](bk.asarray(GOOD), rng=foreign)


@pytest.mark.backends("jax")
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_jax_needs_a_key_everywhere(bk, name):
    with pytest.raises(TypeError, match="needs a PRNG key"):
        SAMPLERS[name](bk.asarray(GOOD))


@pytest.mark.parametrize("name", ["log_gumbel_softmax", "relaxed_bernoulli", "relaxed_topk"])
@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan, math.inf])
def test_bad_tau(bk, name, tau):
    with pytest.raises(ValueError, match=r"tau=.*finite number > 0"):
        SAMPLERS[name](bk.asarray(GOOD), tau=tau, rng=0)


@pytest.mark.parametrize("name", ["log_gumbel_softmax", "relaxed_topk"])
def test_tau_varying_along_categories(bk, name):
    with pytest.raises(ValueError, match="varies along the category axis"):
        SAMPLERS[name](bk.asarray(GOOD), tau=bk.asarray(np.ones(N)), rng=0)


def test_relaxed_bernoulli_tau_broadcasts_elementwise(bk):
    y = relaxcat.relaxed_bernoulli(bk.asarray(GOOD), bk.asarray(np.ones(N)), rng=0)
    assert tuple(y.shape) == (B, N)  # no category axis: any broadcasting tau is fine
    with pytest.raises(ValueError, match="does not broadcast"):
        relaxcat.relaxed_bernoulli(bk.asarray(GOOD), bk.asarray(np.ones(5)), rng=0)


@pytest.mark.parametrize("k", [0, -1, N + 1])
@pytest.mark.parametrize("fn", ["gumbel_topk", "relaxed_topk"])
def test_k_out_of_range_names_k_and_n(bk, k, fn):
    f = getattr(relaxcat, fn)
    with pytest.raises(ValueError, match=rf"k={k} is out of range: with n={N} categories"):
        f(bk.asarray(GOOD), k, rng=0)


@pytest.mark.parametrize("k", [2.0, True, "2", None])
def test_k_must_be_an_int(bk, k):
    with pytest.raises(TypeError, match="k must be an int"):
        relaxcat.gumbel_topk(bk.asarray(GOOD), k, rng=0)
    with pytest.raises(TypeError, match="k must be an int"):
        relaxcat.relaxed_topk(bk.asarray(GOOD), k, rng=0)


def test_unknown_method_lists_the_valid_ones(bk):
    with pytest.raises(ValueError, match=r"method='top' is not known; use one of successive, max"):
        relaxcat.relaxed_topk(bk.asarray(GOOD), 2, method="top", rng=0)


@pytest.mark.parametrize("method", ["successive", "max"])
def test_topk_noise_of_the_wrong_shape(bk, method):
    wrong = np.zeros((B, N)) if method == "max" else np.zeros((2, B, N))
    expected = r"\(2, 4, 3\)" if method == "max" else r"\(4, 3\)"
    with pytest.raises(ValueError, match=rf"noise has shape .*; it must have shape {expected}"):
        relaxcat.relaxed_topk(bk.asarray(GOOD), 2, method=method, noise=bk.asarray(wrong))


def test_relaxed_bernoulli_noise_of_the_wrong_shape(bk):
    with pytest.raises(ValueError, match=r"noise has shape \(2, 4, 3\)"):
        relaxcat.relaxed_bernoulli(bk.asarray(GOOD), noise=bk.asarray(np.zeros((2, B, N))))


@pytest.mark.host_values
@pytest.mark.parametrize("name", CATEGORICAL)
@pytest.mark.parametrize(
    ("row", "message"),
    [([0.0, math.nan, 1.0], "NaN"), ([0.0, math.inf, 1.0], r"\+inf"), ([-math.inf] * 3, "every")],
)
def test_rows_without_a_valid_sample(bk, name, row, message):
    logits = GOOD.copy()
    logits[1] = row
    with pytest.raises(ValueError, match=message):
        SAMPLERS[name](bk.asarray(logits), rng=0)


@pytest.mark.host_values
def test_nan_logits_for_relaxed_bernoulli(bk):
    logits = GOOD.copy()
    logits[0, 0] = math.nan
    with pytest.raises(ValueError, match="logits contains NaN"):
        relaxcat.relaxed_bernoulli(bk.asarray(logits), rng=0)


@pytest.mark.host_values
@pytest.mark.parametrize("fn", ["gumbel_topk", "relaxed_topk", "relaxed_topk_max"])
def test_too_few_unmasked_categories_for_k(bk, fn):
    logits = GOOD.copy()
    logits[2, :2] = -math.inf  # one category left
    with pytest.raises(ValueError, match=r"k=2 but a row of logits has only 1 unmasked"):
        SAMPLERS[fn](bk.asarray(logits), rng=0)


# -- densities and divergence ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(DENSITIES))
def test_density_arguments(bk, name):
    f = DENSITIES[name]
    argname = "y" if name == "concrete_log_prob" else "log_y"
    with pytest.raises(ValueError, match=r"do not broadcast"):
        f(bk.asarray(np.zeros((5, N))), bk.asarray(GOOD), 1.0)
    with pytest.raises(ValueError, match=rf"{argname} has 2 categories along axis 1 but logits"):
        f(bk.asarray(np.zeros((B, 2))), bk.asarray(GOOD), 1.0)
    with pytest.raises(ValueError, match="tau=0"):
        f(bk.asarray(Y), bk.asarray(GOOD), 0)
    with pytest.raises(ValueError, match="varies along the category axis"):
        f(bk.asarray(Y), bk.asarray(GOOD), bk.asarray(np.ones(N)))
    with pytest.raises(TypeError, match=rf"{argname} has dtype"):
        f(bk.asarray(Y, "int32"), bk.asarray(GOOD), 1.0)
    with pytest.raises(np.exceptions.AxisError, match="axis=2"):
        f(bk.asarray(Y), bk.asarray(GOOD), 1.0, axis=2)
    other = np.asarray(Y) if bk.name != "numpy" else [[0.5] * N] * B
    with pytest.raises(TypeError, match=rf"{argname}"):
        f(other, bk.asarray(GOOD), 1.0)


@pytest.mark.host_values
@pytest.mark.parametrize("name", list(DENSITIES))
def test_density_values(bk, name):
    f = DENSITIES[name]
    argname = "y" if name == "concrete_log_prob" else "log_y"
    bad = Y.copy()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match=rf"{argname} contains NaN"):
        f(bk.asarray(bad), bk.asarray(GOOD), 1.0)
    logits = GOOD.copy()
    logits[1] = -math.inf
    with pytest.raises(ValueError, match="every category is masked"):
        f(bk.asarray(Y), bk.asarray(logits), 1.0)


def test_relaxed_bernoulli_log_prob_arguments(bk):
    with pytest.raises(ValueError, match="do not broadcast"):
        relaxcat.relaxed_bernoulli_log_prob(bk.asarray(np.zeros(5)), bk.asarray(GOOD), 1.0)
    with pytest.raises(ValueError, match=r"tau=-1"):
        relaxcat.relaxed_bernoulli_log_prob(bk.asarray(Y), bk.asarray(GOOD), -1.0)
    with pytest.raises(TypeError, match="logits has dtype"):
        relaxcat.relaxed_bernoulli_log_prob(bk.asarray(Y), bk.asarray(GOOD, "int32"), 1.0)


def test_categorical_kl_arguments(bk):
    with pytest.raises(ValueError, match="logits_q has 2 categories along axis 1 but logits_p"):
        relaxcat.categorical_kl(bk.asarray(np.zeros((B, 2))), bk.asarray(GOOD))
    with pytest.raises(TypeError, match="logits_q has dtype"):
        relaxcat.categorical_kl(bk.asarray(GOOD, "int32"), bk.asarray(GOOD))
    other = np.asarray(GOOD) if bk.name != "numpy" else [[0.0] * N] * B
    with pytest.raises(TypeError, match="logits_q"):
        relaxcat.categorical_kl(other, bk.asarray(GOOD))


@pytest.mark.host_values
def test_categorical_kl_values(bk):
    bad = GOOD.copy()
    bad[0, 0] = math.inf
    with pytest.raises(ValueError, match=r"logits_p contain \+inf"):
        relaxcat.categorical_kl(bk.asarray(GOOD), bk.asarray(bad))
    bad[0] = -math.inf
    with pytest.raises(ValueError, match="logits_q have a row in which every category is masked"):
        relaxcat.categorical_kl(bk.asarray(bad), bk.asarray(GOOD))


TAU_TAKERS = {
    "log_gumbel_softmax": lambda x, tau, hard: relaxcat.log_gumbel_softmax(x, tau, rng=0),
    "relaxed_topk": lambda x, tau, hard: relaxcat.relaxed_topk(x, 2, tau, hard=hard, rng=0),
    "relaxed_topk_max": lambda x, tau, hard: relaxcat.relaxed_topk(
        x, 2, tau, method="max", hard=hard, rng=0
    ),
    "relaxed_bernoulli": lambda x, tau, hard: relaxcat.relaxed_bernoulli(x, tau, hard=hard, rng=0),
    "concrete_log_prob": lambda x, tau, hard: relaxcat.concrete_log_prob(x, x, tau),
    "exp_concrete_log_prob": lambda x, tau, hard: relaxcat.exp_concrete_log_prob(x, x, tau),
    "relaxed_bernoulli_log_prob": lambda x, tau, hard: relaxcat.relaxed_bernoulli_log_prob(
        x, x, tau
    ),
}


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("name", list(TAU_TAKERS))
def test_tau_none_raises_type_error_naming_tau(bk, name, hard):
    x = bk.asarray(np.log(Y) if "log_prob" not in name else Y)
    with pytest.raises(TypeError, match=r"tau=None: .*temperature"):
        TAU_TAKERS[name](x, None, hard)


def test_functions_without_a_temperature_still_work(bk):
    draws = bk.to_numpy(relaxcat.sample_categorical(bk.asarray(GOOD), rng=0))
    assert draws.shape == (B,) and ((draws >= 0) & (draws < N)).all()
    top = bk.to_numpy(relaxcat.gumbel_topk(bk.asarray(GOOD), 2, rng=0))
    assert top.shape == (B, 2) and (top[:, 0] != top[:, 1]).all()
    kl = bk.to_numpy(relaxcat.categorical_kl(bk.asarray(GOOD), bk.asarray(GOOD)))
    np.testing.assert_allclose(kl, 0.0, atol=1e-12)
