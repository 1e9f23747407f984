"""Distribution math, written once against the array-API standard.

Log-space samples (ExpConcrete), the exact Concrete and ExpConcrete densities, the relaxed
Bernoulli (binary Concrete) and its density, exact categorical and k-subset sampling
(Gumbel-max and Gumbel top-k), two relaxed k-subsets, and the categorical KL divergence.

The same rules hold as in ``_core``: only standard calls on ``xp``, no Python control
flow on array values (everything works under ``jax.jit``), value checks only through
``_validation`` where the adapter says values can be read, all randomness through the
adapter's noise source, and half precision computed in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ._backends import Array, Backend, backend_of
from ._core import (
    Prepared,
    _extra_dims,
    divide_by_tau,
    one_hot_argmax,
    scaled_softmax,
    straight_through,
)
from ._validation import (
    NO_TAU,
    broadcast_pair,
    check_enough_unmasked,
    check_k,
    check_logits_rows,
    check_method,
    check_no_nan,
    check_simplex,
    check_tau,
    compute_dtype,
    normalize_axis,
)

__all__ = [
    "categorical_kl",
    "concrete_log_prob",
    "exp_concrete_log_prob",
    "gumbel_topk",
    "log_gumbel_softmax",
    "relaxed_bernoulli",
    "relaxed_bernoulli_log_prob",
    "relaxed_topk",
    "sample_categorical",
]

INF = math.inf
TOPK_METHODS = ("successive", "max")


# -- helpers (array-API only) -----------------------------------------------------------


def _logsumexp(backend: Backend, x: Array, axis: int) -> Array:
    """``log(sum(exp(x)))`` along ``axis`` (kept), stable; ``-inf`` entries add nothing.

    The shift is a constant for autodiff (the result does not depend on it), and a row
    whose maximum is not finite is shifted by 0, so ``-inf`` entries never meet ``-inf``.
    """
    xp = backend.xp
    m = backend.stop_gradient(xp.max(x, axis=axis, keepdims=True))
    m = xp.where(xp.isfinite(m), m, 0.0)
    return m + xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True))


def _log_softmax(backend: Backend, x: Array, axis: int) -> Array:
    return x - _logsumexp(backend, x, axis)


def _log(xp: Any, tau: Any) -> Any:
    return math.log(tau) if isinstance(tau, float) else xp.log(tau)


def _log_gamma_of_count(xp: Any, masked: Array, n: int, axis: int, dtype: Any) -> Array:
    """``lgamma(n_eff)``, ``n_eff`` the number of unmasked entries in each row (axis kept).

    The array API has no ``lgamma``. ``lgamma(n)`` for the full count is a Python number,
    and each masked entry removes one factor from ``(n - 1)!``: the ``c``-th masked entry
    of a row removes ``n - c``. Without masked entries the result is exactly ``lgamma(n)``.
    """
    c = xp.cumulative_sum(xp.astype(masked, dtype), axis=axis)
    removed = xp.where(masked, xp.log(xp.clip(n - c, min=1.0)), 0.0)
    return math.lgamma(n) - xp.sum(removed, axis=axis, keepdims=True)


def _sigmoid(xp: Any, z: Array) -> Array:
    """Logistic sigmoid without overflow: ``exp`` only ever sees ``-|z|``.

    ``-|z|`` is written with ``where`` so that its derivative at ``z = 0`` is that of the
    branch (abs has derivative 0 there in some libraries, which would lose the 1/4).
    """
    e = xp.exp(xp.where(z >= 0, -z, z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _first_along(x: Array, k: int, axis: int) -> Array:
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, k)
    return x[tuple(index)]


def _descending_order(xp: Any, s: Array, axis: int) -> Array:
    """Indices that sort ``s`` in decreasing order along ``axis``; ties keep index order."""
    return xp.argsort(s, axis=axis, descending=True, stable=True)


def _k_hot(xp: Any, s: Array, k: int, axis: int, dtype: Any) -> Array:
    """Exactly ``k`` ones along ``axis``, at the ``k`` largest entries (ties: first index).

    The rank of each entry is the inverse of the sorting permutation, found by sorting it
    once more; the ``k`` entries of rank < k are the same ones that :func:`gumbel_topk`
    returns for the same ``s``.
    """
    ranks = xp.argsort(_descending_order(xp, s, axis), axis=axis, stable=True)
    return xp.astype(ranks < k, dtype)


class _Pair:
    """Validated inputs of a density or divergence: two broadcast arrays and ``tau``.

    ``tau`` is None only where the caller passed ``NO_TAU`` (the KL divergence). An array ``tau``
    may add batch dimensions: ``a`` and ``b`` are then broadcast to the shape of all three,
    and ``axis`` (counted in that shape) is an axis of it.
    """

    __slots__ = ("a", "axis", "b", "backend", "dtype", "out_dtype", "tau", "xp")

    def __init__(self, a: Any, b: Any, names: tuple[str, str], axis: int | None, tau: Any) -> None:
        backend = backend_of(b, names[1])
        self.backend = backend
        self.xp = xp = backend.xp
        pair_ndim = max(len(getattr(a, "shape", ())), b.ndim)
        extra = 0 if type(tau) is float or tau is None else _extra_dims(tau, pair_ndim)
        if axis is not None and extra:
            where = f"the broadcast of {names[0]}, {names[1]} and tau"
            full_axis = normalize_axis(axis, pair_ndim + extra, where)
            if full_axis < extra:
                raise ValueError(
                    f"axis={axis} is a dimension that tau of shape {tuple(tau.shape)} adds in "
                    f"front of {names[0]} and {names[1]}; the category axis must be one of "
                    f"theirs (axis is counted in the broadcast shape). Use a negative axis, "
                    f"e.g. axis=-1."
                )
            axis = full_axis - extra - pair_ndim  # the same axis, counted from the end
        a, b, self.axis = broadcast_pair(backend, a, b, names, axis)
        compute_dtype(backend, a.dtype, names[0])
        compute_dtype(backend, b.dtype, names[1])
        self.out_dtype = xp.result_type(a.dtype, b.dtype)
        self.dtype = compute_dtype(backend, self.out_dtype)
        self.tau: Any = None if tau is NO_TAU else check_tau(tau, backend, b, self.dtype, self.axis)
        if self.tau is not None and not isinstance(self.tau, float):
            shape = tuple(b.shape)
            full = np.broadcast_shapes(shape, tuple(self.tau.shape))
            if full != shape:  # tau adds batch dimensions: so does the result
                a, b = xp.broadcast_to(a, full), xp.broadcast_to(b, full)
                if self.axis is not None:
                    self.axis += len(full) - len(shape)
        self.a = a if a.dtype == self.dtype else xp.astype(a, self.dtype)
        self.b = b if b.dtype == self.dtype else xp.astype(b, self.dtype)

    def out(self, r: Array) -> Array:
        return r if r.dtype == self.out_dtype else self.xp.astype(r, self.out_dtype)


def elementwise(
    fn: Callable[..., Array], value: Any, logits: Any, name: str, tau: Any, *static: Any
) -> Array:
    """``fn(backend, *static, value, logits, tau)`` on checked element-wise inputs.

    The steps every relaxed-Bernoulli and gate density shares: broadcast ``value`` and the
    logits (with an array ``tau``), refuse NaN in either, compute in one compiled function
    (``static``: its hashable options) and return in the inputs' result dtype.
    """
    d = _Pair(value, logits, (name, "logits"), None, tau)
    backend = d.backend
    check_no_nan(backend, d.b, "logits")
    check_no_nan(backend, d.a, name)
    with backend.errstate():
        r = backend.compiled(fn, tuple(range(len(static) + 1)))(backend, *static, d.a, d.b, d.tau)
    return d.out(r)


# -- log-space sample and the exact densities ------------------------------------------


def log_gumbel_softmax(
    logits: Array,
    /,
    tau: float | Array = 1.0,
    *,
    axis: int = -1,
    rng: Any = None,
    noise: Array | None = None,
) -> Array:
    r"""Draw the logarithm of a Gumbel-softmax sample (an ExpConcrete sample).

    Computes :math:`\log y = z - \log \sum_j e^{z_j}` with
    :math:`z = (\ell + g - \max_j(\ell_j + g_j)) / \tau`, which is the logarithm of
    :func:`gumbel_softmax`'s sample :math:`y = \mathrm{softmax}((\ell + g)/\tau)`, computed
    without forming :math:`y`. At low temperature :math:`y` underflows to exact zeros (and
    :math:`\log y` to ``-inf``) for all but the winning category; :math:`\log y` does not:
    with ``tau=1e-4`` and thousands of categories every entry stays finite. Use it with
    :func:`exp_concrete_log_prob` for densities at low temperature, and exponentiate only
    where the sample itself is needed.

    Parameters
    ----------
    logits : array
        Unnormalised log-probabilities, real floating, categories along ``axis``. ``-inf``
        marks a masked category (its ``log y`` is ``-inf``, i.e. ``y = 0``). No NaN or
        ``+inf``, and at least one unmasked category per row.
    tau : float or array, default 1.0
        Temperature > 0, as in :func:`gumbel_softmax` (an array needs size 1 on ``axis``
        and may add batch dimensions).
    axis : int, default -1
        The category axis.
    rng : None, int, or generator, optional
        Source of randomness, exactly as in :func:`gumbel_softmax` (JAX needs a key).
    noise : array, optional
        Explicit standard-Gumbel noise of the logits' shape (see :func:`gumbel_noise`);
        it overrides ``rng``. Given the same noise, the result is the logarithm of
        ``gumbel_softmax(logits, tau, noise=noise)``.

    Returns
    -------
    array
        :math:`\log y`, with the type, shape, dtype and device of ``logits``:
        ``logsumexp(log_y, axis) == 0``. Entries are finite wherever the exact value is
        representable; masked categories (and values below the dtype's range, e.g.
        ``-1e30 / 1e-12`` in float32) are ``-inf``.

    Raises
    ------
    TypeError, ValueError
        As :func:`gumbel_softmax`.

    See Also
    --------
    gumbel_softmax : the sample itself, ``exp(log_gumbel_softmax(...))``.
    exp_concrete_log_prob : the density of this sample.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.zeros((1, 5000))
    >>> y = relaxcat.gumbel_softmax(logits, tau=1e-4, rng=0)
    >>> int((y == 0).sum())  # underflows to exact zeros
    4999
    >>> log_y = relaxcat.log_gumbel_softmax(logits, tau=1e-4, rng=0)
    >>> bool(np.isfinite(log_y).all()), bool(np.allclose(np.exp(log_y), y))
    (True, True)

    """
    p = Prepared(logits, tau, axis)
    backend = p.backend
    s = p.x + p.noise(rng, noise)
    _check_sample_rows(p, s, p.axis, noise is not None)
    with backend.errstate():
        log_y = backend.compiled(_log_sample, (0, 1))(backend, p.axis, s, p.tau)
    return p.out(log_y)


def _log_sample(backend: Backend, axis: int, s: Array, tau: Any) -> Array:
    xp = backend.xp
    m = backend.stop_gradient(xp.max(s, axis=axis, keepdims=True))
    z = divide_by_tau(xp, s - m, tau)
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))


def _rows_finite(backend: Backend, axis: int, s: Array) -> Array:
    xp = backend.xp
    return xp.all(xp.isfinite(xp.max(s, axis=axis)))


def _check_sample_rows(p: Prepared, s: Array, axis: int, noise_given: bool) -> None:
    """``logits + noise`` must have a finite maximum in every row (where readable)."""
    backend = p.backend
    if backend.values_readable(s) and not bool(
        backend.compiled(_rows_finite, (0, 1))(backend, axis, s)
    ):
        p.check_rows(p.xp.max(s, axis=axis, keepdims=True), noise_given)  # says what is wrong


def concrete_log_prob(y: Array, logits: Array, tau: float | Array, *, axis: int = -1) -> Array:
    r"""Log-density of the Concrete (Gumbel-softmax) distribution at a point of the simplex.

    With :math:`\tilde\ell = \mathrm{log\_softmax}(\ell)` over the :math:`n` categories,

    .. math::

        \log p(y) = \log\Gamma(n) + (n-1)\log\tau
            + \sum_k \bigl(\tilde\ell_k - (\tau+1)\log y_k\bigr)
            - n \log\sum_k e^{\tilde\ell_k - \tau \log y_k},

    the density of :func:`gumbel_softmax`'s sample with respect to Lebesgue measure on the
    first :math:`n-1` coordinates. Masked categories (``-inf`` logits) are not part of the
    distribution: :math:`n` counts the unmasked ones, and ``y`` must be 0 on the others.

    At low temperature prefer :func:`log_gumbel_softmax` with :func:`exp_concrete_log_prob`:
    a sample whose entries underflow to 0 sits on the boundary of the simplex, where this
    density is 0 or infinite.

    Parameters
    ----------
    y : array
        Points of the simplex (entries in [0, 1] summing to 1 along ``axis``). Where values
        can be read, a row whose sum differs from 1 by more than ``8 n eps + 2**-8``
        (``n`` categories, ``eps`` of ``y``'s dtype; the ``2**-8`` admits points rounded to
        half precision and cast up) raises ``ValueError``; a sample of
        :func:`gumbel_softmax` always passes. Broadcasts against ``logits``, e.g. samples
        of shape ``(S, B, n)`` with logits ``(B, n)``.
    logits : array
        Unnormalised log-probabilities, as in :func:`gumbel_softmax`, same library and
        number of categories as ``y``.
    tau : float or array
        Temperature > 0, in the range :func:`gumbel_softmax` accepts: a number, or an array
        broadcasting against the broadcast of ``y`` and ``logits`` with size 1 on ``axis``;
        it may add batch dimensions (the result then has the broadcast shape of all three,
        and a non-negative ``axis`` is counted in it).
    axis : int, default -1
        The category axis (an axis of the broadcast shape).

    Returns
    -------
    array
        The log-density, of the broadcast shape without ``axis``, in the result dtype of
        ``y`` and ``logits``. Never NaN for valid input:

        * on the boundary (``m`` unmasked entries of ``y`` exactly 0, the rest positive)
          it is the limit as those entries go to 0 together: ``+inf`` if
          ``m > (n - m) * tau``, ``-inf`` if ``m < (n - m) * tau``, and the finite limit
          when they are equal (``n = 2``, ``tau = 1``: the density is bounded);
        * ``-inf`` outside the support: an entry < 0 or > 1, or mass on a masked category.

    Raises
    ------
    TypeError
        For non-floating input, or ``y`` and ``logits`` from different libraries.
    ValueError
        For shapes that do not broadcast, different numbers of categories, a bad ``tau``,
        and (where values can be read) NaN in ``y``, a row of ``y`` that does not sum to 1
        (the message names it), or logits with NaN, ``+inf`` or an entirely masked row.

    See Also
    --------
    exp_concrete_log_prob : the density of ``log y``; stable at any temperature.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.log(np.array([0.2, 0.3, 0.5]))
    >>> y = relaxcat.gumbel_softmax(logits, tau=0.5, rng=0)
    >>> lp = relaxcat.concrete_log_prob(y, logits, 0.5)
    >>> lpe = relaxcat.exp_concrete_log_prob(np.log(y), logits, 0.5)
    >>> bool(np.isclose(lp, lpe - np.log(y).sum()))
    True

    On the boundary the density is infinite or zero, never NaN:

    >>> float(relaxcat.concrete_log_prob(np.array([1.0, 0.0, 0.0]), logits, 0.5))
    inf

    """
    return _concrete_density(_concrete_log_prob, y, "y", logits, tau, axis, simplex=True)


def _concrete_log_prob(backend: Backend, ax: int, y: Array, x: Array, tau: Any) -> Array:
    xp = backend.xp
    n = x.shape[ax]
    masked = x == -INF
    unmasked = xp.logical_not(masked)
    la = xp.where(unmasked, _log_softmax(backend, x, ax), 0.0)
    zero = unmasked & (y == 0)
    outside = (y < 0) | (y > 1) | (masked & (y != 0))
    ok = unmasked & (y > 0) & (y <= 1)
    ly = xp.log(xp.where(ok, y, 1.0))  # 0 where y is 0, masked or invalid
    n_eff = n - xp.sum(xp.astype(masked, y.dtype), axis=ax, keepdims=True)
    n_zero = xp.sum(xp.astype(zero, y.dtype), axis=ax, keepdims=True)
    on_boundary = n_zero > 0
    s1 = xp.sum(xp.where(unmasked, la - (tau + 1.0) * ly, 0.0), axis=ax, keepdims=True)
    # Interior: logsumexp of la - tau*log y. Boundary: the entries at 0 dominate that
    # logsumexp; what is left after the divergent parts cancel is logsumexp of their la.
    b = xp.where(xp.where(on_boundary, zero, unmasked), la - tau * ly, -INF)
    core = (
        _log_gamma_of_count(xp, masked, n, ax, y.dtype)
        + (n_eff - 1.0) * _log(xp, tau)
        + s1
        - n_eff * _logsumexp(backend, b, ax)
    )
    rate = n_zero - (n_eff - n_zero) * tau  # log p ~ rate * (-log y_0) near the boundary
    r = xp.where(on_boundary & (rate > 0), INF, xp.where(on_boundary & (rate < 0), -INF, core))
    r = xp.where(xp.any(outside, axis=ax, keepdims=True), -INF, r)
    r = xp.where(xp.any(xp.isnan(y), axis=ax, keepdims=True), math.nan, r)
    return xp.squeeze(r, axis=ax)


def exp_concrete_log_prob(
    log_y: Array, logits: Array, tau: float | Array, *, axis: int = -1
) -> Array:
    r"""Log-density of the ExpConcrete distribution: the law of ``log`` of a Concrete sample.

    With :math:`x = \log y` and :math:`\tilde\ell = \mathrm{log\_softmax}(\ell)`,

    .. math::

        \log p(x) = \log\Gamma(n) + (n-1)\log\tau
            + \sum_k \mathrm{log\_softmax}(\tilde\ell - \tau x)_k ,

    so that :math:`\log p_{\mathrm{Concrete}}(y) = \log p(\log y) - \sum_k \log y_k`. Every
    term is a log-softmax of finite numbers, so the result is finite wherever ``log_y`` is:
    this is the density to use at low temperature, and for the KL term of a relaxed
    variational objective (evaluate prior and posterior on the same ``log_y``), where the
    Concrete density of an underflowed sample would be NaN or infinite. Masked categories
    are handled as in :func:`concrete_log_prob` (``log_y`` must be ``-inf`` there).

    Parameters
    ----------
    log_y : array
        Log-points of the simplex (``logsumexp(log_y, axis) == 0``; not checked), e.g. from
        :func:`log_gumbel_softmax`. Broadcasts against ``logits``.
    logits : array
        Unnormalised log-probabilities, same library and number of categories.
    tau : float or array
        Temperature > 0: a number or an array with size 1 on ``axis``, as in
        :func:`concrete_log_prob` (it may add batch dimensions).
    axis : int, default -1
        The category axis (an axis of the broadcast shape).

    Returns
    -------
    array
        The log-density, of the broadcast shape without ``axis``. Finite where ``log_y``
        is finite; ``-inf`` where an unmasked entry of ``log_y`` is ``-inf`` (the density
        tends to 0 there), where an entry is > 0, or where a masked category has a finite
        ``log_y``.

    Raises
    ------
    TypeError, ValueError
        As :func:`concrete_log_prob` (NaN in ``log_y`` where values can be read).

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.zeros(2000)
    >>> log_y = relaxcat.log_gumbel_softmax(logits, tau=1e-3, rng=0)
    >>> y = np.exp(log_y)
    >>> float(relaxcat.concrete_log_prob(y, logits, 1e-3))  # y underflowed: boundary
    inf
    >>> bool(np.isfinite(relaxcat.exp_concrete_log_prob(log_y, logits, 1e-3)))
    True

    """
    return _concrete_density(_exp_concrete_log_prob, log_y, "log_y", logits, tau, axis)


def _concrete_density(
    kernel: Any, point: Any, name: str, logits: Any, tau: Any, axis: int, simplex: bool = False
) -> Array:
    """Check ``point`` (``y`` or ``log_y``) and ``logits``, then evaluate ``kernel`` on them.

    ``simplex``: ``point`` is ``y``, whose rows must sum to 1.
    """
    d = _Pair(point, logits, (name, "logits"), axis, tau)
    backend, ax = d.backend, _axis(d)
    check_logits_rows(backend, d.b, ax)
    check_no_nan(backend, d.a, name)
    if simplex:
        own_axis = ax - (d.a.ndim - point.ndim)  # checked on y itself, to name its row
        if own_axis >= 0:
            check_simplex(backend, point, own_axis, d.dtype, name)
        else:
            check_simplex(backend, d.a, ax, d.dtype, name)
    with backend.errstate():
        r = backend.compiled(kernel, (0, 1))(backend, ax, d.a, d.b, d.tau)
    return d.out(r)


def _exp_concrete_log_prob(backend: Backend, ax: int, lv: Array, x: Array, tau: Any) -> Array:
    xp = backend.xp
    n = x.shape[ax]
    masked = x == -INF
    unmasked = xp.logical_not(masked)
    la = xp.where(unmasked, _log_softmax(backend, x, ax), 0.0)
    lost = lv == -INF
    bad = (unmasked & lost) | (masked & xp.logical_not(lost)) | (lv > 0)
    ok = unmasked & xp.logical_not(lost) & (lv <= 0)
    a = xp.where(unmasked, la - tau * xp.where(ok, lv, 0.0), -INF)
    n_eff = n - xp.sum(xp.astype(masked, lv.dtype), axis=ax, keepdims=True)
    core = (
        _log_gamma_of_count(xp, masked, n, ax, lv.dtype)
        + (n_eff - 1.0) * _log(xp, tau)
        + xp.sum(xp.where(unmasked, a, 0.0), axis=ax, keepdims=True)
        - n_eff * _logsumexp(backend, a, ax)
    )
    r = xp.where(xp.any(bad, axis=ax, keepdims=True), -INF, core)
    r = xp.where(xp.any(xp.isnan(lv), axis=ax, keepdims=True), math.nan, r)
    return xp.squeeze(r, axis=ax)


def _axis(d: _Pair) -> int:
    assert d.axis is not None  # a category axis was given
    return d.axis


# -- relaxed Bernoulli ------------------------------------------------------------------


def relaxed_bernoulli(
    logits: Array,
    /,
    tau: float | Array = 1.0,
    *,
    hard: bool = False,
    rng: Any = None,
    noise: Array | None = None,
) -> Array:
    r"""Draw a relaxed Bernoulli (binary Concrete) sample, soft or straight-through 0/1.

    Computes :math:`y = \sigma((\ell + L)/\tau)` element-wise, where :math:`\sigma` is the
    logistic sigmoid and :math:`L` standard logistic noise (the difference of two
    independent standard Gumbels). As :math:`\tau \to 0`, :math:`y` tends to the exact
    Bernoulli sample :math:`1[\ell + L > 0] \sim \mathrm{Bernoulli}(\sigma(\ell))`. It is the
    two-category :func:`gumbel_softmax`: :math:`y` is the first entry of a Gumbel-softmax
    sample with logits :math:`(\ell, 0)`.

    Parameters
    ----------
    logits : array
        Log-odds, real floating, any shape (0-d included). ``+inf`` and ``-inf`` are
        allowed (probability 1 or 0: the sample is exactly 1 or 0); NaN is not.
    tau : float or array, default 1.0
        Temperature > 0 (range as in :func:`gumbel_softmax`): a number or an array that
        broadcasts against ``logits``; the sample has the broadcast shape.
    hard : bool, default False
        If True, return exactly 0.0 or 1.0 (``1[logits + L > 0]``) with the gradient of the
        soft sample (straight-through).
    rng : None, int, or generator, optional
        Source of randomness, as in :func:`gumbel_softmax`. The noise is drawn as two
        standard-Gumbel arrays ``g`` of shape ``(2, *logits.shape)`` in one draw, and
        ``L = g[0] - g[1]``; it is bounded (about ±176 in float32), so never infinite.
    noise : array, optional
        Explicit standard *logistic* noise of the logits' shape (not Gumbel noise). It
        overrides ``rng``. ``relaxed_bernoulli(x, rng=s)`` equals
        ``relaxed_bernoulli(x, noise=g[0] - g[1])`` with
        ``g = gumbel_noise(x, shape=(2, *x.shape), rng=s)`` (float32 and float64 logits).

    Returns
    -------
    array
        The sample, in [0, 1], with the type, shape, dtype and device of ``logits``.

    Raises
    ------
    TypeError, ValueError
        As :func:`gumbel_softmax`; NaN logits raise where values can be read.

    See Also
    --------
    relaxed_bernoulli_log_prob : its density.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.array([-1.0, 0.0, 2.0])
    >>> y = relaxcat.relaxed_bernoulli(logits, tau=0.5, rng=0)
    >>> bool(((y > 0) & (y < 1)).all())
    True
    >>> relaxcat.relaxed_bernoulli(logits, tau=0.5, hard=True, rng=0)
    array([0., 0., 1.])
    >>> many = relaxcat.relaxed_bernoulli(np.zeros(100_000), hard=True, rng=1)
    >>> round(float(many.mean()), 2)  # sigmoid(0)
    0.5

    """
    p = Prepared(logits, tau, None, elementwise=True)
    backend = p.backend
    check_no_nan(backend, p.x, "logits")
    logistic = p.logistic_noise(rng, noise)
    soft_needed = not hard or p.gradient_needed()
    with backend.errstate():
        y = backend.compiled(_relaxed_bernoulli, (0, 1, 2))(
            backend, hard, soft_needed, p.x + logistic, p.tau
        )
    return p.out(y)


def _relaxed_bernoulli(
    backend: Backend, hard: bool, soft_needed: bool, s: Array, tau: Any
) -> Array:
    xp = backend.xp
    hot = xp.astype(s > 0, s.dtype)
    if not soft_needed:
        return hot
    y = _sigmoid(xp, divide_by_tau(xp, s, tau))
    return straight_through(backend, hot, y) if hard else y


def relaxed_bernoulli_log_prob(y: Array, logits: Array, tau: float | Array) -> Array:
    r"""Log-density of the relaxed Bernoulli (binary Concrete) distribution on (0, 1).

    With :math:`z = \mathrm{logit}(y)` and :math:`u = \ell - \tau z`,

    .. math::

        \log p(y) = \log\tau - \mathrm{softplus}(u) - \mathrm{softplus}(-u)
            - \log y - \log(1 - y),

    the density of :func:`relaxed_bernoulli`'s sample (the first two terms are the density
    of :math:`z`, a logistic variable with location :math:`\ell/\tau` and scale
    :math:`1/\tau`; the last two the Jacobian). Its CDF is
    :math:`\sigma(\tau\,\mathrm{logit}(y) - \ell)`.

    Parameters
    ----------
    y : array
        Points in [0, 1]; broadcasts against ``logits``.
    logits : array
        Log-odds (same library); ``±inf`` are point masses at 1 and 0.
    tau : float or array
        Temperature > 0: a number or an array that broadcasts against the broadcast of
        ``y`` and ``logits`` (the result has the broadcast shape of all three).

    Returns
    -------
    array
        The log-density, of the broadcast shape. Never NaN for valid input. At ``y = 0``
        or ``y = 1`` it is the limit: ``+inf`` for ``tau < 1``, ``-inf`` for ``tau > 1``,
        and ``-logits`` (at 0) or ``logits`` (at 1) for ``tau == 1``. Outside [0, 1] it is
        ``-inf``. For infinite logits it is ``+inf`` at the point mass and ``-inf``
        elsewhere.

    Raises
    ------
    TypeError, ValueError
        For mixed libraries, non-floating input, shapes that do not broadcast, a bad
        ``tau``, or (where values can be read) NaN in ``y`` or ``logits``.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> y = np.array([0.1, 0.5, 0.9])
    >>> np.round(relaxcat.relaxed_bernoulli_log_prob(y, np.zeros(3), 1.0), 6)  # uniform
    array([0., 0., 0.])
    >>> relaxcat.relaxed_bernoulli_log_prob(np.array([0.0, 1.0]), np.array([1.5]), 2.0)
    array([-inf, -inf])

    """
    return elementwise(_relaxed_bernoulli_log_prob, y, logits, "y", tau)


def _relaxed_bernoulli_log_prob(backend: Backend, y: Array, x: Array, tau: Any) -> Array:
    xp = backend.xp
    t = xp.zeros_like(y) + tau  # tau on the full shape, for the boundary cases
    interior = (y > 0) & (y < 1)
    finite = xp.isfinite(x)
    ys = xp.where(interior, y, 0.5)
    xs = xp.where(finite, x, 0.0)
    log_y, log_1my = xp.log(ys), xp.log1p(-ys)
    u = xs - t * (log_y - log_1my)
    neg_abs_u = xp.where(u >= 0, -u, u)
    log_pz = _log(xp, tau) + neg_abs_u - 2.0 * xp.log1p(xp.exp(neg_abs_u))
    core = log_pz - log_y - log_1my
    # Near y = 0 (1) the density behaves like y**(tau - 1) ((1 - y)**(tau - 1)).
    at0, at1 = y == 0, y == 1
    edge = xp.where(t < 1, INF, xp.where(t > 1, -INF, xp.where(at0, -xs, xs)))
    r = xp.where(interior, core, xp.where(at0 | at1, edge, -INF))
    point_mass = xp.where(x > 0, at1, at0)  # where logits are +-inf
    r = xp.where(finite, r, xp.where(point_mass, INF, -INF * xp.ones_like(r)))
    return xp.where(xp.isnan(y), math.nan, r)


# -- exact sampling: categories and k-subsets ------------------------------------------


def sample_categorical(logits: Array, /, *, axis: int = -1, rng: Any = None) -> Array:
    r"""Draw exact categorical samples by the Gumbel-max trick.

    Returns :math:`\arg\max_i (\ell_i + g_i)` along ``axis``, an exact sample from
    :math:`\mathrm{Categorical}(\mathrm{softmax}(\ell))`. With the same ``rng`` it is the
    index of the one in ``gumbel_softmax(logits, hard=True, rng=rng)``: both draw the same
    noise.

    Parameters
    ----------
    logits : array
        Unnormalised log-probabilities, categories along ``axis``; ``-inf`` masks a
        category (never drawn).
    axis : int, default -1
        The category axis.
    rng : None, int, or generator, optional
        Source of randomness, as in :func:`gumbel_softmax`.

    Returns
    -------
    array
        Integer indices (the library's default index dtype) of shape ``logits.shape``
        without ``axis``, on the logits' device.

    Raises
    ------
    TypeError, ValueError
        As :func:`gumbel_softmax`.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.log(np.array([0.1, 0.6, 0.3]))
    >>> draws = relaxcat.sample_categorical(np.broadcast_to(logits, (100_000, 3)), rng=0)
    >>> draws.shape
    (100000,)
    >>> np.round(np.bincount(draws) / draws.size, 2)
    array([0.1, 0.6, 0.3])

    """
    p = Prepared(logits, NO_TAU, axis)
    s = p.x + p.noise(rng, None)
    _check_sample_rows(p, s, p.axis, False)
    return p.xp.argmax(s, axis=p.axis)


def gumbel_topk(logits: Array, k: int, /, *, axis: int = -1, rng: Any = None) -> Array:
    r"""Draw ``k`` distinct categories without replacement, in order (Gumbel top-k).

    Returns the indices of the ``k`` largest :math:`\ell_i + g_i` along ``axis``, largest
    first. This is an exact ordered sample without replacement: the first index is drawn
    from :math:`\mathrm{softmax}(\ell)`, each next one from the same distribution restricted
    to the categories not yet drawn (Kool et al., 2019). So the ordered pair
    :math:`(i, j)` has probability :math:`p_i p_j / (1 - p_i)`.

    Parameters
    ----------
    logits : array
        Unnormalised log-probabilities, categories along ``axis``; ``-inf`` masks a
        category. Every row needs at least ``k`` unmasked categories (checked where
        values can be read; elsewhere masked categories fill the last places, in index
        order).
    k : int
        Number of categories, ``1 <= k <= n``.
    axis : int, default -1
        The category axis.
    rng : None, int, or generator, optional
        Source of randomness, as in :func:`gumbel_softmax`.

    Returns
    -------
    array
        Integer indices of shape ``(*batch, k)``: the logits' shape without ``axis``,
        followed by ``k`` (the ``k`` axis is always last, whatever ``axis`` is), ordered by
        decreasing perturbed logit. Exact ties go to the smaller index.

    Raises
    ------
    TypeError
        For a non-integer ``k``, and as :func:`gumbel_softmax`.
    ValueError
        For ``k`` outside ``1..n``; a row with fewer than ``k`` unmasked categories
        (where values can be read); and as :func:`gumbel_softmax`.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    >>> idx = relaxcat.gumbel_topk(logits, 2, rng=0)
    >>> idx.shape, len(set(idx[0].tolist()))
    ((1, 2), 2)
    >>> relaxcat.gumbel_topk(np.zeros((3, 5)), 2, axis=0, rng=0).shape  # k axis last
    (5, 2)

    """
    p = Prepared(logits, NO_TAU, axis)
    k = check_k(k, logits.shape[p.axis], p.axis)
    s = p.x + p.noise(rng, None)
    _check_sample_rows(p, s, p.axis, False)
    check_enough_unmasked(p.backend, p.x, k, p.axis)
    return p.backend.compiled(_gumbel_topk, (0, 1, 2))(p.backend, p.axis, k, s)


def _gumbel_topk(backend: Backend, axis: int, k: int, s: Array) -> Array:
    xp = backend.xp
    return xp.moveaxis(_first_along(_descending_order(xp, s, axis), k, axis), axis, -1)


def relaxed_topk(
    logits: Array,
    k: int,
    /,
    tau: float | Array = 1.0,
    *,
    hard: bool = False,
    axis: int = -1,
    method: str = "successive",
    rng: Any = None,
    noise: Array | None = None,
) -> Array:
    r"""Draw a relaxed k-hot vector: a differentiable stand-in for a random k-subset.

    Two relaxations of sampling ``k`` categories without replacement:

    ``method="successive"`` (Xie & Ermon, 2019)
        With :math:`a^1 = \ell + g` (one Gumbel draw), for :math:`j = 1..k`:
        :math:`p^j = \mathrm{softmax}(a^j/\tau)` and
        :math:`a^{j+1} = a^j + \log(1 - p^j)`; the output is :math:`\sum_j p^j`. Each
        round softly removes what the previous one chose. The output sums to ``k`` along
        ``axis`` (up to rounding) and tends to the k-hot of :func:`gumbel_topk` of the same
        noise as :math:`\tau \to 0`. Its entries are >= 0 but not bounded by 1 at moderate
        and high temperatures: with :math:`p^1 = (0.6, 0.2, 0.2)` and :math:`\tau = 1`,
        :math:`p^2 = (0.43, 0.29, 0.29)` and the first entry of the sum is 1.03. The
        winner's :math:`a + \log(1 - p)` is computed from the other entries, anchored at
        the runner-up, so the rounds stay exact at tiny ``tau`` where :math:`1 - p` rounds
        to 0. One limit remains: at an *exact* tie of perturbed logits (only possible with
        explicit ``noise=``), the exact gradient of the later rounds is of order
        :math:`1/\tau^2`; in float32 below ``tau`` ~ 1e-19 it overflows, and the gradient of
        the tied entries is NaN. Use float64 there.

    ``method="max"`` (the m-hot recipe of C. Wu, 2021; as in L2X and Concrete autoencoders)
        ``k`` Gumbel-softmax draws :math:`C_j = \mathrm{softmax}((\ell + g_j)/\tau)`
        combined by the element-wise maximum :math:`\max_j C_j`, where the recipe discards
        a draw whose arg max repeats an earlier one and draws again. relaxcat follows the
        recipe's law exactly, soft values included, with ``k`` draws and no rejection loop:

        1. the category draw :math:`j` picks is drawn from :math:`\mathrm{softmax}(\ell)`
           restricted to the categories not yet chosen and renormalised (the law of an
           accepted arg max): the arg max of :math:`\ell + g_j` over those categories;
        2. the accepted draw's perturbed logits are Gumbel perturbed logits conditioned on
           that arg max, as in Gumbel-Rao: its maximum is
           :math:`\mathrm{Gumbel}(\log\sum_i e^{\ell_i})` and the other entries are Gumbel
           draws truncated below it. They are computed from the same noise :math:`g_j`
           (competing exponentials and memorylessness make this exact), so ``noise[j]``
           decides draw :math:`j` entirely;
        3. :math:`C_j` is their softmax at temperature :math:`\tau`, and the output is
           :math:`\max_j C_j`.

        The first draw is an ordinary Gumbel-softmax draw (``k=1`` is
        :func:`gumbel_softmax` of ``noise[0]``). The chosen categories, in order, have the
        law of :func:`gumbel_topk`, and ``hard=True`` gives the recipe's k-hot. Each draw's
        gradient is that of a Gumbel-softmax draw with its (conditioned) noise held fixed,
        as for the recipe's accepted noise. The work is fixed (``k`` rounds, no
        data-dependent loop, so it runs under ``jax.jit``). The output lies in [0, 1] and
        does not sum to ``k``: a later draw keeps some mass on the categories already
        chosen, as the recipe's accepted draws do.

    Parameters
    ----------
    logits : array
        Unnormalised log-probabilities, categories along ``axis``; ``-inf`` masks a
        category. Every row needs at least ``k`` unmasked categories (checked where values
        can be read; under ``jit`` a row with fewer gives NaN).
    k : int
        Subset size, ``1 <= k <= n``.
    tau : float or array, default 1.0
        Temperature > 0, as in :func:`gumbel_softmax` (an array needs size 1 on ``axis``
        and may add batch dimensions).
    hard : bool, default False
        If True, return an exact k-hot vector (exactly ``k`` ones, the rest exact zeros)
        with the gradient of the soft output (straight-through). ``"successive"``: the
        ``k`` largest :math:`\ell_i + g_i` (the same set :func:`gumbel_topk` returns for
        that noise); ``"max"``: the ``k`` categories the draws picked.
    axis : int, default -1
        The category axis.
    method : {"successive", "max"}, default "successive"
        The relaxation, as above.
    rng : None, int, or generator, optional
        Source of randomness, as in :func:`gumbel_softmax`.
    noise : array, optional
        Explicit standard-Gumbel noise; it overrides ``rng``. Its shape is the logits'
        shape for ``"successive"`` (one draw) and ``(k, *logits.shape)`` for ``"max"``
        (``noise[j]`` is draw ``j``). ``gumbel_noise(logits, shape=..., rng=s)`` makes
        the noise that ``rng=s`` would use (float32 and float64 logits).

    Returns
    -------
    array
        The relaxed (or, with ``hard=True``, exact) k-hot vector, with the type, shape,
        dtype and device of ``logits``.

    Raises
    ------
    TypeError
        For a non-integer ``k``, and as :func:`gumbel_softmax`.
    ValueError
        For ``k`` outside ``1..n``, an unknown ``method``, noise of the wrong shape, a row
        with fewer than ``k`` unmasked categories (where values can be read), and as
        :func:`gumbel_softmax`.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    >>> y = relaxcat.relaxed_topk(logits, 2, tau=0.5, rng=0)
    >>> round(float(y.sum()), 6)
    2.0
    >>> relaxcat.relaxed_topk(logits, 2, tau=0.5, hard=True, rng=0).sum(axis=-1)
    array([2.])
    >>> m = relaxcat.relaxed_topk(logits, 2, tau=0.5, method="max", rng=0)
    >>> bool(((m >= 0) & (m <= 1)).all())
    True

    """
    p = Prepared(logits, tau, axis)
    backend, ax = p.backend, p.axis
    k = check_k(k, p.logits.shape[ax], ax)
    method = check_method(method, TOPK_METHODS)
    soft_needed = not hard or p.gradient_needed()
    if method == "successive":
        s = p.x + p.noise(rng, noise)
        _check_sample_rows(p, s, ax, noise is not None)
    else:
        g = p.noise(rng, noise, (k, *tuple(p.logits.shape)))  # g[j] is draw j
        _check_sample_rows(p, p.x + g, ax + 1, noise is not None)
    check_enough_unmasked(backend, p.x, k, ax)
    with backend.errstate():
        if method == "successive":
            y = backend.compiled(_successive_topk, (0, 1, 2, 3, 4))(
                backend, ax, k, hard, soft_needed, s, p.tau
            )
        else:
            y = backend.compiled(_recipe_max, (0, 1, 2, 3, 4))(
                backend, ax, k, hard, soft_needed, p.x, g, p.tau
            )
    return p.out(y)


def _successive_topk(
    backend: Backend, axis: int, k: int, hard: bool, soft_needed: bool, s: Array, tau: Any
) -> Array:
    """Xie & Ermon's relaxed top-k, with ``a + log(1 - p)`` computed without cancellation.

    ``z = (a - max a) / tau`` is clipped below at ``-max/2`` of the dtype (its ``exp`` is 0
    all the same) so that ``-inf`` never meets ``-inf``, not even in the backward pass.

    For the row's winner (``a = m``), ``p`` may round to 1. With ``c`` the runner-up's value,
    ``a + log(1 - p) = c + (a - m) + (c - m) (1/tau - 1) + log(sum_{j != top}
    exp((a_j - c)/tau)) - log(sum_j exp((a_j - m)/tau))``, an identity for any constants
    ``c`` and ``m`` (so they carry no gradient). It is anchored at ``c``: no cancellation
    of large terms, and for ``tau < 1`` the winner drops below the runner-up however large
    the gap (to ``-inf`` when ``(m - c)/tau`` overflows, which eliminates it exactly).
    Elsewhere ``p <= 1/2``, and ``log1p(-p)`` is accurate.
    """
    xp = backend.xp
    hot = _k_hot(xp, s, k, axis, s.dtype) if hard else None
    if hot is not None and not soft_needed:
        return hot
    big = float(xp.finfo(s.dtype).max)
    device = backend.device(s)
    a = s
    total = None
    for j in range(k):
        m = backend.stop_gradient(xp.max(a, axis=axis, keepdims=True))
        z = xp.clip(divide_by_tau(xp, a - m, tau), min=-big / 2)
        e = xp.exp(z)
        norm = xp.sum(e, axis=axis, keepdims=True)
        prob = e / norm
        total = prob if total is None else total + prob
        if j + 1 == k:
            break
        top = one_hot_argmax(backend, a, axis, xp.bool, device)
        c = backend.stop_gradient(xp.max(xp.where(top, -INF, a), axis=axis, keepdims=True))
        rest = xp.where(top, -INF, xp.clip(divide_by_tau(xp, a - c, tau), min=-big / 2))
        log_rest = xp.log(xp.sum(xp.exp(rest), axis=axis, keepdims=True))
        gap = xp.clip(c - m, min=-big / 4)  # only logit spreads beyond the range clip
        winner = c + (a - m) + gap * (1.0 / tau - 1.0) + log_rest - xp.log(norm)
        a = xp.where(top, winner, a + xp.log1p(-xp.where(top, 0.0, prob)))
    assert total is not None
    return total if hot is None else straight_through(backend, hot, total)


def _recipe_max(
    backend: Backend,
    axis: int,
    k: int,
    hard: bool,
    soft_needed: bool,
    x: Array,
    g: Array,
    tau: Any,
) -> Array:
    """The seed's m-hot, exactly: the maximum of ``k`` draws with distinct arg maxes.

    ``g[j]`` is draw ``j``'s standard Gumbel noise; the category axis of ``g[j]`` is
    ``axis``. With ``G = x + g[j]`` (no gradient) and ``U`` the categories not yet chosen,
    the pick ``D = argmax_U G`` is the recipe's accepted arg max (a draw from ``softmax(x)``
    restricted to ``U``). The accepted draw's perturbed logits ``X`` are Gumbel perturbed
    logits conditioned on ``argmax X = D``; they are built from the same noise, which
    competing exponentials make exact. With ``E_i = exp(-g_i)`` and ``T = exp(-G_D)``:
    ``Z_U T`` is Exp(1) and independent of ``D``; for ``i`` in ``U``, ``E_i - T exp(x_i)``
    are fresh Exp(1) (memorylessness); for chosen ``i`` the ``E_i`` were never looked at.
    Feeding these to Gumbel-Rao's conditional draw (``_estimators.conditional_gumbel``)::

        X_D = G_D + log Z - log Z_U
        X_i = -logaddexp(-G_i + log(-expm1(G_i - G_D)), -X_D)   (i in U, i != D)
        X_i = -logaddexp(-G_i, -X_D)                             (i chosen before)

    Draw 0 has nothing to condition on: ``X = G``. The soft draw is
    ``softmax((X + x - stop_gradient(x)) / tau)``: the value of ``X``, the gradient of a
    Gumbel-softmax draw with the noise ``X - x`` held fixed, as for the recipe's accepted
    noise.
    """
    xp = backend.xp
    device = backend.device(x)
    xs = backend.stop_gradient(x)
    masked = xs == -INF
    # Zero where masked, so that the gradient there is 0 rather than NaN.
    x_live = xp.where(masked, 0.0, x)
    tangent = x_live - backend.stop_gradient(x_live)  # exactly 0; derivative 1
    log_z = _logsumexp(backend, xs, axis)
    chosen = None
    best = None
    for j in range(k):
        gj = backend.stop_gradient(g[j, ...])
        big_g = xs + gj
        draw = big_g if chosen is None else xp.where(chosen, -INF, big_g)
        pick = one_hot_argmax(backend, draw, axis, xp.bool, device)
        if soft_needed:
            if chosen is None:
                z = x + g[j, ...]  # the plain draw: exactly gumbel_softmax's
            else:
                r = _conditioned(backend, axis, xs, gj, masked, chosen, pick, log_z)
                z = xp.where(masked, -INF, r + tangent)
            m = backend.stop_gradient(xp.max(z, axis=axis, keepdims=True))
            soft = scaled_softmax(xp, z, m, tau, axis)
            best = soft if best is None else xp.maximum(best, soft)
        chosen = pick if chosen is None else chosen | pick
    assert chosen is not None
    hot = xp.astype(chosen, x.dtype)
    if best is None:
        return hot
    return straight_through(backend, hot, best) if hard else best


def _conditioned(
    backend: Backend,
    axis: int,
    xs: Array,
    g: Array,
    masked: Array,
    chosen: Array,
    pick: Array,
    log_z: Array,
) -> Array:
    """``X - X_D``: perturbed logits conditioned on ``argmax X = pick``, less their maximum.

    See :func:`_recipe_max`. Written relative to the pick, from differences of logits and
    of noise taken apart, so that an O(1) gap survives logits of order 1e30 in float32
    (``x + g`` would round ``g`` away). With ``c = log Z - log Z_U >= 0`` and
    ``e_i = (x_D - x_i) + (g_D - g_i) >= 0`` (``G_D - G_i``)::

        X_i - X_D = -softplus(log(-expm1(-e_i)) + e_i + c)   (i in U, i != D)
        X_i - X_D = -softplus(e_i + c)                        (i chosen before)

    Masked categories are left to the caller (their value here is finite and meaningless).
    """
    xp = backend.xp
    x0 = xp.where(masked, 0.0, xs)
    x_top = xp.sum(xp.where(pick, x0, 0.0), axis=axis, keepdims=True)
    g_top = xp.sum(xp.where(pick, g, 0.0), axis=axis, keepdims=True)
    c = log_z - _logsumexp(backend, xp.where(chosen, -INF, xs), axis)
    dx, dg = x_top - x0, g_top - g
    e = xp.clip(dx + dg, min=0.0)  # >= 0 on U by the arg max; rounding could say -eps
    d = (dx + c) + dg  # e + c, without losing dg to a large dx or c
    rest = xp.logical_not(chosen | pick | masked)
    # log of the share of E_i left above the threshold (0 for chosen categories). An
    # exact tie with the pick (only with explicit noise) has share 0: floored at tiny.
    tiny = float(xp.finfo(xs.dtype).smallest_normal)
    left = xp.clip(-xp.expm1(-xp.where(rest, e, 1.0)), min=tiny)
    share = xp.where(rest, xp.log(left), 0.0)
    r = -xp.logaddexp(share + d, xp.zeros_like(d))
    return xp.where(pick, 0.0, r)


# -- divergence -------------------------------------------------------------------------


def categorical_kl(logits_q: Array, logits_p: Array, *, axis: int = -1) -> Array:
    r"""KL divergence :math:`\mathrm{KL}(q \,\|\, p)` between two categorical distributions.

    .. math::

        \mathrm{KL}(q \,\|\, p) = \sum_k q_k (\log q_k - \log p_k),
        \quad q = \mathrm{softmax}(\ell^q),\ p = \mathrm{softmax}(\ell^p),

    computed from log-softmaxes, as used for the KL term of a Gumbel-softmax VAE (with
    ``logits_p`` the prior, e.g. zeros for a uniform prior).

    Parameters
    ----------
    logits_q, logits_p : array
        Unnormalised log-probabilities of one library; they broadcast against each other
        and have the same number of categories along ``axis``. ``-inf`` masks a category.

    axis : int, default -1
        The category axis (an axis of the broadcast shape).

    Returns
    -------
    array
        The divergence, of the broadcast shape without ``axis``, in the result dtype.
        Finite where probabilities underflow (a term whose :math:`q_k` underflows adds 0).
        A category masked in ``q`` adds 0 whatever ``p`` is; one with :math:`q_k > 0`
        (finite ``logits_q``) that is masked in ``p`` makes the divergence ``+inf``.
        Rounding can leave a result of order ``-eps`` where ``q`` equals ``p``.

    Raises
    ------
    TypeError, ValueError
        For mixed libraries, non-floating input, shapes that do not broadcast, and (where
        values can be read) logits with NaN, ``+inf`` or an entirely masked row.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> q = np.array([0.0, 0.0, -np.inf])  # (1/2, 1/2, 0)
    >>> round(float(relaxcat.categorical_kl(q, np.zeros(3))), 6)  # log(3) - log(2)
    0.405465
    >>> float(relaxcat.categorical_kl(np.zeros(3), q))
    inf

    """
    d = _Pair(logits_q, logits_p, ("logits_q", "logits_p"), axis, NO_TAU)
    backend, ax = d.backend, _axis(d)
    check_logits_rows(backend, d.a, ax, "logits_q")
    check_logits_rows(backend, d.b, ax, "logits_p")
    with backend.errstate():
        kl = backend.compiled(_categorical_kl, (0, 1))(backend, ax, d.a, d.b)
    return d.out(kl)


def _categorical_kl(backend: Backend, ax: int, lq_in: Array, lp_in: Array) -> Array:
    xp = backend.xp
    q_on, p_on = lq_in != -INF, lp_in != -INF
    lq = xp.where(q_on, _log_softmax(backend, lq_in, ax), 0.0)
    lp = xp.where(p_on, _log_softmax(backend, lp_in, ax), 0.0)
    q = xp.where(q_on, xp.exp(lq), 0.0)
    # A term whose q underflows to 0 adds 0: there lq (and lp) may be -inf (logits ~1e38
    # apart), and 0 * (-inf - -inf) would be NaN, in the value and in the gradient.
    kept = q > 0
    diff = xp.where(kept, lq, 0.0) - xp.where(kept, lp, 0.0)
    kl = xp.sum(q * diff, axis=ax)
    return xp.where(xp.any(q_on & xp.logical_not(p_on), axis=ax), INF, kl)
