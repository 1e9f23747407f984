"""Binary relaxations in logit space, and Hard Concrete gates, on the array-API standard.

The relaxed Bernoulli of ``_distributions`` is a sigmoid of a logistic variable. Here are
that variable itself (the *logit-space* sample, whose density is finite wherever the sample
is, as torch's ``LogitRelaxedBernoulli``), the CDF of the relaxed Bernoulli, and the Hard
Concrete gate of Louizos, Welling and Kingma (2018): the relaxed Bernoulli stretched to
``(low, high)`` and clamped to [0, 1], with point masses at 0 and 1.

Every sampler draws its logistic noise exactly as :func:`relaxed_bernoulli` does (two
standard-Gumbel arrays from ``Prepared.noise``, ``L = g[0] - g[1]``), so the same ``rng``
gives the same noise here and there. Decisions about the clamp are taken in logit space,
where they are exact: a gate is 0 exactly when ``(logits + L) / tau <= log(-low / high)``.
"""

from __future__ import annotations

import math
from typing import Any

from ._backends import Array, Backend
from ._core import Prepared, divide_by_tau
from ._distributions import _log, _sigmoid, elementwise
from ._validation import check_no_nan

__all__ = [
    "hard_concrete",
    "hard_concrete_l0",
    "hard_concrete_log_prob",
    "logit_relaxed_bernoulli",
    "logit_relaxed_bernoulli_log_prob",
    "relaxed_bernoulli_cdf",
]

INF = math.inf
#: The stretch of Louizos et al. (2018): ``(gamma, zeta) = (-0.1, 1.1)``.
DEFAULT_LIMITS = (-0.1, 1.1)


# -- helpers ----------------------------------------------------------------------------


def _log_sigmoid(xp: Any, v: Array) -> Array:
    """``log(sigmoid(v)) = min(v, 0) - log1p(exp(-|v|))``, without overflow; -inf at -inf."""
    neg_abs = xp.where(v >= 0, -v, v)
    return xp.where(v >= 0, 0.0, v) - xp.log1p(xp.exp(neg_abs))


def _log_logistic_density(xp: Any, d: Array) -> Array:
    """Log-density of the standard logistic at finite ``d``: ``-|d| - 2 log1p(exp(-|d|))``."""
    neg_abs = xp.where(d >= 0, -d, d)
    return neg_abs - 2.0 * xp.log1p(xp.exp(neg_abs))


def check_limits(limits: Any) -> tuple[float, float]:
    """``limits`` as two Python floats ``low < 0 < 1 < high``, or ``ValueError``."""
    try:
        low, high = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise TypeError(
            f"limits must be a pair of numbers (low, high), e.g. (-0.1, 1.1); got {limits!r}."
        ) from None
    if not (-INF < low < 0.0 and 1.0 < high < INF):
        raise ValueError(
            f"limits={limits!r}: the stretch needs low < 0 and high > 1 (finite), so that the "
            f"gate has point masses at 0 and 1; (-0.1, 1.1) is the usual choice."
        )
    return low, high


def _thresholds(low: float, high: float) -> tuple[float, float]:
    """Logit-space points where the stretched sample crosses 0 and 1.

    ``low + (high - low) sigmoid(t)`` is 0 at ``t0 = log(-low / high)`` and 1 at
    ``t1 = log((1 - low) / (high - 1))``.
    """
    return math.log(-low / high), math.log((1.0 - low) / (high - 1.0))


# -- logit-space relaxed Bernoulli ------------------------------------------------------


