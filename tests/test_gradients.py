"""Gradients on the autodiff backends (torch and JAX); other backends are deselected."""

from __future__ import annotations

import numpy as np
import pytest

import relaxcat
from tests.conftest import grad_of_tau

pytestmark = pytest.mark.backends("torch", "jax")

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(6, 5))
NOISE = RNG.gumbel(size=(6, 5))
W = RNG.normal(size=(6, 5))


def grad_of(bk, f, logits):
    """Gradient of sum(W * f(logits)) with respect to the logits, as NumPy."""
    if bk.name == "torch":
        t = bk.asarray(logits).requires_grad_(True)
        (f(t) * bk.asarray(W)).sum().backward()
        return bk.to_numpy(t.grad)
    jax = bk.jax
    w = bk.asarray(W)
    return bk.to_numpy(jax.grad(lambda t: (f(t) * w).sum())(bk.asarray(logits)))


def native_softmax(bk, z, axis=-1):
    if bk.name == "torch":
        return bk.lib.softmax(z, dim=axis)
    return bk.jax.nn.softmax(z, axis=axis)


@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_soft_gradient_equals_autodiff_of_formula(bk, tau):
    noise = bk.asarray(NOISE)
    ours = grad_of(bk, lambda t: relaxcat.gumbel_softmax(t, tau, noise=noise), LOGITS)
    plain = grad_of(bk, lambda t: native_softmax(bk, (t + noise) / tau), LOGITS)
    np.testing.assert_allclose(ours, plain, rtol=1e-10, atol=1e-13)


def test_soft_gradient_matches_hand_derivation(bk):
    tau = 0.7
    z = (LOGITS + NOISE) / tau
    y = np.exp(z - z.max(-1, keepdims=True))
    y /= y.sum(-1, keepdims=True)
    expected = y * (W - (W * y).sum(-1, keepdims=True)) / tau  # J(y)^T w / tau
    noise = bk.asarray(NOISE)
    ours = grad_of(bk, lambda t: relaxcat.gumbel_softmax(t, tau, noise=noise), LOGITS)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_hard_gradient_equals_soft_gradient(bk, tau):
    noise = bk.asarray(NOISE)
    soft = grad_of(bk, lambda t: relaxcat.gumbel_softmax(t, tau, noise=noise), LOGITS)
    hard = grad_of(bk, lambda t: relaxcat.gumbel_softmax(t, tau, hard=True, noise=noise), LOGITS)
    np.testing.assert_array_equal(hard, soft)
    assert np.abs(hard).max() > 0


def test_hard_forward_is_exact_one_hot_while_tracking_gradients(bk):
    noise = bk.asarray(NOISE)
    if bk.name == "torch":
        y = relaxcat.gumbel_softmax(
            bk.asarray(LOGITS).requires_grad_(True), 0.5, hard=True, noise=noise
        )
        assert y.requires_grad
    else:
        y = bk.jax.jit(lambda t: relaxcat.gumbel_softmax(t, 0.5, hard=True, noise=noise))(
            bk.asarray(LOGITS)
        )
    y = bk.to_numpy(y)
    np.testing.assert_array_equal(y, np.eye(5)[np.argmax(LOGITS + NOISE, -1)])


def test_gradient_with_respect_to_tau_array(bk):
    taus = np.array([[0.5], [1.0], [2.0], [0.3], [0.8], [1.5]])
    noise = bk.asarray(NOISE)
    eps = 1e-6

    def loss_np(tau):
        z = (LOGITS + NOISE) / tau
        y = np.exp(z - z.max(-1, keepdims=True))
        return (W * y / y.sum(-1, keepdims=True)).sum()

    fd = np.array(
        [
            (loss_np(taus + eps * np.eye(6)[:, [i]]) - loss_np(taus - eps * np.eye(6)[:, [i]]))
            / (2 * eps)
            for i in range(6)
        ]
    )
    logits = bk.asarray(LOGITS)
    w = bk.asarray(W)
    if bk.name == "torch":
        t = bk.asarray(taus).requires_grad_(True)
        (relaxcat.gumbel_softmax(logits, t, noise=noise) * w).sum().backward()
        got = bk.to_numpy(t.grad)[:, 0]
    else:
        got = bk.to_numpy(
            bk.jax.grad(lambda t: (relaxcat.gumbel_softmax(logits, t, noise=noise) * w).sum())(
                bk.asarray(taus)
            )
        )[:, 0]
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.backends("torch")
def test_torch_gradcheck_float64(bk):
    torch = bk.lib
    noise = bk.asarray(NOISE)
    logits = bk.asarray(LOGITS).requires_grad_(True)
    taus = bk.asarray(np.full((6, 1), 0.8)).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda l, t: relaxcat.gumbel_softmax(l, t, noise=noise), (logits, taus)
    )
    assert torch.autograd.gradcheck(
        lambda l: relaxcat.gumbel_softmax(l, 0.6, axis=0, noise=noise), (logits,)
    )
    assert torch.autograd.gradgradcheck(
        lambda l: relaxcat.gumbel_softmax(l, 0.6, noise=noise), (logits,)
    )


