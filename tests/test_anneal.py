"""anneal_tau: the temperature schedule max(tau_min, tau0 * exp(-rate * step))."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import relaxcat


def expected(step, tau0=1.0, rate=1e-4, tau_min=0.5):
    return max(tau_min, tau0 * math.exp(-rate * step))


@pytest.mark.parametrize("step", [0, 1, 1000, 6931, 6932, 10**5, 10**9, 2.5])
@pytest.mark.parametrize("params", [{}, {"tau0": 2.0, "rate": 3e-5, "tau_min": 0.1}, {"rate": 0.0}])
def test_python_numbers_give_a_float(step, params):
    got = relaxcat.anneal_tau(step, **params)
    assert type(got) is float
    assert got == expected(step, **params)


def test_schedule_starts_at_tau0_and_stops_at_tau_min():
    assert relaxcat.anneal_tau(0, tau0=3.0) == 3.0
    assert relaxcat.anneal_tau(10**6, tau0=3.0, tau_min=0.25) == 0.25
    taus = [relaxcat.anneal_tau(t) for t in range(0, 20000, 500)]
    assert all(a >= b for a, b in itertools.pairwise(taus))
    assert relaxcat.anneal_tau(np.int64(5000)) == expected(5000)


@pytest.mark.parametrize("dtype", ["int32", "int64", "float32", "float64"])
def test_arrays_of_every_backend(bk, dtype):
    steps = np.array([0, 10, 2000, 6000, 50_000])
    x = bk.asarray(steps, dtype)
    got = relaxcat.anneal_tau(x, tau0=2.0, rate=2e-4, tau_min=0.3)
    assert type(got) is type(x)
    assert tuple(got.shape) == steps.shape
    assert bk.device_of(got) == bk.device_of(x)
    if dtype.startswith("float"):
        assert got.dtype == x.dtype
    assert bk.to_numpy(got).dtype.kind == "f"
    reference = [expected(float(s), 2.0, 2e-4, 0.3) for s in steps]
    rtol = 1e-6 if (dtype == "float32" or bk.to_numpy(got).dtype == np.float32) else 1e-12
    np.testing.assert_allclose(bk.to_numpy(got).astype(np.float64), reference, rtol=rtol)


def test_annealed_array_is_a_valid_tau(bk):
    tau = relaxcat.anneal_tau(bk.asarray(np.array(3000), "int64"))
    y = relaxcat.gumbel_softmax(bk.asarray(np.zeros((4, 3))), tau, rng=0)
    np.testing.assert_allclose(bk.to_numpy(y).sum(-1), 1.0, rtol=1e-6)


@pytest.mark.backends("jax")
def test_step_counter_inside_jax_jit(bk):
    jax = bk.jax
    logits = bk.asarray(np.zeros((2, 4)))

    @jax.jit
    def train_step(step, key):
        tau = relaxcat.anneal_tau(step, tau0=1.0, rate=1e-3, tau_min=0.5)
        return tau, relaxcat.gumbel_softmax(logits, tau, hard=True, rng=key)

    for step in (0, 100, 5000):
        tau, y = train_step(bk.jax.numpy.asarray(step), jax.random.key(step))
        assert float(tau) == pytest.approx(expected(step, 1.0, 1e-3, 0.5), rel=1e-6)
        assert bk.to_numpy(y).sum() == 2


@pytest.mark.backends("torch")
def test_torch_step_tensor(bk):
    torch = bk.lib
    tau = relaxcat.anneal_tau(torch.tensor(1000), rate=1e-3)
    assert isinstance(tau, torch.Tensor) and tau.dtype == torch.get_default_dtype()
    assert float(tau) == pytest.approx(expected(1000, rate=1e-3), rel=1e-6)


@pytest.mark.parametrize("step", [-1, -0.5, math.nan, math.inf])
def test_bad_python_step_raises_value_error(step):
    with pytest.raises(ValueError, match="step="):
        relaxcat.anneal_tau(step)


@pytest.mark.parametrize("step", [True, "10", None, [1, 2]])
def test_non_number_step_raises_type_error(step):
    with pytest.raises(TypeError, match="step"):
        relaxcat.anneal_tau(step)


def test_bool_array_step_raises_type_error(bk):
    with pytest.raises(TypeError, match="step has dtype"):
        relaxcat.anneal_tau(bk.asarray(np.array([True, False]), "bool"))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"tau0": 0.0}, "tau0="),
        ({"tau0": -1.0}, "tau0="),
        ({"tau0": math.inf}, "tau0="),
        ({"tau_min": 0.0}, "tau_min="),
        ({"tau_min": math.nan}, "tau_min="),
        ({"rate": -1e-4}, "rate="),
        ({"rate": math.inf}, "rate="),
    ],
)
def test_bad_parameters_raise_value_error(params, match):
    with pytest.raises(ValueError, match=match):
        relaxcat.anneal_tau(10, **params)


@pytest.mark.parametrize("params", [{"tau0": "1"}, {"rate": None}, {"tau_min": True}])
def test_non_number_parameters_raise_type_error(params):
    with pytest.raises(TypeError, match="must be a Python number"):
        relaxcat.anneal_tau(10, **params)


@pytest.mark.parametrize("step", [0, 10**6])
def test_tau_min_above_tau0_raises(step):
    with pytest.raises(ValueError, match=r"tau_min=0.5 is greater than tau0=0.1"):
        relaxcat.anneal_tau(step, tau0=0.1, tau_min=0.5)
    with pytest.raises(ValueError, match=r"tau_min=.* is greater than tau0="):
        relaxcat.anneal_tau(np.array([step]), tau0=0.1, tau_min=0.5)
    assert relaxcat.anneal_tau(step, tau0=0.5, tau_min=0.5) == 0.5  # a constant: allowed
