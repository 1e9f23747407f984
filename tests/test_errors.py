"""Every bad input raises a clear error that names the argument."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import relaxcat

GOOD = np.zeros((4, 3))


@pytest.mark.parametrize("dtype", ["int32", "int64", "bool"])
def test_integer_and_bool_logits_raise_type_error_naming_dtype(bk, dtype):
    x = bk.asarray(np.zeros((2, 3)), dtype)
    with pytest.raises(TypeError, match=r"logits has dtype .*(int|bool)"):
        relaxcat.gumbel_softmax(x, rng=0)
    with pytest.raises(TypeError, match=r"like has dtype .*(int|bool)"):
        relaxcat.gumbel_noise(x, rng=0)


#: The cast to float32 as each library spells it (torch tensors have no ``astype``).
CASTS = {
    "numpy": "logits.astype(np.float32)",
    "cupy": "logits.astype(cupy.float32)",
    "jax": "logits.astype(jnp.float32)",
    "dask": "logits.astype(np.float32)",
    "torch": "logits.to(torch.float32)",
    "array_api_strict": "array_api_strict.astype(logits, array_api_strict.float32)",
}


def test_integer_logits_error_spells_the_cast_for_the_library(bk):
    x = bk.asarray(np.zeros((2, 3)), "int64")
    with pytest.raises(TypeError) as info:
        relaxcat.gumbel_softmax(x, rng=0)
    assert CASTS[bk.name] in str(info.value)
    # ... and the suggestion works as written (bk.lib is jax.numpy for JAX).
    cast = eval(CASTS[bk.name], {"logits": x, "np": np, "jnp": bk.lib, bk.name: bk.lib})
    assert type(cast) is type(x) and bk.to_numpy(cast).dtype == np.float32


@pytest.mark.parametrize("tau", [0, 0.0, -1.0, math.nan, math.inf, -math.inf])
def test_bad_python_tau_raises_value_error(bk, tau):
    with pytest.raises(ValueError, match=r"tau=.*finite number > 0"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), tau, rng=0)


def test_bool_tau_raises(bk):
    with pytest.raises(TypeError, match="tau"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), True, rng=0)


def test_non_number_tau_raises(bk):
    with pytest.raises(TypeError, match="tau must be a number"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), "0.5", rng=0)


def test_tau_from_another_library_raises(bk):
    if bk.name == "numpy":
        other = pytest.importorskip("array_api_strict").asarray([[0.5]])
    else:
        other = np.array([[0.5]])
    with pytest.raises(TypeError, match=r"tau is an? .* array but the logits are an? "):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), other, rng=0)


def test_tau_varying_along_categories_raises(bk):
    with pytest.raises(ValueError, match=r"varies along the category axis.*shape \(4, 1\)"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), bk.asarray(np.ones(3)), rng=0)


def test_tau_not_broadcastable_raises(bk):
    with pytest.raises(ValueError, match="does not broadcast"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), bk.asarray(np.ones((5, 1))), rng=0)
    # More dimensions than the logits are batch dimensions: tests/test_broadcast_tau.py.


@pytest.mark.host_values
@pytest.mark.parametrize("bad", [0.0, -0.5, math.nan, math.inf])
def test_bad_array_tau_raises_where_values_are_readable(bk, bad):
    taus = np.full((4, 1), 0.5)
    taus[2, 0] = bad
    with pytest.raises(ValueError, match="tau contains values"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), bk.asarray(taus), rng=0)


@pytest.mark.parametrize("axis", [2, -3, 10])
def test_axis_out_of_range(bk, axis):
    with pytest.raises(np.exceptions.AxisError, match=r"axis=.* out of range.*\[-2, 1\]"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), axis=axis, rng=0)


def test_axis_must_be_int(bk):
    with pytest.raises(TypeError, match="axis must be an int"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), axis=1.0, rng=0)


def test_zero_dimensional_logits(bk):
    with pytest.raises(ValueError, match="0-d"):
        relaxcat.gumbel_softmax(bk.asarray(np.float64(1.0)), rng=0)


def test_no_categories(bk):
    with pytest.raises(ValueError, match="no categories"):
        relaxcat.gumbel_softmax(bk.asarray(np.zeros((3, 0))), rng=0)


def test_non_array_logits():
    with pytest.raises(TypeError, match=r"logits must be an array.*list"):
        relaxcat.gumbel_softmax([[0.0, 1.0]], rng=0)


def test_generator_from_another_library_names_both(bk):
    if bk.name in ("numpy", "array_api_strict", "dask"):  # they accept NumPy generators
        foreign, lib = random.Random(0), "random"
    else:
        foreign, lib = np.random.default_rng(0), "numpy"
    with pytest.raises(TypeError, match=rf"rng is a {lib} object .* {bk.name} array"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), rng=foreign)


@pytest.mark.backends("numpy", "array_api_strict")
def test_torch_generator_with_numpy_logits_names_both(bk):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    with pytest.raises(TypeError, match=rf"rng is a torch object .* {bk.name} array"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), rng=torch.Generator())


@pytest.mark.backends("jax")
def test_jax_needs_a_key(bk):
    with pytest.raises(TypeError, match=r"JAX .* needs a PRNG key"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD))
    with pytest.raises(TypeError, match="not a PRNG key"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), rng=bk.asarray(np.zeros(3), "float32"))


@pytest.mark.backends("jax")
def test_jax_raw_and_typed_keys(bk):
    jax = bk.jax
    x = bk.asarray(GOOD)
    a = relaxcat.gumbel_softmax(x, rng=jax.random.PRNGKey(3))
    b = relaxcat.gumbel_softmax(x, rng=jax.random.wrap_key_data(jax.random.PRNGKey(3)))
    np.testing.assert_array_equal(bk.to_numpy(a), bk.to_numpy(b))
    with pytest.raises(TypeError, match="pass one key"):
        relaxcat.gumbel_softmax(x, rng=jax.random.split(jax.random.key(0), 2))


@pytest.mark.backends("jax")
def test_int_seed_is_a_key_for_jax(bk):
    x = bk.asarray(GOOD)
    a = relaxcat.gumbel_softmax(x, rng=5)
    b = relaxcat.gumbel_softmax(x, rng=bk.jax.random.key(5))
    np.testing.assert_array_equal(bk.to_numpy(a), bk.to_numpy(b))


@pytest.mark.backends("torch")
def test_torch_generator_on_wrong_device(bk):
    torch = bk.lib
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: a generator on another device needs one")
    other = "cpu" if bk.on_gpu else "cuda"
    with pytest.raises(ValueError, match=r"torch.Generator on .* but the logits are on"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), rng=torch.Generator(device=other))


@pytest.mark.parametrize("seed", [-1, True])
def test_bad_seed(bk, seed):
    with pytest.raises((ValueError, TypeError), match="rng"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), rng=seed)


def test_noise_wrong_shape(bk):
    with pytest.raises(ValueError, match=r"noise has shape \(4, 2\); it must have shape \(4, 3\)"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), noise=bk.asarray(np.zeros((4, 2))))


def test_noise_wrong_library(bk):
    foreign = np.zeros((4, 3)) if bk.name != "numpy" else [[0.0] * 3] * 4
    with pytest.raises(TypeError, match="noise"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), noise=foreign)


def test_noise_integer_dtype(bk):
    with pytest.raises(TypeError, match="noise has dtype"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), noise=bk.asarray(np.zeros((4, 3)), "int32"))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([0.0, math.nan, 1.0], "NaN"),
        ([0.0, math.inf, 1.0], r"\+inf"),
        ([-math.inf, -math.inf, -math.inf], "every category is masked"),
    ],
)
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.host_values
def test_rows_without_a_valid_sample_raise(bk, row, message, hard):
    logits = np.zeros((3, 3))
    logits[1] = row
    with pytest.raises(ValueError, match=message):
        relaxcat.gumbel_softmax(bk.asarray(logits), hard=hard, rng=0)


@pytest.mark.host_values
def test_non_finite_noise_raises(bk):
    noise = np.zeros((4, 3))
    noise[0, 0] = math.inf
    with pytest.raises(ValueError, match="noise contains NaN or inf"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), noise=bk.asarray(noise))


def test_gumbel_noise_bad_shape(bk):
    with pytest.raises(ValueError, match="negative"):
        relaxcat.gumbel_noise(bk.asarray(GOOD), shape=(2, -1), rng=0)
    with pytest.raises(TypeError, match="shape must be a tuple"):
        relaxcat.gumbel_noise(bk.asarray(GOOD), shape=3, rng=0)


@pytest.mark.backends("jax")
def test_values_are_not_inspected_under_jit(bk):
    # Documented: inside jax.jit nothing can be read, so an entirely masked row gives NaN
    # instead of an error, and an array tau <= 0 is not caught.
    logits = np.zeros((2, 3))
    logits[1] = -np.inf
    y = bk.to_numpy(bk.jax.jit(lambda x: relaxcat.gumbel_softmax(x, rng=0))(bk.asarray(logits)))
    assert np.isnan(y[1]).all()
    np.testing.assert_allclose(y[0].sum(), 1.0)


@pytest.mark.parametrize("hard", [False, True])
def test_tau_none_raises_type_error_naming_tau(bk, hard):
    with pytest.raises(TypeError, match=r"tau=None: .*temperature"):
        relaxcat.gumbel_softmax(bk.asarray(GOOD), None, hard=hard, rng=0)


@pytest.mark.parametrize("dim", [2.5, 2.0, np.float64(2.0), True, np.bool_(True), "2"])
def test_gumbel_noise_rejects_non_integer_dimensions(bk, dim):
    with pytest.raises(TypeError, match=r"shape must be a tuple of ints; .*dimension"):
        relaxcat.gumbel_noise(bk.asarray(GOOD), shape=(3, dim), rng=0)


def test_gumbel_noise_accepts_numpy_integer_dimensions(bk):
    g = relaxcat.gumbel_noise(bk.asarray(GOOD), shape=(np.int64(2), np.int32(3)), rng=0)
    assert tuple(g.shape) == (2, 3)
    assert all(type(d) is int for d in g.shape)


def _strict_subclass(bk):
    """A subclass of array_api_strict's array type, and a function that makes its arrays."""
    base = type(bk.asarray(GOOD))

    class Sub(base):  # type: ignore[misc, valid-type]
        pass

    def make(a):
        x = bk.asarray(a)
        return Sub._new(x._array, device=x.device)

    return Sub, make