@pytest.mark.backends("jax")
def test_jax_check_grads(bk):
    from jax.test_util import check_grads

    noise = bk.asarray(NOISE)
    jnp = bk.lib  # check_grads also calls the function with NumPy arrays: convert them

    def f(l):
        return relaxcat.gumbel_softmax(jnp.asarray(l), 0.6, noise=noise)

    check_grads(f, (bk.asarray(LOGITS),), order=2, modes=["fwd", "rev"])


@pytest.mark.backends("jax")
def test_jax_jit_vmap_over_keys_and_grad(bk):
    jax = bk.jax
    logits = bk.asarray(LOGITS[0], "float32")
    keys = jax.random.split(jax.random.key(0), 8)

    def sample(key):
        return relaxcat.gumbel_softmax(logits, 0.5, hard=True, rng=key)

    batched = jax.jit(jax.vmap(sample))(keys)
    assert batched.shape == (8, 5)
    eager = np.stack([bk.to_numpy(sample(k)) for k in keys])
    np.testing.assert_array_equal(bk.to_numpy(batched), eager)
    assert len({tuple(r) for r in eager.tolist()}) > 1  # different keys, different samples

    # vmap over raw keys too
    raw = jax.random.split(jax.random.PRNGKey(0), 4)
    assert jax.vmap(sample)(raw).shape == (4, 5)

    def loss(l, key):
        return (relaxcat.gumbel_softmax(l, 0.5, rng=key) * bk.asarray(W[0], "float32")).sum()

    g = jax.jit(jax.grad(loss))(logits, keys[0])
    assert g.shape == (5,) and np.isfinite(bk.to_numpy(g)).all()
    assert abs(float(g.sum())) < 1e-5  # softmax gradients sum to zero along the categories


@pytest.mark.backends("jax")
def test_jax_jit_with_int_seed_and_array_tau(bk):
    jax = bk.jax
    f = jax.jit(lambda l, t: relaxcat.gumbel_softmax(l, t, rng=3))
    y = f(bk.asarray(LOGITS), bk.asarray(np.full((6, 1), 0.5)))
    np.testing.assert_allclose(bk.to_numpy(y).sum(-1), 1.0, rtol=1e-12)


@pytest.mark.backends("torch")
def test_hard_sample_carries_the_gradient_of_an_array_tau_alone(bk):
    # Logits without gradient, a temperature with one: the straight-through gradient
    # reaches tau (the soft sample must be computed although the logits need no gradient).
    torch = bk.lib
    noise = bk.asarray(NOISE)
    taus = bk.asarray(np.full((6, 1), 0.7)).requires_grad_(True)
    y = relaxcat.gumbel_softmax(bk.asarray(LOGITS), taus, hard=True, noise=noise)
    (y * bk.asarray(W)).sum().backward()
    soft_taus = bk.asarray(np.full((6, 1), 0.7)).requires_grad_(True)
    (
        relaxcat.gumbel_softmax(bk.asarray(LOGITS), soft_taus, noise=noise) * bk.asarray(W)
    ).sum().backward()
    assert torch.all(taus.grad != 0)
    np.testing.assert_allclose(bk.to_numpy(taus.grad), bk.to_numpy(soft_taus.grad), rtol=1e-12)


HARD_SAMPLERS = {
    "topk-successive": lambda x, t, hard, g: relaxcat.relaxed_topk(x, 2, t, hard=hard, noise=g[0]),
    "topk-max": lambda x, t, hard, g: relaxcat.relaxed_topk(
        x, 2, t, hard=hard, method="max", noise=g
    ),
    "bernoulli": lambda x, t, hard, g: relaxcat.relaxed_bernoulli(x, t, hard=hard, noise=g[0]),
}


@pytest.mark.parametrize("name", list(HARD_SAMPLERS))
def test_hard_samplers_give_tau_alone_the_straight_through_gradient(bk, name):
    # Logits without gradient: the hard sample still needs its soft surrogate for d/dtau.
    f = HARD_SAMPLERS[name]
    g = bk.asarray(np.random.default_rng(3).gumbel(size=(2, 6, 5)))
    x = bk.asarray(LOGITS)
    hard = grad_of_tau(bk, lambda t: f(x, t, True, g), W)
    soft = grad_of_tau(bk, lambda t: f(x, t, False, g), W)
    assert hard.shape == (1, 1) and np.all(hard != 0) and np.all(np.isfinite(hard))
    np.testing.assert_allclose(hard, soft, rtol=1e-13)