def logit_relaxed_bernoulli(
    logits: Array,
    /,
    tau: float | Array = 1.0,
    *,
    rng: Any = None,
    noise: Array | None = None,
) -> Array:
    r"""Draw the logit of a relaxed Bernoulli sample: :math:`z = (\ell + L) / \tau`.

    :math:`L` is standard logistic noise, so :math:`z` is logistic with location
    :math:`\ell / \tau` and scale :math:`1 / \tau`, and :math:`\sigma(z)` is
    :func:`relaxed_bernoulli`'s sample. At low temperature :math:`\sigma(z)` rounds to
    exactly 0 or 1 (at ``tau=0.1`` about one sample in six in float32, one in
    forty in float64) and its density
    there is infinite; :math:`z` stays finite, and so does
    :func:`logit_relaxed_bernoulli_log_prob` at it.

    Parameters
    ----------
    logits : array
        Log-odds, real floating, any shape (0-d included); no NaN. ``+inf`` and ``-inf``
        give ``+inf`` and ``-inf``.
    tau : float or array, default 1.0
        Temperature > 0, as in :func:`relaxed_bernoulli` (an array broadcasts against
        ``logits``).
    rng : None, int, or generator, optional
        Source of randomness, drawn exactly as by :func:`relaxed_bernoulli`: the same
        ``rng`` gives ``relaxed_bernoulli(x, tau, rng=s) == sigmoid(z)`` up to rounding.
    noise : array, optional
        Explicit standard *logistic* noise of the logits' shape; it overrides ``rng``.

    Returns
    -------
    array
        :math:`z`, with the type, shape, dtype and device of ``logits`` (the broadcast
        shape where ``tau`` adds dimensions).

    Raises
    ------
    TypeError, ValueError
        As :func:`relaxed_bernoulli`.

    See Also
    --------
    logit_relaxed_bernoulli_log_prob : its density.
    relaxed_bernoulli : :math:`\sigma(z)`.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.zeros(10_000, dtype=np.float32)
    >>> y = relaxcat.relaxed_bernoulli(logits, tau=0.1, rng=0)
    >>> int(((y == 0) | (y == 1)).sum())  # rounded onto the boundary: infinite density
    1591
    >>> z = relaxcat.logit_relaxed_bernoulli(logits, tau=0.1, rng=0)
    >>> from scipy.special import expit  # the sigmoid
    >>> bool(np.allclose(expit(z), y))
    True
    >>> lp = relaxcat.logit_relaxed_bernoulli_log_prob(z, logits, 0.1)
    >>> bool(np.isfinite(lp).all())
    True

    """
    p = Prepared(logits, tau, None, elementwise=True)
    backend = p.backend
    check_no_nan(backend, p.x, "logits")
    logistic = p.logistic_noise(rng, noise)
    with backend.errstate():
        z = backend.compiled(_logit_sample, (0,))(backend, p.x + logistic, p.tau)
    return p.out(z)


def _logit_sample(backend: Backend, s: Array, tau: Any) -> Array:
    return divide_by_tau(backend.xp, s, tau)


def logit_relaxed_bernoulli_log_prob(x: Array, logits: Array, tau: float | Array) -> Array:
    r"""Log-density of the logit-space relaxed Bernoulli, a logistic variable.

    .. math::

        \log p(x) = \log\tau - |\tau x - \ell| - 2 \log\bigl(1 + e^{-|\tau x - \ell|}\bigr),

    the density of :func:`logit_relaxed_bernoulli`'s sample (logistic with location
    :math:`\ell/\tau` and scale :math:`1/\tau`). The relaxed Bernoulli density at
    :math:`y = \sigma(x)` is this plus :math:`\mathrm{softplus}(x) + \mathrm{softplus}(-x)`.

    Parameters
    ----------
    x : array
        Points on the real line; broadcasts against ``logits``.
    logits : array
        Log-odds (same library). ``+inf`` (``-inf``) is a point mass at ``+inf``
        (``-inf``).
    tau : float or array
        Temperature > 0; a number or an array broadcasting against ``x`` and ``logits``.

    Returns
    -------
    array
        The log-density, of the broadcast shape: finite wherever ``x`` and ``logits`` are;
        ``-inf`` at ``x = ±inf`` for finite logits; for infinite logits ``+inf`` at the
        point mass and ``-inf`` elsewhere.

    Raises
    ------
    TypeError, ValueError
        For mixed libraries, non-floating input, shapes that do not broadcast, a bad
        ``tau``, or (where values can be read) NaN in ``x`` or ``logits``.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> x = np.array([-1e4, 0.0, 1e4])  # sigmoid(x) is 0.0, 0.5, 1.0
    >>> relaxcat.logit_relaxed_bernoulli_log_prob(x, np.zeros(3), 0.01)
    array([-104.60517019,   -5.99146455, -104.60517019])

    """
    return elementwise(_logit_log_prob, x, logits, "x", tau)