@pytest.mark.backends("array_api_strict")  # the subclass is of array_api_strict's type
def test_subclass_of_the_array_type_works_as_tau_and_noise(bk):
    sub, make = _strict_subclass(bk)
    taus = np.array([[0.5], [1.0], [2.0], [0.25]])
    noise = relaxcat.gumbel_noise(GOOD, rng=3)
    tau_sub, noise_sub = make(taus), make(noise)
    assert type(tau_sub) is sub
    x = bk.asarray(GOOD + np.arange(3.0))
    y = relaxcat.gumbel_softmax(x, tau_sub, noise=noise_sub)
    expected = relaxcat.gumbel_softmax(GOOD + np.arange(3.0), taus, noise=noise)
    np.testing.assert_allclose(bk.to_numpy(y), expected, rtol=1e-12)
    # and as the logits, with plain arrays of the library as tau and noise
    y2 = relaxcat.gumbel_softmax(make(GOOD + np.arange(3.0)), bk.asarray(taus), noise=make(noise))
    np.testing.assert_allclose(bk.to_numpy(y2), expected, rtol=1e-12)


@pytest.mark.backends("array_api_strict")
def test_subclass_of_the_array_type_works_in_a_density(bk):
    _, make = _strict_subclass(bk)
    y = np.full((4, 3), 1 / 3)
    got = relaxcat.concrete_log_prob(make(y), bk.asarray(GOOD), make(np.full((4, 1), 0.5)))
    np.testing.assert_allclose(
        bk.to_numpy(got), relaxcat.concrete_log_prob(y, GOOD, 0.5), rtol=1e-12
    )


