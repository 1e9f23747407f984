"""Forward-mode AD on torch: ``torch.autograd.forward_ad`` dual tensors keep their tangents.

Every sampler, fed a dual tensor (logits or an array ``tau``), must give the tangent that
``torch.func.jvp`` gives for the same noise, never silently none. Other backends are
deselected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import relaxcat
from relaxcat._backends import backend_of

pytestmark = pytest.mark.backends("torch")

RNG = np.random.default_rng(8)
LOGITS = RNG.normal(size=(6, 5)) * 2
LOGITS[[0, 3], [1, 4]] = -np.inf  # masked categories: their tangent must stay finite
NOISE = RNG.gumbel(size=(6, 5))
NOISE_K = RNG.gumbel(size=(3, 6, 5))
LOGISTIC = RNG.logistic(size=(6, 5))
DIRECTION = RNG.normal(size=(6, 5))
TAU = 0.7


def samplers(bk: Any) -> dict[str, Callable[[Any, Any], Any]]:
    """Every sampling path, as ``f(logits, tau)`` with its noise fixed."""
    g, gk, lg = bk.asarray(NOISE), bk.asarray(NOISE_K), bk.asarray(LOGISTIC)

    def gs(hard: bool, estimator: str = "st", samples: int = 1) -> Callable[[Any, Any], Any]:
        return lambda x, t: relaxcat.gumbel_softmax(
            x, t, hard=hard, noise=g, estimator=estimator, samples=samples, rng=5
        )

    return {
        "soft": gs(False),
        "hard-st": gs(True),
        "hard-reinmax": gs(True, "reinmax"),
        "hard-gumbel_rao-1": gs(True, "gumbel_rao"),
        "hard-gumbel_rao-8": gs(True, "gumbel_rao", 8),
        "topk-successive-soft": lambda x, t: relaxcat.relaxed_topk(x, 3, t, noise=g),
        "topk-successive-hard": lambda x, t: relaxcat.relaxed_topk(x, 3, t, hard=True, noise=g),
        "topk-max-soft": lambda x, t: relaxcat.relaxed_topk(x, 3, t, method="max", noise=gk),
        "topk-max-hard": lambda x, t: relaxcat.relaxed_topk(
            x, 3, t, hard=True, method="max", noise=gk
        ),
        "bernoulli-soft": lambda x, t: relaxcat.relaxed_bernoulli(x, t, noise=lg),
        "bernoulli-hard": lambda x, t: relaxcat.relaxed_bernoulli(x, t, hard=True, noise=lg),
    }


NAMES = [
    "soft",
    "hard-st",
    "hard-reinmax",
    "hard-gumbel_rao-1",
    "hard-gumbel_rao-8",
    "topk-successive-soft",
    "topk-successive-hard",
    "topk-max-soft",
    "topk-max-hard",
    "bernoulli-soft",
    "bernoulli-hard",
]


def dual_tangent(f: Callable[[Any], Any], primal: Any, tangent: Any) -> tuple[Any, Any]:
    """``(value, tangent)`` of ``f`` at ``primal`` by ``torch.autograd.forward_ad``.

    A missing tangent (the output is not a dual tensor) is returned as None, not zeros.
    """
    import torch.autograd.forward_ad as fwad

    with fwad.dual_level():
        out = fwad.unpack_dual(f(fwad.make_dual(primal, tangent)))
        value = out.primal.detach().clone()
        return value, None if out.tangent is None else out.tangent.clone()


def functional_tangent(bk: Any, f: Callable[[Any], Any], primal: Any, tangent: Any) -> Any:
    """``(value, tangent)`` of ``f`` at ``primal`` by ``torch.func.jvp``, the reference."""
    return bk.lib.func.jvp(f, (primal,), (tangent,))


def logits_and_tau(bk: Any, name: str) -> tuple[Any, Any]:
    x = LOGITS
    if name.startswith("bernoulli"):  # element-wise: no -inf (a sample of exactly 0 or 1)
        x = np.where(np.isinf(LOGITS), -3.0, LOGITS)
    return bk.asarray(x), bk.lib.tensor([[TAU]], dtype=bk.lib.float64)


@pytest.mark.parametrize("name", NAMES)
def test_dual_logits_tangent_equals_torch_func_jvp(bk, name):
    f = samplers(bk)[name]
    x, _ = logits_and_tau(bk, name)
    d = bk.asarray(np.where(np.isinf(LOGITS), 0.0, DIRECTION))
    value, tangent = dual_tangent(lambda t: f(t, TAU), x, d)
    expected_value, expected = functional_tangent(bk, lambda t: f(t, TAU), x, d)
    np.testing.assert_array_equal(bk.to_numpy(value), bk.to_numpy(expected_value))
    # The eager call (no tangent) may take a fused kernel: the same value up to rounding.
    np.testing.assert_allclose(bk.to_numpy(value), bk.to_numpy(f(x, TAU)), rtol=1e-13, atol=0)
    assert tangent is not None, "the tangent of the logits was dropped"
    assert np.any(bk.to_numpy(expected) != 0)
    np.testing.assert_allclose(bk.to_numpy(tangent), bk.to_numpy(expected), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_dual_tau_tangent_equals_torch_func_jvp(bk, name):
    # tau is the only dual input; ReinMax gives an array tau no gradient (pi1 is a
    # constant), so its tangent is none and torch.func.jvp's is zero.
    f = samplers(bk)[name]
    x, tau = logits_and_tau(bk, name)
    one = bk.lib.ones_like(tau)
    value, tangent = dual_tangent(lambda t: f(x, t), tau, one)
    expected_value, expected = functional_tangent(bk, lambda t: f(x, t), tau, one)
    np.testing.assert_array_equal(bk.to_numpy(value), bk.to_numpy(expected_value))
    if name == "hard-reinmax":
        assert tangent is None and np.all(bk.to_numpy(expected) == 0)
        return
    assert tangent is not None, "the tangent of tau was dropped"
    assert np.any(bk.to_numpy(expected) != 0)
    np.testing.assert_allclose(bk.to_numpy(tangent), bk.to_numpy(expected), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["soft", "hard-st", "hard-gumbel_rao-8", "topk-max-hard"])
def test_forward_mode_ignores_no_grad(bk, name):
    # torch.no_grad switches off reverse mode only; a dual tensor keeps its tangent there.
    f = samplers(bk)[name]
    x, _ = logits_and_tau(bk, name)
    d = bk.asarray(np.where(np.isinf(LOGITS), 0.0, DIRECTION))
    _, expected = dual_tangent(lambda t: f(t, TAU), x, d)
    with bk.lib.no_grad():
        _, tangent = dual_tangent(lambda t: f(t, TAU), x, d)
    assert tangent is not None
    np.testing.assert_array_equal(bk.to_numpy(tangent), bk.to_numpy(expected))


def test_float32_fast_path_steps_aside_for_a_dual_tensor(bk):
    # The fast path's registered Functions have no forward rule: a dual tensor must take
    # the generic path, whose values are the same (the soft sample up to the rounding of
    # the fast path's fused softmax kernel).
    x = bk.asarray(LOGITS, "float32")
    g = bk.asarray(NOISE, "float32")
    d = bk.asarray(np.where(np.isinf(LOGITS), 0.0, DIRECTION), "float32")
    for hard in (False, True):

        def f(t, hard=hard):
            return relaxcat.gumbel_softmax(t, 0.5, hard=hard, noise=g)

        value, tangent = dual_tangent(f, x, d)
        if hard:
            np.testing.assert_array_equal(bk.to_numpy(value), bk.to_numpy(f(x)))
        else:
            np.testing.assert_allclose(bk.to_numpy(value), bk.to_numpy(f(x)), rtol=1e-6, atol=0)
        _, expected = functional_tangent(bk, f, x, d)
        assert tangent is not None
        np.testing.assert_allclose(bk.to_numpy(tangent), bk.to_numpy(expected), rtol=1e-6)


def test_tracks_gradients_sees_dual_tensors_only(bk):
    import torch.autograd.forward_ad as fwad

    backend = backend_of(bk.asarray(LOGITS))
    x = bk.asarray(LOGITS)
    assert not backend.tracks_gradients(x)
    with fwad.dual_level():
        assert backend.tracks_gradients(fwad.make_dual(x, bk.lib.ones_like(x)))
        assert not backend.tracks_gradients(x)  # a plain tensor inside a dual level
    assert not backend.tracks_gradients(x)
