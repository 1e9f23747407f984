"""relaxcat's relaxations as ``numpyro.distributions`` objects.

Importing this module imports JAX and NumPyro (``import relaxcat`` alone imports no
framework). The five classes of :mod:`relaxcat.torch`, as NumPyro distributions:
``sample(key, sample_shape)``, ``log_prob``, ``reparametrized_params``, ``support``,
``batch_shape``/``event_shape`` and ``expand``, usable in ``numpyro.sample`` under SVI,
``jax.jit`` and ``jax.vmap``. Samples are drawn by relaxcat's samplers with ``rng=key``.

``RelaxedOneHotCategorical`` and ``RelaxedBernoulli`` return their log-space (logit-space)
form as NumPyro *intermediates*, and ``log_prob(value, intermediates)`` evaluates the
density from it, so a guide's own ``log_prob`` is finite at any temperature. NumPyro passes
only the value from a guide to a model, so a model's relaxed prior sees the rounded sample:
at low temperature use ``ExpRelaxedCategorical`` and ``LogitRelaxedBernoulli`` as the latent
sites (and ``exp``/``sigmoid`` of them in the model), whose densities are finite wherever
their samples are.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import validate_sample

import relaxcat

from ._gates import check_limits

__all__ = [
    "ExpRelaxedCategorical",
    "HardConcrete",
    "LogitRelaxedBernoulli",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
]


def _tau(temperature: Any) -> Any:
    """The temperature as relaxcat takes it: a float for a Python number, else an array."""
    if isinstance(temperature, (int, float)):
        return float(temperature)
    return temperature


def _params(probs: Any, logits: Any, categorical: bool) -> Any:
    if (probs is None) == (logits is None):
        raise ValueError("Either `probs` or `logits` must be specified, but not both.")
    if logits is not None:
        logits = jnp.asarray(logits)
        return jax.nn.log_softmax(logits, axis=-1) if categorical else logits
    probs = jnp.asarray(probs)
    if categorical:
        return jnp.log(probs / jnp.sum(probs, axis=-1, keepdims=True))
    return jnp.log(probs) - jnp.log1p(-probs)


class _Relaxed(Distribution):
    """What every class here shares: ``temperature`` and ``logits`` (from ``probs`` if given).

    Element-wise (``_categorical`` False) the logits' shape is the batch shape; otherwise
    their last axis is the event (the categories) and the logits are normalised.
    """

    reparametrized_params: ClassVar[list[str]] = ["temperature", "logits"]
    pytree_data_fields = ("temperature", "logits")
    _categorical: ClassVar[bool] = False

    def __init__(
        self,
        temperature: Any,
        probs: Any = None,
        logits: Any = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        logits = _params(probs, logits, categorical=self._categorical)
        if self._categorical and jnp.ndim(logits) < 1:
            raise ValueError("`logits` and `probs` must be at least one-dimensional.")
        self.logits = logits
        self.temperature = temperature  # kept as given: a float stays a Python float
        shape = jnp.shape(logits)
        split = len(shape) - 1 if self._categorical else len(shape)
        super().__init__(
            batch_shape=shape[:split], event_shape=shape[split:], validate_args=validate_args
        )

    def _logits_for(self, sample_shape: tuple[int, ...]) -> Any:
        return jnp.broadcast_to(
            self.logits, tuple(sample_shape) + self.batch_shape + self.event_shape
        )


class _Binary(_Relaxed):
    """Element-wise parameters: log-odds ``logits`` (from ``probs`` if given)."""

    arg_constraints: ClassVar[dict[str, Any]] = {
        "temperature": constraints.positive,
        "logits": constraints.real,
    }

    @property
    def probs(self) -> Any:
        return jax.nn.sigmoid(self.logits)


class _Categorical(_Relaxed):
    """Parameters over the last axis: normalised ``logits`` (from ``probs`` if given)."""

    arg_constraints: ClassVar[dict[str, Any]] = {
        "temperature": constraints.positive,
        "logits": constraints.real_vector,
    }
    _categorical = True

    @property
    def probs(self) -> Any:
        return jax.nn.softmax(self.logits, axis=-1)


class LogitRelaxedBernoulli(_Binary):
    r"""The logit of a relaxed Bernoulli sample (logistic, location ``logits/T``, scale ``1/T``).

    ``sample`` is :func:`relaxcat.logit_relaxed_bernoulli`, ``log_prob``
    :func:`relaxcat.logit_relaxed_bernoulli_log_prob` (finite wherever the sample is);
    ``mean``, ``variance``, ``cdf`` and ``icdf`` are closed forms.

    Parameters
    ----------
    temperature : float or array
        Temperature > 0.
    probs : array, optional
        Probabilities of 1; exactly one of ``probs`` and ``logits``.
    logits : array, optional
        Log-odds.
    validate_args : bool, optional
        As in NumPyro.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from relaxcat.numpyro import LogitRelaxedBernoulli
    >>> d = LogitRelaxedBernoulli(0.1, logits=jnp.zeros(3))
    >>> x = d.sample(jax.random.key(0), (10_000,))
    >>> x.shape, bool(jnp.isfinite(d.log_prob(x)).all())
    ((10000, 3), True)

    """

    support = constraints.real

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        return relaxcat.logit_relaxed_bernoulli(
            self._logits_for(sample_shape), _tau(self.temperature), rng=key
        )

    @validate_sample
    def log_prob(self, value: Any) -> Any:
        return relaxcat.logit_relaxed_bernoulli_log_prob(value, self.logits, _tau(self.temperature))

    @property
    def mean(self) -> Any:
        return self.logits / self.temperature

    @property
    def variance(self) -> Any:
        return jnp.broadcast_to(
            (math.pi**2 / 3) / jnp.square(self.temperature), jnp.shape(self.logits)
        )

    def cdf(self, value: Any) -> Any:
        return jax.nn.sigmoid(value * self.temperature - self.logits)

    def icdf(self, q: Any) -> Any:
        return (self.logits + jnp.log(q) - jnp.log1p(-q)) / self.temperature


class RelaxedBernoulli(_Binary):
    r"""The relaxed Bernoulli (binary Concrete) on [0, 1], soft or straight-through 0/1.

    ``sample`` is :func:`relaxcat.relaxed_bernoulli` (``hard=True``: exact 0s and 1s with
    the soft sample's gradient); its intermediates hold the logit-space sample, from which
    ``log_prob(value, intermediates)`` evaluates the density at the soft point (finite in
    float32 at any temperature). Without them, :func:`relaxcat.relaxed_bernoulli_log_prob`.
    ``cdf`` and ``icdf`` are closed forms.

    Parameters
    ----------
    temperature : float or array
        Temperature > 0.
    probs : array, optional
        Probabilities of 1; exactly one of ``probs`` and ``logits``.
    logits : array, optional
        Log-odds.
    hard : bool, default False
        Straight-through 0/1 samples.
    validate_args : bool, optional
        As in NumPyro.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from relaxcat.numpyro import RelaxedBernoulli
    >>> d = RelaxedBernoulli(0.1, logits=jnp.zeros(10_000, dtype=jnp.float32))
    >>> y, inter = d.sample_with_intermediates(jax.random.key(0))
    >>> int(((y == 0) | (y == 1)).sum()) > 1000  # rounded onto the boundary
    True
    >>> bool(jnp.isfinite(d.log_prob(y, inter)).all())
    True

    """

    support = constraints.unit_interval
    pytree_aux_fields = ("hard",)

    def __init__(
        self,
        temperature: Any,
        probs: Any = None,
        logits: Any = None,
        *,
        hard: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        self.hard = bool(hard)
        super().__init__(temperature, probs, logits, validate_args=validate_args)

    def sample_with_intermediates(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        x = self._logits_for(sample_shape)
        tau = _tau(self.temperature)
        g = relaxcat.gumbel_noise(x, shape=(2, *x.shape), rng=key)  # what rng=key draws
        noise = g[0] - g[1]
        y = relaxcat.relaxed_bernoulli(x, tau, hard=self.hard, noise=noise)
        return y, [relaxcat.logit_relaxed_bernoulli(x, tau, noise=noise)]

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        return self.sample_with_intermediates(key, sample_shape)[0]

    @validate_sample
    def log_prob(self, value: Any, intermediates: Any = None) -> Any:
        tau = _tau(self.temperature)
        if not intermediates:
            return relaxcat.relaxed_bernoulli_log_prob(value, self.logits, tau)
        z = intermediates[0]
        jacobian = jax.nn.softplus(z) + jax.nn.softplus(-z)  # -log(y (1 - y)) at y = sigmoid(z)
        return relaxcat.logit_relaxed_bernoulli_log_prob(z, self.logits, tau) + jacobian

    def cdf(self, value: Any) -> Any:
        return relaxcat.relaxed_bernoulli_cdf(value, self.logits, _tau(self.temperature))

    def icdf(self, q: Any) -> Any:
        return jax.nn.sigmoid((self.logits + jnp.log(q) - jnp.log1p(-q)) / self.temperature)


class HardConcrete(_Binary):
    r"""Hard Concrete gates (Louizos et al., 2018): exact 0s and 1s, a density in between.

    ``sample`` is :func:`relaxcat.hard_concrete`, ``log_prob``
    :func:`relaxcat.hard_concrete_log_prob` (Lebesgue measure on (0, 1) plus unit atoms at
    0 and 1); :meth:`expected_l0` is ``P(z != 0)``.

    Parameters
    ----------
    temperature : float or array
        Temperature > 0 (2/3 in Louizos et al.).
    probs : array, optional
        :math:`\sigma(\log\alpha)`; exactly one of ``probs`` and ``logits``.
    logits : array, optional
        :math:`\log\alpha`.
    limits : tuple of two floats, default (-0.1, 1.1)
        The stretch, ``low < 0 < 1 < high``.
    validate_args : bool, optional
        As in NumPyro.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from relaxcat.numpyro import HardConcrete
    >>> d = HardConcrete(2 / 3, logits=jnp.zeros(2))
    >>> z = d.sample(jax.random.key(0), (100_000,))
    >>> [round(float(v), 2) for v in (z != 0).mean(0)], d.expected_l0().round(2).tolist()
    ([0.83, 0.83], [0.83, 0.83])

    """

    support = constraints.unit_interval
    pytree_aux_fields = ("limits",)

    def __init__(
        self,
        temperature: Any,
        probs: Any = None,
        logits: Any = None,
        *,
        limits: tuple[float, float] = (-0.1, 1.1),
        validate_args: bool | None = None,
    ) -> None:
        self.limits = check_limits(limits)
        super().__init__(temperature, probs, logits, validate_args=validate_args)

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        return relaxcat.hard_concrete(
            self._logits_for(sample_shape), _tau(self.temperature), limits=self.limits, rng=key
        )

    @validate_sample
    def log_prob(self, value: Any) -> Any:
        return relaxcat.hard_concrete_log_prob(
            value, self.logits, _tau(self.temperature), limits=self.limits
        )

    def expected_l0(self) -> Any:
        """``P(z != 0)`` for each gate, differentiable: sum it for the L0 penalty."""
        return relaxcat.hard_concrete_l0(self.logits, _tau(self.temperature), limits=self.limits)


class ExpRelaxedCategorical(_Categorical):
    r"""The logarithm of a Gumbel-softmax sample (ExpConcrete), on the real vectors.

    ``sample`` is :func:`relaxcat.log_gumbel_softmax`, ``log_prob``
    :func:`relaxcat.exp_concrete_log_prob`: finite wherever the sample is, at any
    temperature. The latent to use for a relaxed categorical in a NumPyro model.

    Parameters
    ----------
    temperature : float or array
        Temperature > 0.
    probs : array, optional
        Category probabilities; exactly one of ``probs`` and ``logits``.
    logits : array, optional
        Unnormalised log-probabilities; ``-inf`` masks a category.
    validate_args : bool, optional
        As in NumPyro.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from relaxcat.numpyro import ExpRelaxedCategorical
    >>> d = ExpRelaxedCategorical(0.01, logits=jnp.zeros(4))
    >>> x = d.sample(jax.random.key(0), (10_000,))
    >>> bool(jnp.isfinite(d.log_prob(x)).all())
    True

    """

    support = constraints.real_vector

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        return relaxcat.log_gumbel_softmax(
            self._logits_for(sample_shape), _tau(self.temperature), rng=key
        )

    @validate_sample
    def log_prob(self, value: Any) -> Any:
        return relaxcat.exp_concrete_log_prob(value, self.logits, _tau(self.temperature))


class RelaxedOneHotCategorical(_Categorical):
    r"""The Gumbel-softmax (Concrete) distribution on the simplex, soft or one-hot.

    ``sample`` is :func:`relaxcat.gumbel_softmax` with ``rng=key`` (``hard``,
    ``estimator`` and ``samples`` as there). Its intermediates hold the log-space sample of
    the same noise, from which ``log_prob(value, intermediates)`` evaluates the Concrete
    density at the soft point (finite at any temperature); without them,
    :func:`relaxcat.concrete_log_prob`.

    Parameters
    ----------
    temperature : float or array
        Temperature > 0.
    probs : array, optional
        Category probabilities; exactly one of ``probs`` and ``logits``.
    logits : array, optional
        Unnormalised log-probabilities; ``-inf`` masks a category.
    hard : bool, default False
        Exact one-hot samples.
    estimator : {"st", "reinmax", "gumbel_rao"}, default "st"
        The gradient of a ``hard=True`` sample, as in :func:`relaxcat.gumbel_softmax`.
    samples : int, default 1
        Conditional draws of ``estimator="gumbel_rao"``.
    validate_args : bool, optional
        As in NumPyro.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> import relaxcat
    >>> from relaxcat.numpyro import RelaxedOneHotCategorical
    >>> logits = jnp.zeros(4)
    >>> d = RelaxedOneHotCategorical(0.5, logits=logits, hard=True)
    >>> y = d.sample(jax.random.key(0), (3,))
    >>> same = relaxcat.gumbel_softmax(
    ...     jnp.broadcast_to(logits, (3, 4)), 0.5, hard=True, rng=jax.random.key(0)
    ... )
    >>> bool((y == same).all()), y.sum(-1).tolist()
    (True, [1.0, 1.0, 1.0])

    """

    support = constraints.simplex
    pytree_aux_fields = ("hard", "estimator", "samples")

    def __init__(
        self,
        temperature: Any,
        probs: Any = None,
        logits: Any = None,
        *,
        hard: bool = False,
        estimator: str = "st",
        samples: int = 1,
        validate_args: bool | None = None,
    ) -> None:
        self.hard = bool(hard)
        self.estimator = estimator
        self.samples = samples
        super().__init__(temperature, probs, logits, validate_args=validate_args)

    def sample_with_intermediates(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        x = self._logits_for(sample_shape)
        tau = _tau(self.temperature)
        g = relaxcat.gumbel_noise(x, rng=key)  # the noise rng=key would draw
        y = relaxcat.gumbel_softmax(
            x,
            tau,
            hard=self.hard,
            noise=g,
            rng=key,  # gumbel_rao's conditional draws: after the noise, as with rng=key
            estimator=self.estimator,  # type: ignore[arg-type]
            samples=self.samples,
        )
        return y, [relaxcat.log_gumbel_softmax(x, tau, noise=g)]

    def sample(self, key: Any, sample_shape: tuple[int, ...] = ()) -> Any:
        return self.sample_with_intermediates(key, sample_shape)[0]

    @validate_sample
    def log_prob(self, value: Any, intermediates: Any = None) -> Any:
        tau = _tau(self.temperature)
        if not intermediates:
            return relaxcat.concrete_log_prob(value, self.logits, tau)
        log_y = intermediates[0]
        lp = relaxcat.exp_concrete_log_prob(log_y, self.logits, tau)
        # Concrete density = ExpConcrete density - sum(log y), masked entries left out
        return lp - jnp.sum(jnp.where(log_y == -jnp.inf, 0.0, log_y), axis=-1)