def _logit_log_prob(backend: Backend, x: Array, lg: Array, tau: Any) -> Array:
    xp = backend.xp
    ok = xp.isfinite(x) & xp.isfinite(lg)
    d = xp.where(ok, x, 0.0) * tau - xp.where(ok, lg, 0.0)  # tau may add dimensions
    r = xp.where(ok, _log(xp, tau) + _log_logistic_density(xp, d), -INF)
    point_mass = xp.isinf(lg) & (x == lg)  # x = +inf where logits = +inf, likewise -inf
    return xp.where(point_mass, INF, r)


def relaxed_bernoulli_cdf(y: Array, logits: Array, tau: float | Array) -> Array:
    r"""CDF of the relaxed Bernoulli (binary Concrete): :math:`P(Y \le y)`.

    .. math::

        F(y) = \sigma\bigl(\tau\,\mathrm{logit}(y) - \ell\bigr), \quad 0 < y < 1,

    0 below 0 and 1 from 1 on. Its inverse is :math:`\sigma((\ell + \mathrm{logit}(q))/\tau)`.

    Parameters
    ----------
    y : array
        Points; broadcasts against ``logits``.
    logits : array
        Log-odds (same library); ``±inf`` are the point masses at 1 and 0.
    tau : float or array
        Temperature > 0; a number or an array broadcasting against ``y`` and ``logits``.

    Returns
    -------
    array
        :math:`F(y)` in [0, 1], of the broadcast shape.

    Raises
    ------
    TypeError, ValueError
        As :func:`relaxed_bernoulli_log_prob`.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> relaxcat.relaxed_bernoulli_cdf(np.array([-1.0, 0.25, 0.5, 1.0]), np.zeros(1), 1.0)
    array([0.  , 0.25, 0.5 , 1.  ])

    """
    return elementwise(_relaxed_bernoulli_cdf, y, logits, "y", tau)


def _relaxed_bernoulli_cdf(backend: Backend, y: Array, lg: Array, tau: Any) -> Array:
    xp = backend.xp
    interior = (y > 0) & (y < 1)
    ys = xp.where(interior, y, 0.5)
    logit_y = xp.log(ys) - xp.log1p(-ys)
    inside = _sigmoid(xp, logit_y * tau - lg)  # +-inf logits give exact 0 and 1
    at_zero = xp.astype(lg == -INF, y.dtype)  # only the point mass at 0 sits at y = 0
    r = xp.where(interior, inside, xp.where(y >= 1, 1.0, xp.where(y == 0, at_zero, 0.0)))
    return xp.where(xp.isnan(y), math.nan, r)


# -- Hard Concrete ----------------------------------------------------------------------


