"""Agreement: identical noise fed to every installed backend gives NumPy's answer.

Run by the ``agreement`` nox session, which installs every CPU backend. Outputs must agree
with NumPy to 1e-12 in float64 and 1e-6 in float32.
"""

from __future__ import annotations

import numpy as np
import pytest

import relaxcat

TOL = {"float64": 1e-12, "float32": 1e-6}
RNG = np.random.default_rng(20260101)
LOGITS = RNG.normal(size=(64, 3, 33)) * 3
LOGITS[::7, 0, 5] = -np.inf  # some masked categories (never a whole row on any axis)
LOGITS[::5, 2, 9] = -np.inf
NOISE = RNG.gumbel(size=LOGITS.shape)  # float64 noise, fed to everyone
TAUS = np.exp(RNG.normal(size=(64, 3, 1)))

CASES = {
    "soft": {"tau": 0.37},
    "soft-axis1": {"tau": 2.0, "axis": 1},
    "soft-tau-array": {"tau": TAUS},
    "soft-tiny-tau": {"tau": 1e-4},
    "hard": {"tau": 0.5, "hard": True},
    "hard-axis0": {"tau": 0.5, "hard": True, "axis": 0},
    "hard-reinmax": {"tau": 1.5, "hard": True, "estimator": "reinmax"},
    "hard-gumbel-rao": {
        "tau": 0.5,
        "hard": True,
        "estimator": "gumbel_rao",
        "samples": 4,
        "rng": 0,
    },
}


def run_case(bk, dtype, case):
    kwargs = dict(CASES[case])
    if isinstance(kwargs["tau"], np.ndarray):
        tau = kwargs["tau"]
        if kwargs.get("axis", -1) != -1:
            tau = np.moveaxis(tau, -1, kwargs["axis"])
        kwargs["tau"] = bk.asarray(tau, dtype)
    logits = bk.asarray(LOGITS, dtype)
    noise = bk.asarray(NOISE.astype(dtype), dtype)
    return bk.to_numpy(relaxcat.gumbel_softmax(logits, noise=noise, **kwargs)).astype(np.float64)


def reference(dtype, case):
    kwargs = dict(CASES[case])
    if isinstance(kwargs["tau"], np.ndarray):
        kwargs["tau"] = kwargs["tau"].astype(dtype)
    return relaxcat.gumbel_softmax(
        LOGITS.astype(dtype), noise=NOISE.astype(dtype), **kwargs
    ).astype(np.float64)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_backends_agree_with_numpy(bk, dtype, case):
    got = run_case(bk, dtype, case)
    expected = reference(dtype, case)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL[dtype])
    if CASES[case].get("hard"):
        np.testing.assert_array_equal(got, expected)  # one-hot: exactly equal


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seeded_noise_is_standard_gumbel_everywhere(bk, dtype):
    # Seeds differ between libraries (each has its own generator), but each one's noise
    # must be standard Gumbel: compare the first two moments with NumPy's sample.
    g = bk.to_numpy(relaxcat.gumbel_noise(bk.asarray(np.zeros(200_000), dtype), rng=5))
    g = g.astype(np.float64)
    assert abs(g.mean() - np.euler_gamma) < 0.02
    assert abs(g.var() - np.pi**2 / 6) < 0.05
