"""Gradients of the new functions on torch and JAX, and every function under jax.jit.

Gradients are compared with autodiff of naive formulas written here with the library's
own namespace (plain softmax, powers, no stabilisation: the inputs are moderate), and with
finite differences through torch.autograd.gradcheck and jax.test_util.check_grads.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import relaxcat
from relaxcat._backends import backend_of
from tests.test_samplers import conditioned_draws

pytestmark = pytest.mark.backends("torch", "jax")

B, N = 6, 5
RNG = np.random.default_rng(5)
LOGITS = RNG.normal(size=(B, N))
NOISE = RNG.gumbel(size=(B, N))
NOISE_K = RNG.gumbel(size=(3, B, N))
LOGISTIC = RNG.logistic(size=(B, N))
Y = RNG.dirichlet(np.full(N, 2.0), size=B)
YB = RNG.uniform(0.05, 0.95, size=(B, N))
TAUS = np.array([[0.3], [0.5], [0.8], [1.0], [1.7], [3.0]])
MASKED = LOGITS.copy()
MASKED[0, [1, 3]] = -np.inf
MASKED[4, 0] = -np.inf


def grads(bk, f, args, weighted=True):
    """Gradients of sum(W * f(*args)) w.r.t. every argument, in one backward pass.

    NumPy in, a list of NumPy gradients out. ``W`` is a fixed random weight of the
    output's shape (1 if not ``weighted``). One pass keeps JAX at one compilation.
    """
    arrays = [bk.asarray(a) for a in args]
    # The output's shape, without running f (on JAX that would be one more compilation).
    shape = f(*arrays).shape if bk.name == "torch" else bk.jax.eval_shape(f, *arrays).shape
    w = bk.asarray(np.random.default_rng(1).normal(size=tuple(shape)) if weighted else 1.0)
    if bk.name == "torch":
        arrays = [a.requires_grad_(True) for a in arrays]
        (f(*arrays) * w).sum().backward()
        return [bk.to_numpy(a.grad) for a in arrays]
    argnums = tuple(range(len(arrays)))
    out = bk.jax.grad(lambda *a: (f(*a) * w).sum(), argnums=argnums)(*arrays)
    return [bk.to_numpy(g) for g in out]


def grad(bk, f, args, wrt=0):
    """Gradient of sum(W * f(*args)) w.r.t. args[wrt]."""
    return grads(bk, f, args)[wrt]


def assert_grads_close(got, expected, **tol):
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(a, b, err_msg=f"argument {i}", **tol)


def ns(bk):
    return backend_of(bk.asarray([0.0])).xp


def log_(xp, t):
    return math.log(t) if isinstance(t, float) else xp.log(t)


def naive_softmax(xp, z):
    e = xp.exp(z)
    return e / xp.sum(e, axis=-1, keepdims=True)


def naive_concrete(xp, y, logits, tau):
    n = y.shape[-1]
    pi = naive_softmax(xp, logits)
    return (
        math.lgamma(n)
        + (n - 1) * log_(xp, tau)[..., 0]
        + xp.sum(xp.log(pi) - (tau + 1) * xp.log(y), axis=-1)
        - n * xp.log(xp.sum(pi * y ** (-tau), axis=-1))
    )


def naive_exp_concrete(xp, x, logits, tau):
    n = x.shape[-1]
    pi = naive_softmax(xp, logits)
    return (
        math.lgamma(n)
        + (n - 1) * log_(xp, tau)[..., 0]
        + xp.sum(xp.log(pi) - tau * x, axis=-1)
        - n * xp.log(xp.sum(pi * xp.exp(-tau * x), axis=-1))
    )


def naive_bernoulli_log_prob(xp, y, logits, tau):
    z = xp.log(y / (1 - y))
    return (
        log_(xp, tau)
        - tau * z
        + logits
        - 2 * xp.log(1 + xp.exp(logits - tau * z))
        - xp.log(y)
        - xp.log(1 - y)
    )


def naive_successive(xp, s, k, tau):
    a, total = s, 0.0
    for _ in range(k):
        p = naive_softmax(xp, a / tau)
        total = total + p
        a = a + xp.log(1 - p)
    return total


# -- log_gumbel_softmax -----------------------------------------------------------------


def test_log_sample_gradients(bk):
    xp = ns(bk)
    g = bk.asarray(NOISE)

    def native(x, t):
        z = (x + g) / t
        return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))

    def ours(x, t):
        return relaxcat.log_gumbel_softmax(x, t, noise=g)

    assert_grads_close(
        grads(bk, ours, (LOGITS, TAUS)), grads(bk, native, (LOGITS, TAUS)), rtol=1e-10, atol=1e-12
    )


def test_log_sample_gradient_with_masked_categories_is_finite(bk):
    g = bk.asarray(NOISE)
    finite = np.isfinite(MASKED)

    def ours(x):  # a loss on the unmasked entries only (the masked ones are -inf)
        y = relaxcat.log_gumbel_softmax(x, 0.5, noise=g)
        return ns(bk).where(bk.asarray(finite, None), y, 0.0)

    gr = grad(bk, ours, (MASKED,))
    assert np.isfinite(gr).all()
    assert (gr[~finite] == 0).all()


# -- densities --------------------------------------------------------------------------


def test_concrete_density_gradients(bk):
    xp = ns(bk)
    args = (Y, LOGITS, TAUS)
    ours = grads(bk, lambda y, l, t: relaxcat.concrete_log_prob(y, l, t), args)
    ref = grads(bk, lambda y, l, t: naive_concrete(xp, y, l, t), args)
    assert_grads_close(ours, ref, rtol=1e-9, atol=1e-10)


def test_exp_concrete_density_gradients(bk):
    xp = ns(bk)
    args = (np.log(Y), LOGITS, TAUS)
    ours = grads(bk, lambda x, l, t: relaxcat.exp_concrete_log_prob(x, l, t), args)
    ref = grads(bk, lambda x, l, t: naive_exp_concrete(xp, x, l, t), args)
    assert_grads_close(ours, ref, rtol=1e-9, atol=1e-10)


def test_density_gradients_with_masked_categories_match_the_reduced_problem(bk):
    # Row 0 has categories 1 and 3 masked: its gradient equals that of the 3-category
    # density, and is exactly 0 on the masked entries; nothing is NaN.
    y = Y.copy()
    y[0] = [0.2, 0.0, 0.5, 0.0, 0.3]
    y[4] = np.r_[0.0, Y[4, 1:] / Y[4, 1:].sum()]
    for f in (relaxcat.concrete_log_prob, relaxcat.exp_concrete_log_prob):
        is_exp = f is relaxcat.exp_concrete_log_prob
        arg = np.log(np.where(y > 0, y, 1.0)) + np.where(y > 0, 0, -np.inf) if is_exp else y
        full = grads(bk, lambda a, l, f=f: f(a, l, 0.7), (arg, MASKED))
        keep = [0, 2, 4]
        red = grads(bk, lambda a, l, f=f: f(a, l, 0.7), (arg[:1, keep], MASKED[:1, keep]))
        for gr, r in zip(full, red, strict=True):
            assert np.isfinite(gr[np.isfinite(MASKED)]).all()
            assert (gr[~np.isfinite(MASKED)] == 0).all()
            np.testing.assert_allclose(gr[0, keep], r[0], rtol=1e-10, atol=1e-12)


def test_relaxed_bernoulli_density_gradients(bk):
    xp = ns(bk)
    args = (YB, LOGITS, TAUS)
    ours = grads(bk, lambda y, l, t: relaxcat.relaxed_bernoulli_log_prob(y, l, t), args)
    ref = grads(bk, lambda y, l, t: naive_bernoulli_log_prob(xp, y, l, t), args)
    assert_grads_close(ours, ref, rtol=1e-9, atol=1e-10)


# -- relaxed Bernoulli --------------------------------------------------------------------


def test_relaxed_bernoulli_gradients(bk):
    xp = ns(bk)
    noise = bk.asarray(LOGISTIC)
    args = (LOGITS, TAUS)
    soft = grads(bk, lambda l, t: relaxcat.relaxed_bernoulli(l, t, noise=noise), args)
    native = grads(bk, lambda l, t: 1 / (1 + xp.exp(-(l + noise) / t)), args)
    assert_grads_close(soft, native, rtol=1e-10, atol=1e-13)
    hard = grads(bk, lambda l, t: relaxcat.relaxed_bernoulli(l, t, hard=True, noise=noise), args)
    for h, g in zip(hard, soft, strict=True):
        np.testing.assert_array_equal(h, g)


def test_relaxed_bernoulli_gradient_at_zero_is_one_quarter_over_tau(bk):
    # At l + L = 0 the sigmoid's slope is 1/4; the branch-free form must not lose it.
    x = np.zeros((B, N))
    g = grad(
        bk, lambda l: relaxcat.relaxed_bernoulli(l, 0.5, noise=bk.asarray(np.zeros((B, N)))), (x,)
    )
    w = np.random.default_rng(1).normal(size=(B, N))
    np.testing.assert_allclose(g, w / 4 / 0.5, rtol=1e-14)


def test_hard_relaxed_bernoulli_carries_a_tau_gradient_without_logit_gradients(bk):
    noise = bk.asarray(LOGISTIC)
    g = grad(
        bk,
        lambda t: relaxcat.relaxed_bernoulli(bk.asarray(LOGITS), t, hard=True, noise=noise),
        (TAUS,),
    )
    assert np.abs(g).max() > 0


# -- relaxed top-k ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 4])
def test_successive_topk_gradients(bk, k):
    xp = ns(bk)
    g = bk.asarray(NOISE)
    args = (LOGITS, TAUS)
    ours = grads(bk, lambda l, t: relaxcat.relaxed_topk(l, k, t, noise=g), args)
    ref = grads(bk, lambda l, t: naive_successive(xp, l + g, k, t), args)
    assert_grads_close(ours, ref, rtol=1e-9, atol=1e-11)
    hard = grads(bk, lambda l, t: relaxcat.relaxed_topk(l, k, t, hard=True, noise=g), args)
    for h, o in zip(hard, ours, strict=True):
        np.testing.assert_array_equal(h, o)


def test_max_topk_gradients(bk):
    xp = ns(bk)
    k = 3
    g = bk.asarray(NOISE_K)
    # The draws' noise does not depend on the logits' gradient: compute it in NumPy. Each
    # accepted draw is a Gumbel-softmax draw with that (conditioned) noise held fixed.
    draws, _ = conditioned_draws(LOGITS, NOISE_K, k)
    fixed = [bk.asarray(d - LOGITS) for d in draws]

    def naive(l, t):
        best = None
        for noise in fixed:
            d = naive_softmax(xp, (l + noise) / t)
            best = d if best is None else xp.maximum(best, d)
        return best

    args = (LOGITS, TAUS)
    ours = grads(bk, lambda l, t: relaxcat.relaxed_topk(l, k, t, method="max", noise=g), args)
    assert_grads_close(ours, grads(bk, naive, args), rtol=1e-10, atol=1e-12)
    hard = grads(
        bk, lambda l, t: relaxcat.relaxed_topk(l, k, t, hard=True, method="max", noise=g), args
    )
    for h, o in zip(hard, ours, strict=True):
        np.testing.assert_array_equal(h, o)


@pytest.mark.parametrize("method", ["successive", "max"])
def test_topk_gradients_are_finite_at_extremes(bk, method):
    noise = NOISE if method == "successive" else NOISE_K
    logits = MASKED.copy()
    logits[1] = [1e30, -1e30, 0.0, 3.0, 1e29]
    for tau in (1e-8, 1.0, 1e8):
        gr = grad(
            bk,
            lambda l, tau=tau: relaxcat.relaxed_topk(
                l, 3, tau, method=method, noise=bk.asarray(noise)
            ),
            (logits,),
        )
        assert np.isfinite(gr).all(), tau


# -- categorical KL -----------------------------------------------------------------------


def test_kl_gradients(bk):
    xp = ns(bk)

    def naive(lq, lp):
        q, p = naive_softmax(xp, lq), naive_softmax(xp, lp)
        return xp.sum(q * (xp.log(q) - xp.log(p)), axis=-1)

    args = (LOGITS, np.roll(LOGITS, 1, axis=0))
    ours = grads(bk, lambda a, b: relaxcat.categorical_kl(a, b), args)
    assert_grads_close(ours, grads(bk, naive, args), rtol=1e-10, atol=1e-12)


def test_kl_gradients_with_masked_and_underflowing_categories_are_finite(bk):
    lq = MASKED.copy()
    lq[2, 2] = -800.0
    lp = np.where(np.isfinite(MASKED), LOGITS[::-1], 0.0)
    for gr in grads(bk, lambda a, b: relaxcat.categorical_kl(a, b), (lq, lp)):
        assert np.isfinite(gr).all()


# -- finite differences -------------------------------------------------------------------


@pytest.mark.backends("torch")
def test_torch_gradcheck(bk):
    torch = bk.lib
    logits = bk.asarray(LOGITS).requires_grad_(True)
    taus = bk.asarray(TAUS).requires_grad_(True)
    y = bk.asarray(Y).requires_grad_(True)
    g, lg = bk.asarray(NOISE), bk.asarray(LOGISTIC)
    checks = [
        (lambda l, t: relaxcat.log_gumbel_softmax(l, t, noise=g), (logits, taus)),
        (lambda y_, l, t: relaxcat.concrete_log_prob(y_, l, t), (y, logits, taus)),
        (
            lambda x, l, t: relaxcat.exp_concrete_log_prob(x, l, t),
            (torch.log(y.detach()).requires_grad_(True), logits, taus),
        ),
        (lambda l, t: relaxcat.relaxed_bernoulli(l, t, noise=lg), (logits, taus)),
        (lambda y_, l, t: relaxcat.relaxed_bernoulli_log_prob(y_, l, t), (y, logits, taus)),
        (lambda l, t: relaxcat.relaxed_topk(l, 3, t, noise=g), (logits, taus)),
        # relaxed_topk(method="max") is not here: its gradient is, by definition, that of
        # each accepted draw with its conditioned noise held fixed (as in the recipe), not
        # the derivative of the sample at fixed raw noise, which also moves the conditioning;
        # test_max_topk_gradients holds it to that definition.
        (
            lambda a, b: relaxcat.categorical_kl(a, b),
            (logits, bk.asarray(LOGITS[::-1]).requires_grad_(True)),
        ),
    ]
    for f, args in checks:
        assert torch.autograd.gradcheck(f, args), f


@pytest.mark.backends("jax")
def test_jax_check_grads(bk):
    from jax.test_util import check_grads

    jnp = bk.lib
    g, lg = bk.asarray(NOISE), bk.asarray(LOGISTIC)
    y, t = bk.asarray(Y), bk.asarray(TAUS)
    # Reverse mode for all (torch's gradcheck covers every function with finite
    # differences); forward mode too for the most intricate one.
    for f, modes in (
        (lambda l: relaxcat.log_gumbel_softmax(jnp.asarray(l), t, noise=g), ["rev"]),
        (lambda l: relaxcat.concrete_log_prob(y, jnp.asarray(l), t), ["rev"]),
        (lambda l: relaxcat.relaxed_bernoulli(jnp.asarray(l), t, noise=lg), ["rev"]),
        (lambda l: relaxcat.relaxed_topk(jnp.asarray(l), 3, t, noise=g), ["fwd", "rev"]),
        (lambda l: relaxcat.categorical_kl(jnp.asarray(l), jnp.zeros((B, N))), ["rev"]),
    ):
        check_grads(f, (bk.asarray(LOGITS),), order=1, modes=modes)


# -- jax.jit: every function, and the compiled kernels equal the plain ones --------------


@pytest.mark.backends("jax")
def test_every_function_works_under_jit(bk):
    jax = bk.jax
    key = jax.random.key(0)
    x, y, t = bk.asarray(MASKED), bk.asarray(Y), bk.asarray(TAUS)
    ym = bk.asarray(
        np.where(np.isfinite(MASKED), Y, 0.0)
        / np.where(np.isfinite(MASKED), Y, 0.0).sum(-1, keepdims=True)
    )
    calls = {
        "log_gumbel_softmax": lambda x, k: relaxcat.log_gumbel_softmax(x, t, rng=k),
        "concrete_log_prob": lambda x, k: relaxcat.concrete_log_prob(ym, x, t),
        "exp_concrete_log_prob": lambda x, k: relaxcat.exp_concrete_log_prob(
            jax.numpy.log(ym), x, t
        ),
        "relaxed_bernoulli": lambda x, k: relaxcat.relaxed_bernoulli(x, t, hard=True, rng=k),
        "relaxed_bernoulli_log_prob": lambda x, k: relaxcat.relaxed_bernoulli_log_prob(y, x, t),
        "sample_categorical": lambda x, k: relaxcat.sample_categorical(x, rng=k),
        "gumbel_topk": lambda x, k: relaxcat.gumbel_topk(x, 3, rng=k),
        "relaxed_topk": lambda x, k: relaxcat.relaxed_topk(x, 3, t, hard=True, rng=k),
        "relaxed_topk_max": lambda x, k: relaxcat.relaxed_topk(x, 3, t, method="max", rng=k),
        "categorical_kl": lambda x, k: relaxcat.categorical_kl(x, jax.numpy.zeros((B, N))),
    }
    for name, f in calls.items():
        jitted = bk.to_numpy(jax.jit(f)(x, key))
        eager = bk.to_numpy(f(x, key))
        np.testing.assert_allclose(jitted, eager, rtol=1e-12, err_msg=name)
        assert not np.isnan(jitted).any(), name


@pytest.mark.backends("jax")
def test_jit_with_a_concrete_tau_captured_from_outside(bk):
    # A regression test for gumbel_softmax: a concrete tau captured by a jitted function is
    # not a tracer, but nothing computed from it inside the trace can be read. (The new
    # functions capture tau and y this way in test_every_function_works_under_jit.)
    jax = bk.jax
    t, x = bk.asarray(TAUS), bk.asarray(LOGITS)
    f = lambda l: relaxcat.gumbel_softmax(l, t, rng=0)
    np.testing.assert_allclose(bk.to_numpy(jax.jit(f)(x)), bk.to_numpy(f(x)), rtol=1e-12)


@pytest.mark.backends("jax")
def test_jit_vmap_grad_over_keys(bk):
    jax = bk.jax
    keys = jax.random.split(jax.random.key(1), 4)
    x = bk.asarray(LOGITS)

    def loss(l, key):
        return (relaxcat.relaxed_topk(l, 2, 0.5, rng=key) * bk.asarray(LOGISTIC)).sum()

    grads = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(x, keys)
    assert grads.shape == (4, B, N) and np.isfinite(bk.to_numpy(grads)).all()
    assert abs(float(grads[0].sum())) < 1e-10  # each softmax round's gradient sums to 0


@pytest.mark.backends("jax")
def test_compiled_kernels_equal_uncompiled(bk, monkeypatch):
    # JAX runs each function's math as one jit-compiled kernel; the semantics are those
    # of the plain function. Compare with the adapter's compilation switched off.
    x = bk.asarray(MASKED)
    g, gk, lg = bk.asarray(NOISE), bk.asarray(NOISE_K), bk.asarray(LOGISTIC)
    ym = np.where(np.isfinite(MASKED), Y, 0.0)
    ym = bk.asarray(ym / ym.sum(-1, keepdims=True))

    def run():
        return [
            relaxcat.log_gumbel_softmax(x, 0.3, noise=g),
            relaxcat.concrete_log_prob(ym, x, 0.3),
            relaxcat.exp_concrete_log_prob(bk.lib.log(ym), x, 0.3),
            relaxcat.relaxed_bernoulli(x, 0.3, noise=lg),
            relaxcat.relaxed_bernoulli_log_prob(bk.asarray(YB), x, 0.3),
            relaxcat.gumbel_topk(x, 3, rng=2),
            relaxcat.relaxed_topk(x, 3, 0.3, hard=True, noise=g),
            relaxcat.relaxed_topk(x, 3, 0.3, noise=g),
            relaxcat.relaxed_topk(x, 3, 0.3, method="max", noise=gk),
            relaxcat.categorical_kl(x, bk.asarray(LOGITS)),
        ]

    compiled = [bk.to_numpy(r) for r in run()]
    monkeypatch.setattr(type(backend_of(x)), "compiled", lambda self, fn, static: fn)
    plain = [bk.to_numpy(r) for r in run()]
    for a, b in zip(compiled, plain, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)


# -- masked categories and a learnable temperature ----------------------------------------


@pytest.mark.parametrize("name", ["gumbel_softmax", "log_gumbel_softmax", "successive", "max"])
def test_masked_categories_leave_gradients_those_of_the_unmasked_ones(bk, name):
    # Row 0 of MASKED has categories 1 and 3 masked: the gradients (in the logits and in
    # an array tau) must be those of the 3-category problem, not NaN. A regression test
    # for gumbel_softmax too: its tau gradient was NaN with any masked category.
    keep = [0, 2, 4]
    w = np.random.default_rng(2).normal(size=(1, N))

    def run(cols):
        noise = NOISE_K[:2, :1, cols] if name == "max" else NOISE[:1, cols]
        g, mask = bk.asarray(noise), bk.asarray(np.isfinite(MASKED[:1, cols]), None)
        xp = ns(bk)

        def f(l, t):
            if name == "gumbel_softmax":
                y = relaxcat.gumbel_softmax(l, t, noise=g)
            elif name == "log_gumbel_softmax":
                y = relaxcat.log_gumbel_softmax(l, t, noise=g)
            else:
                y = relaxcat.relaxed_topk(l, 2, t, method=name, noise=g)
            return xp.where(mask, y, 0.0) * bk.asarray(w[:, cols])

        return grads(bk, f, (MASKED[:1, cols], TAUS[:1]), weighted=False)

    (logits_full, tau_full), (logits_red, tau_red) = run(list(range(N))), run(keep)
    assert np.isfinite(logits_full).all() and np.isfinite(tau_full).all()
    assert (logits_full[0, [1, 3]] == 0).all()
    np.testing.assert_allclose(logits_full[:, keep], logits_red, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tau_full, tau_red, rtol=1e-12, atol=1e-15)


def test_relaxed_bernoulli_tau_gradient_with_infinite_logits_is_finite(bk):
    logits = LOGITS.copy()
    logits[0, 0], logits[1, 1] = np.inf, -np.inf
    noise = bk.asarray(LOGISTIC)
    g = grad(bk, lambda l, t: relaxcat.relaxed_bernoulli(l, t, noise=noise), (logits, TAUS), 1)
    assert np.isfinite(g).all()