def hard_concrete(
    logits: Array,
    /,
    tau: float | Array = 2 / 3,
    *,
    limits: tuple[float, float] = DEFAULT_LIMITS,
    rng: Any = None,
    noise: Array | None = None,
) -> Array:
    r"""Draw Hard Concrete gates: a stretched, clamped relaxed Bernoulli with exact 0s and 1s.

    With :math:`s = \sigma((\ell + L)/\tau)` (:func:`relaxed_bernoulli`'s sample) and
    ``limits`` :math:`(\gamma, \zeta)`, the gate is
    :math:`z = \min(1, \max(0, \gamma + (\zeta - \gamma) s))` (Louizos, Welling and Kingma,
    2018). It is exactly 0 with probability
    :math:`\sigma(\tau \log(-\gamma/\zeta) - \ell)` and exactly 1 with probability
    :math:`\sigma(\ell - \tau \log((1 - \gamma)/(\zeta - 1)))`; in between it has the
    stretched relaxed-Bernoulli density. The gradient with respect to ``logits`` (and an
    array ``tau``) is that of the stretched sample on gates inside (0, 1) and exactly 0 on
    clamped gates. Whether a gate is clamped is decided in logit space,
    :math:`(\ell + L)/\tau \le \log(-\gamma/\zeta)`, so the frequencies of 0 and 1 match
    the closed forms to the last bit, not only to the rounding of :math:`s`.

    Parameters
    ----------
    logits : array
        Log-odds :math:`\log\alpha`, real floating, any shape; no NaN. ``±inf`` give gates
        that are always 1 or 0.
    tau : float or array, default 2/3
        Temperature > 0 (Louizos et al. use 2/3); an array broadcasts against ``logits``.
    limits : tuple of two floats, default (-0.1, 1.1)
        The stretch :math:`(\gamma, \zeta)`, with :math:`\gamma < 0` and :math:`\zeta > 1`.
    rng : None, int, or generator, optional
        Source of randomness, drawn exactly as by :func:`relaxed_bernoulli`.
    noise : array, optional
        Explicit standard *logistic* noise of the logits' shape; it overrides ``rng``.

    Returns
    -------
    array
        Gates in [0, 1], with the type, shape, dtype and device of ``logits``.

    Raises
    ------
    TypeError, ValueError
        As :func:`relaxed_bernoulli`; for ``limits`` that are not two numbers with
        ``low < 0 < 1 < high``.

    See Also
    --------
    hard_concrete_l0 : the expected number of non-zero gates.
    hard_concrete_log_prob : the law of the gate, with its point masses.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> z = relaxcat.hard_concrete(np.zeros(100_000), rng=0)
    >>> bool(((z >= 0) & (z <= 1)).all())
    True
    >>> p0 = 1 / (1 + np.exp(-(2 / 3) * np.log(0.1 / 1.1)))  # sigmoid(tau log(-low/high))
    >>> round(float((z == 0).mean()), 2), round(float(p0), 2)
    (0.17, 0.17)

    """
    low, high = check_limits(limits)
    p = Prepared(logits, tau, None, elementwise=True)
    backend = p.backend
    check_no_nan(backend, p.x, "logits")
    logistic = p.logistic_noise(rng, noise)
    with backend.errstate():
        z = backend.compiled(_hard_concrete, (0, 1, 2))(backend, low, high, p.x + logistic, p.tau)
    return p.out(z)


def _hard_concrete(backend: Backend, low: float, high: float, s: Array, tau: Any) -> Array:
    xp = backend.xp
    t = divide_by_tau(xp, s, tau)
    t0, t1 = _thresholds(low, high)
    stretched = low + (high - low) * _sigmoid(xp, t)
    # where, not clip: the clamped gates get an exact 0 gradient, the others the stretch's.
    return xp.where(t <= t0, 0.0, xp.where(t >= t1, 1.0, stretched))


def hard_concrete_l0(
    logits: Array, tau: float | Array = 2 / 3, *, limits: tuple[float, float] = DEFAULT_LIMITS
) -> Array:
    r"""Expected L0 norm of Hard Concrete gates: :math:`P(z \ne 0)`, element-wise.

    .. math::

        P(z \ne 0) = \sigma\bigl(\ell - \tau \log(-\gamma/\zeta)\bigr),

    the closed form of Louizos et al. (2018, eq. 12); sum it over gates for the expected
    number of non-zero gates, the L0 penalty. Differentiable in ``logits`` (and an array
    ``tau``).

    Parameters
    ----------
    logits : array
        Log-odds :math:`\log\alpha` of the gates, real floating; no NaN.
    tau : float or array, default 2/3
        Temperature > 0, as in :func:`hard_concrete`.
    limits : tuple of two floats, default (-0.1, 1.1)
        The stretch :math:`(\gamma, \zeta)`, as in :func:`hard_concrete`.

    Returns
    -------
    array
        :math:`P(z \ne 0)` in [0, 1], with the type, dtype and device of ``logits`` (the
        broadcast shape with ``tau``).

    Raises
    ------
    TypeError, ValueError
        As :func:`hard_concrete`.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> l0 = relaxcat.hard_concrete_l0(np.array([-5.0, 0.0, 5.0]))
    >>> np.round(l0, 4)
    array([0.0323, 0.8318, 0.9986])
    >>> z = relaxcat.hard_concrete(np.zeros(100_000), rng=0)
    >>> round(float((z != 0).mean()), 3)
    0.83

    """
    low, high = check_limits(limits)
    p = Prepared(logits, tau, None, elementwise=True)
    backend = p.backend
    check_no_nan(backend, p.x, "logits")
    with backend.errstate():
        r = backend.compiled(_hard_concrete_l0, (0, 1, 2))(backend, low, high, p.x, p.tau)
    return p.out(r)