@pytest.mark.backends("array_api_strict")
def test_library_names_take_the_right_article(bk):
    x = bk.asarray(GOOD)
    with pytest.raises(TypeError) as info:
        relaxcat.gumbel_softmax(x, np.array([[0.5]]), rng=0)
    assert "the logits are an array_api_strict array" in str(info.value)
    assert "or an array_api_strict array." in str(info.value)
    with pytest.raises(TypeError, match="noise must be an array_api_strict array"):
        relaxcat.gumbel_softmax(x, noise=[[0.0] * 3] * 4)
    with pytest.raises(TypeError, match="noise is a numpy array but the logits are an array_api"):
        relaxcat.gumbel_softmax(x, noise=np.zeros((4, 3)))
    with pytest.raises(TypeError, match="y is a numpy array but logits is an array_api_strict"):
        relaxcat.concrete_log_prob(np.full((4, 3), 1 / 3), x, 0.5)
    with pytest.raises(TypeError, match=r"but the array is an array_api_strict array"):
        relaxcat.gumbel_softmax(x, rng=random.Random(0))


def test_article_helper():
    from relaxcat._backends._base import with_article

    assert with_article("array_api_strict") == "an array_api_strict"
    assert with_article("array-API") == "an array-API"
    assert with_article("NumPy") == "a NumPy"
    assert with_article("ArrayImpl") == "an ArrayImpl"


@pytest.mark.backends("jax")
def test_jax_gumbel_rao_with_noise_asks_for_a_key_for_the_conditional_draws(bk):
    x = bk.asarray(GOOD)
    noise = relaxcat.gumbel_noise(x, rng=0)
    with pytest.raises(TypeError) as info:
        relaxcat.gumbel_softmax(x, hard=True, noise=noise, estimator="gumbel_rao", samples=4)
    message = str(info.value)
    assert "conditional Gumbel sample(s)" in message
    assert "rng must be a JAX PRNG key (jax.random.key(seed)) or an int seed" in message
    assert "pass noise=" not in message and "or pass noise" not in message
    with pytest.raises(TypeError) as info:
        relaxcat.gumbel_softmax(
            x, hard=True, noise=noise, estimator="gumbel_rao", rng=bk.asarray(np.zeros(3))
        )
    message = str(info.value)
    assert "not a PRNG key" in message and "rng must be a JAX PRNG key" in message
    assert "rng is an ArrayImpl" in message
    assert "noise=" not in message.split("(noise= fixes the one-hot sample only)")[1]
    # without noise= the advice to pass it stays
    with pytest.raises(TypeError, match=r"or pass noise="):
        relaxcat.gumbel_softmax(x)
