"""Each native kernel runs where it should, and only there.

``tests/test_fast_paths.py`` holds every kernel equal to the generic path; that alone would
pass if a kernel were never taken. Here spies on the kernels' entry points prove which path
a call takes: the NumPy in-place kernel, torch's tiny NumPy path, its in-place kernel with
and without a registered backward, its parallel block draws; JAX's one jitted computation
for eager calls; and the generic path under ``torch.func``, ``torch.compile``, forward-mode
dual tensors, JAX transformations, explicit JAX noise and an array ``tau``.
"""

from __future__ import annotations

import numpy as np
import pytest

import relaxcat
import relaxcat._core as core


class Spy:
    """Replaces ``module.name`` with a wrapper that records each call and calls through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        inner = getattr(module, name)

        def spy(*args, **kwargs):
            self.calls.append((args, kwargs))
            return inner(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    @property
    def count(self) -> int:
        return len(self.calls)


# -- NumPy --------------------------------------------------------------------------------


@pytest.mark.backends("numpy")
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("how", ["seed", "generator", "default", "noise"], ids=lambda s: f"rng={s}")
def test_numpy_kernel_is_taken(bk, monkeypatch, hard, how):
    from relaxcat._backends import _numpy

    kernel = Spy(monkeypatch, _numpy, "sample_")
    generic = Spy(monkeypatch, core, "generic_gumbel_softmax")
    x = np.random.default_rng(0).normal(size=(6, 5))
    kwargs = {
        "seed": {"rng": 0},
        "generator": {"rng": np.random.default_rng(0)},
        "default": {},
        "noise": {"noise": relaxcat.gumbel_noise(x, rng=0)},
    }[how]
    relaxcat.gumbel_softmax(x, 0.5, hard=hard, **kwargs)
    assert (kernel.count, generic.count) == (1, 0)


@pytest.mark.backends("numpy")
def test_numpy_kernel_is_not_taken_when_switched_off(bk, monkeypatch):
    from relaxcat._backends import _numpy

    kernel = Spy(monkeypatch, _numpy, "sample_")
    generic = Spy(monkeypatch, core, "generic_gumbel_softmax")
    monkeypatch.setattr(core, "FAST_PATHS", False)
    relaxcat.gumbel_softmax(np.zeros((2, 3)), 0.5, rng=0)
    assert (kernel.count, generic.count) == (0, 1)


@pytest.mark.backends("numpy")
def test_numpy_kernel_gets_validated_noise(bk, monkeypatch):
    # The core validates noise= before any kernel runs: a bad noise never reaches one.
    from relaxcat._backends import _numpy

    kernel = Spy(monkeypatch, _numpy, "sample_")
    with pytest.raises(ValueError, match="noise has shape"):
        relaxcat.gumbel_softmax(np.zeros((2, 3)), 0.5, noise=np.zeros((3, 2)))
    assert kernel.count == 0


# -- torch on the CPU ---------------------------------------------------------------------


@pytest.fixture
def torch_spies(monkeypatch):
    """Spies on torch's kernel entry points: the dispatcher and each kernel."""
    from relaxcat._backends import _torch, _torch_cpu

    return {
        "eager": Spy(monkeypatch, _torch, "eager_sample"),
        "tiny": Spy(monkeypatch, _torch_cpu, "tiny_sample"),
        "tiny_tracked": Spy(monkeypatch, _torch_cpu, "tiny_tracked_sample"),
        "blocks": Spy(monkeypatch, _torch, "exponential_blocks"),
        "generic": Spy(monkeypatch, core, "generic_gumbel_softmax"),
    }


NONE = {"eager": 0, "tiny": 0, "tiny_tracked": 0, "blocks": 0, "generic": 0}


def taken(spies) -> dict[str, int]:
    return {name: spy.count for name, spy in spies.items()}