def _hard_concrete_l0(backend: Backend, low: float, high: float, x: Array, tau: Any) -> Array:
    t0, _ = _thresholds(low, high)
    return _sigmoid(backend.xp, x - tau * t0)


def hard_concrete_log_prob(
    z: Array,
    logits: Array,
    tau: float | Array,
    *,
    limits: tuple[float, float] = DEFAULT_LIMITS,
) -> Array:
    r"""Log-density of Hard Concrete gates, with respect to Lebesgue measure plus two atoms.

    The law of :func:`hard_concrete`'s gate is a mixture: an atom at 0, an atom at 1, and a
    density on (0, 1). Its density with respect to the measure
    :math:`\delta_0 + \delta_1 + \lambda|_{(0, 1)}` (the two Dirac measures plus Lebesgue
    measure on the open interval) is

    .. math::

        \log p(0) &= \log\sigma\bigl(\tau \log(-\gamma/\zeta) - \ell\bigr), \\
        \log p(1) &= \log\sigma\bigl(\ell - \tau \log((1-\gamma)/(\zeta-1))\bigr), \\
        \log p(z) &= \log q\bigl((z - \gamma)/(\zeta - \gamma)\bigr) - \log(\zeta - \gamma),
        \quad 0 < z < 1,

    where :math:`q` is the relaxed Bernoulli density (:func:`relaxed_bernoulli_log_prob`).
    Probabilities of events mix the two parts: :math:`P(z \in A) = \sum_{a \in A \cap
    \{0, 1\}} p(a) + \int_{A \cap (0, 1)} p`. Interior points map to
    :math:`s \in (\sigma(t_0), \sigma(t_1))`, away from 0 and 1, so the density is finite
    there in float32 at any temperature.

    Parameters
    ----------
    z : array
        Gates; broadcasts against ``logits``.
    logits : array
        Log-odds of the gates (same library); ``±inf`` make the gate always 1 or 0.
    tau : float or array
        Temperature > 0; a number or an array broadcasting against ``z`` and ``logits``.
    limits : tuple of two floats, default (-0.1, 1.1)
        The stretch :math:`(\gamma, \zeta)`, as in :func:`hard_concrete`.

    Returns
    -------
    array
        The log-density, of the broadcast shape; ``-inf`` outside [0, 1].

    Raises
    ------
    TypeError, ValueError
        As :func:`relaxed_bernoulli_log_prob`, and for bad ``limits``.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> lp = relaxcat.hard_concrete_log_prob(np.array([0.0, 1.0]), np.zeros(2), 2 / 3)
    >>> np.round(np.exp(lp), 4)  # P(z = 0) and P(z = 1)
    array([0.1682, 0.1682])
    >>> l0 = relaxcat.hard_concrete_l0(np.zeros(1))
    >>> bool(np.isclose(np.exp(lp[0]), 1 - l0[0]))
    True

    """
    low, high = check_limits(limits)
    return elementwise(_hard_concrete_log_prob, z, logits, "z", tau, low, high)


def _hard_concrete_log_prob(
    backend: Backend, low: float, high: float, z: Array, lg: Array, tau: Any
) -> Array:
    xp = backend.xp
    t0, t1 = _thresholds(low, high)
    finite = xp.isfinite(lg)
    lgs = xp.where(finite, lg, 0.0)
    at0 = _log_sigmoid(xp, tau * t0 - lg)  # exact for infinite logits too
    at1 = _log_sigmoid(xp, lg - tau * t1)
    interior = (z > 0) & (z < 1)
    s = (xp.where(interior, z, 0.5) - low) / (high - low)  # in (sigmoid(t0), sigmoid(t1))
    t = xp.log(s) - xp.log1p(-s)
    # relaxed Bernoulli density at s: logistic density of t, plus log|dt/ds|
    inside = (
        _log(xp, tau)
        + _log_logistic_density(xp, t * tau - lgs)
        - xp.log(s)
        - xp.log1p(-s)
        - math.log(high - low)
    )
    inside = xp.where(finite, inside, -INF)
    r = xp.where(interior, inside, xp.where(z == 0, at0, xp.where(z == 1, at1, -INF)))
    return xp.where(xp.isnan(z), math.nan, r)
