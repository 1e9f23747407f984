"""Gradient estimators for the one-hot sample: ReinMax and Gumbel-Rao.

``gumbel_softmax(logits, tau, hard=True, estimator=...)`` draws the exact one-hot
Gumbel-max sample ``D = onehot(argmax(logits + g))``, a draw from
``Categorical(softmax(logits))``, and attaches a gradient to it. The straight-through
Gumbel-softmax (``"st"``) lives in ``relaxcat/_core.py``; the other estimators live here.
All of them return exactly the same forward value for the same noise; they differ only in
the gradient.

* **ReinMax** (Liu et al. 2023): the gradient is ``2 J(pi1) g - 0.5 J(pi0) g`` for an
  upstream gradient ``g``, with ``pi0 = softmax(logits)``, ``pi1 = (D + softmax(logits /
  tau)) / 2`` and ``J(p) = diag(p) - p p^T``. The rule is attached by the adapter
  (:meth:`relaxcat._backends.Backend.reinmax`); torch and JAX register it with their autodiff.
* **Gumbel-Rao** (Paulus et al. 2021): the straight-through surrogate
  ``softmax((logits + g) / tau)`` averaged over ``samples`` Gumbel draws ``g`` conditioned
  on ``argmax(logits + g) = D``. The conditional noise is a constant (it carries no
  gradient), so each term is an ST-GS gradient and ``samples=1`` is ST-GS in distribution;
  averaging is Rao-Blackwellisation, which lowers the variance and keeps the mean.

Where no gradient can flow (NumPy, CuPy, array-API libraries without autodiff, or torch
logits and ``tau`` that do not require grad; :meth:`relaxcat._core.Prepared.gradient_needed`
decides), only the one-hot sample is computed.
"""

from __future__ import annotations

from typing import Any

from ._backends import Array, Backend, NoiseSource
from ._core import Prepared, compiled_sample, scaled_softmax
from ._noise import clamp_exponential

__all__ = ["conditional_gumbel", "estimator_sample"]


def estimator_sample(
    p: Prepared, estimator: str, samples: int, rng: object, noise: object
) -> Array:
    """``gumbel_softmax(..., hard=True, estimator=estimator)`` for ``estimator != "st"``.

    The random numbers of one call come from one noise source, in this order: the Gumbel
    noise that decides the sample (draw 0), then, for Gumbel-Rao, the exponentials of the
    conditional draws (draw 1). With ``noise=``, draw 0 is skipped rather than reused, so
    ``noise=gumbel_noise(x, rng=s), rng=s`` gives what ``rng=s`` gives, and the conditional
    draws never repeat the exponentials behind ``noise``.
    """
    xp, backend = p.xp, p.backend
    source: NoiseSource | None = None
    gumbel = p.given_noise(noise)
    if gumbel is None:
        source = p.source(rng)
        gumbel = p.draw(source)  # exactly gumbel_noise's draw
    s = p.x + gumbel
    with backend.errstate():
        if backend.values_readable(s):
            p.check_rows(xp.max(s, axis=p.axis, keepdims=True), noise is not None)
        hot = compiled_sample(p, s, None, hard=True, soft=False)
        if not p.gradient_needed():
            return p.out(hot)  # no gradient to carry: the surrogate is not needed
        if estimator == "reinmax":
            return p.out(reinmax(p, hot))
        if source is None:
            source = gumbel_rao_source(p, rng, samples)
            skip = getattr(source, "skip", None)  # a counter-based source skips for free
            if skip is not None:
                skip()
            else:
                p.draw(source)  # draw 0 belongs to the noise
        return p.out(gumbel_rao(p, hot, samples, source))


def reinmax(p: Prepared, hot: Array) -> Array:
    """The one-hot ``hot`` with ReinMax's gradient with respect to the logits.

    ``pi1`` is a constant (as in the published algorithm), so an array ``tau`` gets no
    gradient from this estimator.
    """
    return p.backend.compiled(_reinmax, (0, 1))(p.backend, p.axis, p.x, hot, p.tau)