def graph_names(y) -> set[str]:
    names, todo = set(), [y.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            todo.extend(n for n, _ in node.next_functions)
    return names


@pytest.mark.backends("torch")
@pytest.mark.host_values
@pytest.mark.parametrize("hard", [False, True])
def test_torch_tiny_kernel_without_gradient(bk, torch_spies, hard):
    x = bk.asarray(np.zeros((1, 10)), "float32")
    relaxcat.gumbel_softmax(x, 0.5, hard=hard)
    assert taken(torch_spies) == {**NONE, "eager": 1, "tiny": 1}


@pytest.mark.backends("torch")
@pytest.mark.host_values
@pytest.mark.parametrize("hard", [False, True])
def test_torch_in_place_kernel_beyond_tiny(bk, torch_spies, hard):
    from relaxcat._backends import _torch_cpu

    n = _torch_cpu.TINY_ELEMENTS + 1
    relaxcat.gumbel_softmax(bk.asarray(np.zeros((n, 1)), "float32"), 0.5, hard=hard, axis=0)
    assert taken(torch_spies) == {**NONE, "eager": 1}


@pytest.mark.backends("torch")
@pytest.mark.host_values
@pytest.mark.parametrize("hard", [False, True])
def test_torch_tiny_tracked_kernel_uses_torch_autograd(bk, torch_spies, hard):
    # Tiny and tracked: noise and one-hot in NumPy, the soft sample by torch's own
    # differentiable softmax (C++ backward nodes), not a Python autograd.Function.
    x = bk.asarray(np.zeros((8, 64)), "float32").requires_grad_(True)
    y = relaxcat.gumbel_softmax(x, 0.5, hard=hard)
    counts = taken(torch_spies)
    assert counts == {**NONE, "eager": 1, "tiny_tracked": 1}
    names = graph_names(y)
    assert "SoftmaxBackward0" in names
    assert not names & {"SoftSampleBackward", "HardSampleBackward"}


@pytest.mark.backends("torch")
@pytest.mark.host_values
@pytest.mark.parametrize("hard", [False, True])
def test_torch_registered_backward_beyond_tiny(bk, torch_spies, hard):
    # Tracked beyond the tiny size: the in-place kernel with its registered Function.
    from relaxcat._backends import _torch_cpu

    n = _torch_cpu.TINY_ELEMENTS + 1
    x = bk.asarray(np.zeros((n, 2)), "float32").requires_grad_(True)
    y = relaxcat.gumbel_softmax(x, 0.5, hard=hard)
    assert taken(torch_spies)["eager"] == 1
    assert taken(torch_spies)["tiny_tracked"] == 0
    assert ("HardSampleBackward" if hard else "SoftSampleBackward") in graph_names(y)


@pytest.mark.backends("torch")
@pytest.mark.host_values
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("axis", [-1, 0])
def test_torch_tiny_tracked_kernel_equals_generic(bk, dtype, hard, axis):
    # Same seed: the same noise, sample and gradient as the generic path (masked entries
    # included: value 0, gradient 0).
    logits = np.random.default_rng(3).normal(size=(6, 7)) * 3
    logits[1, 2] = -np.inf
    w = bk.asarray(np.random.default_rng(4).normal(size=(6, 7)), "float32")

    def run():
        x = bk.asarray(logits, dtype).requires_grad_(True)
        y = relaxcat.gumbel_softmax(x, 0.7, hard=hard, axis=axis, rng=11)
        (y.float() * w).sum().backward()
        return bk.to_numpy(y).astype(np.float64), bk.to_numpy(x.grad).astype(np.float64)

    core.FAST_PATHS = False
    try:
        y_gen, g_gen = run()
    finally:
        core.FAST_PATHS = True
    y_fast, g_fast = run()
    rtol = {"float16": 2e-3, "float32": 1e-5, "float64": 1e-12}[dtype]
    if hard:
        np.testing.assert_array_equal(y_fast, y_gen)
    else:
        np.testing.assert_allclose(y_fast, y_gen, rtol=rtol, atol=1e-30)
    # The gradient y * (w - <w, y>) / tau cancels: compare at the scale of its terms (~1).
    atol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(g_fast, g_gen, rtol=rtol, atol=atol)
    assert np.isfinite(g_fast).all() and g_fast[1, 2] == 0.0


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_block_draws_for_large_tensors(bk, torch_spies):
    from relaxcat._backends import _torch_cpu

    x = bk.asarray(np.zeros((_torch_cpu.PARALLEL_MIN // 4, 4)), "float32")
    relaxcat.gumbel_softmax(x, 0.5, rng=1)
    assert taken(torch_spies) == {**NONE, "eager": 1, "blocks": 1}


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_explicit_noise_takes_the_in_place_kernel(bk, torch_spies):
    x = bk.asarray(np.zeros((3, 4)), "float32")
    relaxcat.gumbel_softmax(x, 0.5, noise=relaxcat.gumbel_noise(x, rng=0))
    assert taken(torch_spies) == {**NONE, "eager": 1}


def _generic_only(spies) -> None:
    counts = taken(spies)
    assert counts["eager"] == counts["tiny"] == counts["tiny_tracked"] == 0, counts
    assert counts["generic"] >= 1, counts


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_array_tau_takes_the_generic_path(bk, torch_spies):
    x = bk.asarray(np.zeros((2, 3)), "float32")
    relaxcat.gumbel_softmax(x, bk.asarray(np.full((2, 1), 0.5), "float32"), rng=0)
    _generic_only(torch_spies)


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_func_takes_the_generic_path(bk, torch_spies):
    torch = bk.lib
    x = bk.asarray(np.zeros((2, 3)), "float32")
    noise = relaxcat.gumbel_noise(x, rng=0)
    torch.func.grad(lambda v: relaxcat.gumbel_softmax(v, 0.5, noise=noise)[0, 0])(x)
    _generic_only(torch_spies)
    torch.func.vmap(lambda v: relaxcat.gumbel_softmax(v, 0.5, noise=noise[0]))(x)
    _generic_only(torch_spies)


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_dual_tensors_take_the_generic_path(bk, torch_spies):
    torch = bk.lib
    import torch.autograd.forward_ad as fwad

    x = bk.asarray(np.zeros((2, 3)), "float32")
    with fwad.dual_level():
        dual = fwad.make_dual(x, torch.ones_like(x))
        y = relaxcat.gumbel_softmax(dual, 0.5, rng=0)
        assert fwad.unpack_dual(y).tangent is not None
    _generic_only(torch_spies)


@pytest.mark.backends("torch")
@pytest.mark.host_values
def test_torch_compile_takes_the_generic_path(bk, torch_spies):
    torch = bk.lib
    x = bk.asarray(np.zeros((2, 3)), "float32")
    noise = relaxcat.gumbel_noise(x, rng=0)
    torch._dynamo.reset()
    try:
        f = torch.compile(lambda v: relaxcat.gumbel_softmax(v, 0.5, noise=noise), backend="eager")
        f(x)
    finally:
        torch._dynamo.reset()
    _generic_only(torch_spies)


# -- JAX ----------------------------------------------------------------------------------


@pytest.fixture
def jax_spies(monkeypatch):
    from relaxcat._backends import _jax

    return {
        "fused": Spy(monkeypatch, _jax, "_fused_jit"),
        "from_noise": Spy(monkeypatch, _jax, "_from_noise_jit"),
        "generic": Spy(monkeypatch, core, "generic_gumbel_softmax"),
    }


@pytest.mark.backends("jax")
@pytest.mark.host_values
@pytest.mark.parametrize("hard", [False, True])
def test_jax_eager_call_is_one_jitted_computation(bk, jax_spies, hard):
    import jax

    x = bk.asarray(np.random.default_rng(0).normal(size=(4, 6)), "float32")
    for rng in (3, jax.random.key(3)):
        relaxcat.gumbel_softmax(x, 0.5, hard=hard, rng=rng)
    # Explicit noise and a Philox key's noise: the sample's computation without the draw.
    relaxcat.gumbel_softmax(x, 0.5, hard=hard, noise=relaxcat.gumbel_noise(x, rng=1))
    relaxcat.gumbel_softmax(x, 0.5, hard=hard, rng=relaxcat.Philox(5))
    assert taken(jax_spies) == {"fused": 2, "from_noise": 2, "generic": 0}


@pytest.mark.backends("jax")
@pytest.mark.host_values
def test_jax_transformations_and_other_inputs_take_the_generic_path(bk, jax_spies):
    import jax

    x = bk.asarray(np.random.default_rng(0).normal(size=(4, 6)), "float32")
    key = jax.random.key(0)
    jax.jit(lambda v: relaxcat.gumbel_softmax(v, 0.5, rng=key))(x)
    jax.grad(lambda v: relaxcat.gumbel_softmax(v, 0.5, rng=key)[0, 0])(x)
    jax.vmap(lambda v: relaxcat.gumbel_softmax(v, 0.5, rng=key))(x)
    relaxcat.gumbel_softmax(x, bk.asarray(np.full((4, 1), 0.5), "float32"), rng=key)
    counts = taken(jax_spies)
    assert counts == {"fused": 0, "from_noise": 0, "generic": 4}, counts
