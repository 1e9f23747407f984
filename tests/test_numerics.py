"""Finite output where promised: big draws, extreme logits and temperatures, half precision."""

from __future__ import annotations

import numpy as np
import pytest

import relaxcat
from relaxcat._noise import E_MAX, E_MIN, gumbel_from_exponential
from tests.conftest import HALF

HALF_DTYPES = [pytest.param(d, marks=pytest.mark.backends(*b)) for d, b in HALF.items()]


def test_no_nan_or_inf_in_large_float32_draws(bk):
    # Unguarded float32 exponential draws hit exactly 0 about once in 10^7: a 4096x4096
    # draw would then hold an inf in the noise and a NaN in the sample.
    x = bk.asarray(np.zeros((4096, 4096)), "float32")
    for seed in range(3):
        g = bk.to_numpy(relaxcat.gumbel_noise(x, rng=seed))
        assert np.isfinite(g).all()
        y = bk.to_numpy(relaxcat.gumbel_softmax(x, 0.1, rng=seed + 100))
        assert np.isfinite(y).all()
        np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_exponential_zeros_and_infs_are_clamped(bk):
    # The clamp is a NaN guard for events of probability ~2**-53, not a tail: an exact zero
    # stands for an E below the source's resolution, so it becomes g = 38.8, not 87.3 (the
    # float32 smallest normal), which would beat any logit gap a user can have.
    xp = relaxcat._backends.backend_of(bk.asarray(np.zeros(1), "float32")).xp
    e = bk.asarray(np.array([0.0, np.inf, 1.0, 1e-45, 2.0**-50]), "float32")
    g = bk.to_numpy(gumbel_from_exponential(xp, e))
    assert np.isfinite(g).all()
    expected = [-np.log(E_MIN), -np.log(E_MAX), 0.0, -np.log(E_MIN), 50 * np.log(2)]
    np.testing.assert_allclose(g, expected, rtol=1e-6)
    assert g.max() < 40


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tau", [1e-12, 1e-6, 1e-3, 1.0, 1e3, 1e30])
@pytest.mark.parametrize("hard", [False, True])
def test_extreme_logits_and_temperatures_stay_finite(bk, dtype, tau, hard):
    logits = np.array(
        [
            [1e30, -1e30, 0.0, 5.0],
            [-1e30, -1e30, -1e30, -1e30],
            [1e30, 1e30, -1e30, 1e30],
            [
                3e38 if dtype == "float32" else 1e300,
                0.0,
                -3e38 if dtype == "float32" else -1e300,
                1.0,
            ],
        ]
    )
    y = bk.to_numpy(relaxcat.gumbel_softmax(bk.asarray(logits, dtype), tau, hard=hard, rng=0))
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)
    if tau <= 1e3:
        assert y[0, 1] == 0.0 and y[3, 2] == 0.0  # 2e30 below the winner: exactly 0


@pytest.mark.parametrize("tau", [1e-6, 1e3])
def test_extreme_tau_with_masks(bk, tau):
    logits = np.array([[0.0, -np.inf, 1e30], [-np.inf, -1e30, -np.inf]])
    y = bk.to_numpy(relaxcat.gumbel_softmax(bk.asarray(logits, "float32"), tau, rng=1))
    assert np.isfinite(y).all()
    assert y[0, 1] == 0.0 and y[1, 0] == 0.0 and y[1, 2] == 0.0
    assert y[1, 1] == 1.0


@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("hard", [False, True])
def test_half_precision_is_computed_in_float32(bk, dtype, hard):
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(256, 50)) * 8).astype(np.float32)
    half = bk.asarray(logits, dtype)
    noise32 = relaxcat.gumbel_noise(bk.asarray(logits, "float32"), rng=3)
    y = relaxcat.gumbel_softmax(half, 0.05, hard=hard, noise=noise32)
    bk.assert_like(y, half)
    # Reference: the same half-precision logits, upcast, computed in float32, cast back.
    up = bk.asarray(bk.to_numpy(half).astype(np.float32), "float32")
    ref32 = relaxcat.gumbel_softmax(up, 0.05, hard=hard, noise=noise32)
    expected = bk.to_numpy(bk.asarray(bk.to_numpy(ref32), dtype))
    got = bk.to_numpy(y)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, expected)
    if not hard:  # naive half-precision arithmetic at tau=0.05 overflows; this does not
        np.testing.assert_allclose(got.astype(np.float64).sum(-1), 1.0, atol=0.02)


@pytest.mark.backends(*HALF["float16"])
def test_half_precision_noise_is_float32_internally(bk):
    # With a seed, float16 logits must see the same noise as float32 logits (float32 noise),
    # so the hard samples coincide exactly.
    logits = np.random.default_rng(1).normal(size=(500, 20)).astype(np.float16).astype(np.float32)
    a = relaxcat.gumbel_softmax(bk.asarray(logits, "float16"), hard=True, rng=42)
    b = relaxcat.gumbel_softmax(bk.asarray(logits, "float32"), hard=True, rng=42)
    np.testing.assert_array_equal(bk.to_numpy(a).astype(np.float32), bk.to_numpy(b))