def _reinmax(backend: Backend, axis: int, x: Array, hot: Array, tau: Any) -> Array:
    xp = backend.xp
    constant = backend.stop_gradient(x)
    row_max = xp.max(constant, axis=axis, keepdims=True)
    pi0 = scaled_softmax(xp, constant, row_max, 1.0, axis)
    pi1 = (hot + scaled_softmax(xp, constant, row_max, tau, axis)) / 2.0
    return backend.reinmax(x, hot, pi0, backend.stop_gradient(pi1), axis)


def gumbel_rao_source(p: Prepared, rng: object, samples: int) -> NoiseSource:
    """The source of Gumbel-Rao's conditional draws when ``noise=`` was given."""
    try:
        return p.source(rng)
    except TypeError as exc:
        # Not the adapter's message for rng=None: it may advise noise=, given already.
        detail = "got rng=None." if rng is None else str(exc)
        raise TypeError(
            f"estimator='gumbel_rao' draws its {samples} conditional Gumbel sample(s) from "
            f"rng even when noise= is given (noise= fixes the one-hot sample only), so rng "
            f"must be {p.backend.rng_hint} for those draws; {detail}"
        ) from exc


def gumbel_rao(p: Prepared, hot: Array, samples: int, source: NoiseSource) -> Array:
    """The one-hot ``hot`` with the Gumbel-Rao gradient of ``samples`` conditional draws."""
    e = source.standard_exponential((samples, *tuple(p.logits.shape)), p.dtype)
    return p.backend.compiled(_gumbel_rao, (0, 1))(p.backend, p.axis, p.x, hot, e, p.tau)


def _gumbel_rao(backend: Backend, axis: int, x: Array, hot: Array, e: Array, tau: Any) -> Array:
    xp = backend.xp
    g = conditional_gumbel(xp, backend.stop_gradient(x), hot, e, axis)
    z = x + g  # (samples, *shape); the logits carry the gradient, the noise does not
    row_max = backend.stop_gradient(xp.max(z, axis=axis + 1, keepdims=True))
    surrogate = xp.mean(scaled_softmax(xp, z, row_max, tau, axis + 1), axis=0)
    return hot + (surrogate - backend.stop_gradient(surrogate))


def conditional_gumbel(xp: Any, logits: Array, hot: Array, e: Array, axis: int) -> Array:
    """Gumbel noise ``g`` with ``argmax(logits + g) = argmax(hot)``, one draw per row of ``e``.

    ``e`` holds Exp(1) draws of shape ``(K, *logits.shape)``; the result has that shape and
    is a draw of the standard Gumbel noise conditioned on the one-hot ``hot``. With
    ``log p = log_softmax(logits)`` and ``E_D`` the exponential of the chosen category
    ``D`` (Paulus et al. 2021, with ``Z = sum(exp(logits))``)::

        logits_D + g_D = log Z - log E_D
        logits_j + g_j = -log(E_j exp(-logits_j) + E_D / Z)         (j != D)

    that is ``g_D = -log E_D - log p_D`` and ``g_j = -logaddexp(log E_j, log E_D + log p_j)``.
    Written so, no ``exp(logits)`` is ever formed (it overflows for logits above ~88 in
    float32), and a masked category (``log p_j = -inf``) gets the finite ``g_j = -log E_j``.
    In exact arithmetic every category other than ``D`` ends strictly below it; in float32 a
    category within rounding error of ``D`` may tie with it.
    """
    log_e = xp.log(clamp_exponential(xp, e))
    row_max = xp.max(logits, axis=axis, keepdims=True)
    log_z = row_max + xp.log(xp.sum(xp.exp(logits - row_max), axis=axis, keepdims=True))
    log_p = logits - log_z
    log_e_top = xp.sum(hot * log_e, axis=axis + 1, keepdims=True)  # exact: hot is 0 or 1
    others = -xp.logaddexp(log_e, log_e_top + log_p)
    top = -log_e_top - log_p
    return xp.where(hot != 0, top, others)
