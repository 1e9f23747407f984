"""relaxcat's relaxations as ``torch.distributions`` objects, and a drop-in ``gumbel_softmax``.

Importing this module imports torch (``import relaxcat`` alone imports no framework). The
classes follow ``torch.distributions``: the same argument order, ``batch_shape`` and
``event_shape``, ``rsample``/``sample``/``log_prob``/``expand``, ``support`` and
``arg_constraints``. Their samples are drawn by relaxcat's samplers, so they equal the
functional API's for the same generator, and the density of a sample is computed from its
log-space (or logit-space) form, which the sample carries along: ``log_prob`` of the
object's own ``rsample`` is finite in float32 at any temperature.

The objects also answer what Pyro asks of a distribution (``to_event``, ``mask``,
``expand_by``, ``score_parts``, calling the object to sample); Pyro itself is imported only
by ``to_event``, ``mask`` and ``score_parts``, and only once Pyro is in use.
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from numbers import Number
from typing import Any, ClassVar

import torch
from torch.distributions import Distribution, constraints
from torch.distributions.kl import register_kl
from torch.distributions.utils import (
    broadcast_all,
    lazy_property,
    logits_to_probs,
    probs_to_logits,
)
from torch.nn.functional import softplus

import relaxcat

from ._gates import check_limits

__all__ = [
    "ExpRelaxedCategorical",
    "HardConcrete",
    "LogitRelaxedBernoulli",
    "RelaxedBernoulli",
    "RelaxedOneHotCategorical",
    "gumbel_softmax",
]

#: Attributes that a sample carries: its log-space (categorical) or logit-space (binary)
#: form. ``log_prob`` uses them only for the very tensor ``rsample`` returned, where they
#: hold the exact point that was drawn (a rounded ``y`` may sit on the boundary).
_LOG_SAMPLE = "_relaxcat_log_sample"
_LOGIT_SAMPLE = "_relaxcat_logit_sample"


def _attach(value: torch.Tensor, name: str, latent: torch.Tensor) -> torch.Tensor:
    with contextlib.suppress(AttributeError, RuntimeError):  # a tensor that takes none
        setattr(value, name, latent)
    return value


def _latent(value: Any, name: str) -> torch.Tensor | None:
    latent = getattr(value, name, None)
    if latent is None or latent.shape != value.shape:
        return None
    return latent


def _tau(temperature: Any) -> Any:
    """The temperature as relaxcat takes it: a float, a 0-d tensor, or a tensor."""
    if isinstance(temperature, torch.Tensor):
        return temperature.reshape(()) if temperature.numel() == 1 else temperature
    return float(temperature)


def _twin(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """A new generator in the state of ``generator`` (None: torch's default on ``device``)."""
    if generator is None:
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            generator = torch.cuda.default_generators[index]
        else:
            generator = torch.default_generator
    twin = torch.Generator(device=generator.device)
    twin.set_state(generator.get_state())
    return twin


def _register_with_pyro(cls: type) -> None:
    """Make Pyro's ``isinstance(d, TorchDistributionMixin)`` checks true, once Pyro is loaded.

    Pyro's plates broadcast, and its guides and enumeration accept, only distributions
    that pass that check; the methods it then calls are defined in :class:`_PyroMethods`.
    Importing Pyro here would cost every user of this module a second or more.
    """
    module = sys.modules.get("pyro.distributions.torch_distribution")
    mixin = getattr(module, "TorchDistributionMixin", None)
    if mixin is not None and not issubclass(cls, mixin):
        mixin.register(cls)


class _PyroMethods:
    """What Pyro calls on a distribution beyond ``torch.distributions``' interface."""

    batch_shape: torch.Size
    event_shape: torch.Size
    has_rsample: bool

    def __call__(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:  # noqa: B008
        """A sample (``rsample``): what ``pyro.sample`` does outside inference."""
        return self.rsample(sample_shape)  # type: ignore[attr-defined]

    @property
    def event_dim(self) -> int:
        return len(self.event_shape)

    def shape(self, sample_shape: torch.Size = torch.Size()) -> torch.Size:  # noqa: B008
        return torch.Size(sample_shape) + self.batch_shape + self.event_shape

    def expand_by(self, sample_shape: Any) -> Any:
        return self.expand(torch.Size(sample_shape) + self.batch_shape)  # type: ignore[attr-defined]

    def to_event(self, reinterpreted_batch_ndims: int | None = None) -> Any:
        """Pyro's ``Independent`` over the rightmost batch dimensions (all by default)."""
        from pyro.distributions import Independent

        n = (
            len(self.batch_shape)
            if reinterpreted_batch_ndims is None
            else reinterpreted_batch_ndims
        )
        return self if n == 0 else Independent(self, n)

    def mask(self, mask: Any) -> Any:
        """Pyro's ``MaskedDistribution``: ``log_prob`` is 0 where ``mask`` is False."""
        from pyro.distributions.torch_distribution import MaskedDistribution

        return MaskedDistribution(self, mask)

    def score_parts(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Pyro's ELBO terms of a reparameterised sample."""
        from pyro.distributions.score_parts import ScoreParts

        log_prob = self.log_prob(x, *args, **kwargs)  # type: ignore[attr-defined]
        return ScoreParts(log_prob, 0, log_prob)  # type: ignore[arg-type]


class _Relaxed(_PyroMethods, Distribution):
    """What every class here shares: ``temperature``, ``probs`` or ``logits``, ``expand``.

    Subclasses hold the parameter as given in ``_param`` (the one of ``probs`` and
    ``logits`` that was passed) and list their keyword options (``hard``, ``limits``, ...)
    in :meth:`_options`, which ``expand`` copies.
    """

    has_rsample = True
    temperature: Any
    _param: torch.Tensor

    @staticmethod
    def _check_one_of(probs: Any, logits: Any) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")

    def _options(self) -> dict[str, Any]:
        return {}

    def _expand_extra(self, new: Any, param_shape: torch.Size) -> None:
        """Expand what a subclass keeps beside ``probs`` and ``logits`` (nothing here)."""

    def expand(self, batch_shape: Any, _instance: Any = None) -> Any:
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        param_shape = batch_shape + self.event_shape
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(param_shape)  # type: ignore[attr-defined]
            new._param = new.probs
        if "logits" in self.__dict__:
            new.logits = self.logits.expand(param_shape)  # type: ignore[attr-defined]
            new._param = new.logits
        self._expand_extra(new, param_shape)
        new.temperature = self.temperature
        for name, value in self._options().items():
            setattr(new, name, value)
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _check_sample(self, value: torch.Tensor) -> None:
        """Check ``value`` against the support when ``validate_args`` is on."""
        if self._validate_args:
            self._validate_sample(value)


# -- binary relaxations -----------------------------------------------------------------


class _Binary(_Relaxed):
    """Parameters of an element-wise distribution: ``probs`` or ``logits`` (log-odds)."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "probs": constraints.unit_interval,
        "logits": constraints.real,
    }

    def __init__(
        self,
        temperature: Any,
        probs: Any = None,
        logits: Any = None,
        validate_args: bool | None = None,
    ) -> None:
        self._check_one_of(probs, logits)
        param = probs if probs is not None else logits
        is_scalar = isinstance(param, Number)
        (param,) = broadcast_all(param)
        if probs is not None:
            self.probs = param
        else:
            self.logits = param
        self._param = param
        self.temperature = temperature
        _register_with_pyro(type(self))
        batch_shape = torch.Size() if is_scalar else param.size()
        super().__init__(batch_shape, validate_args=validate_args)

    @lazy_property
    def logits(self) -> torch.Tensor:
        return probs_to_logits(self.probs, is_binary=True)

    @lazy_property
    def probs(self) -> torch.Tensor:
        return logits_to_probs(self.logits, is_binary=True)

    def _logits_for(self, sample_shape: Any) -> torch.Tensor:
        return self.logits.expand(self._extended_shape(torch.Size(sample_shape)))

    def _logistic_noise(self, x: torch.Tensor, generator: Any) -> torch.Tensor:
        """The noise ``relaxed_bernoulli(x, rng=generator)`` would draw, drawn once."""
        g = relaxcat.gumbel_noise(x, shape=(2, *x.shape), rng=generator)
        return g[0] - g[1]


class LogitRelaxedBernoulli(_Binary):
    r"""The logit of a relaxed Bernoulli sample: logistic, location ``logits / T``, scale ``1/T``.

    ``rsample`` is :func:`relaxcat.logit_relaxed_bernoulli`; ``log_prob`` is
    :func:`relaxcat.logit_relaxed_bernoulli_log_prob`, finite wherever the sample is (its
    sigmoid, a relaxed Bernoulli sample, may round to exactly 0 or 1 at low temperature).
    Closed forms: ``mean``, ``variance``, ``entropy``, ``cdf`` and ``icdf``, and the KL
    divergence to another ``LogitRelaxedBernoulli`` of the same temperature.

    Parameters
    ----------
    temperature : float or torch.Tensor
        Temperature > 0 (broadcasts against the logits).
    probs : float or torch.Tensor, optional
        Probabilities of 1; exactly one of ``probs`` and ``logits``.
    logits : float or torch.Tensor, optional
        Log-odds.
    validate_args : bool, optional
        As in ``torch.distributions``.

    Examples
    --------
    >>> import torch
    >>> from relaxcat.torch import LogitRelaxedBernoulli
    >>> d = LogitRelaxedBernoulli(0.1, logits=torch.zeros(10_000))
    >>> x = d.rsample()
    >>> bool(torch.isfinite(d.log_prob(x)).all())
    True
    >>> d.cdf(torch.tensor(0.0))[:3]
    tensor([0.5000, 0.5000, 0.5000])

    """

    support = constraints.real

    def rsample(
        self,
        sample_shape: Any = torch.Size(),  # noqa: B008
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw logistic samples; ``generator`` (default: torch's) as ``rng=`` of relaxcat."""
        return relaxcat.logit_relaxed_bernoulli(
            self._logits_for(sample_shape), _tau(self.temperature), rng=generator
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check_sample(value)
        return relaxcat.logit_relaxed_bernoulli_log_prob(value, self.logits, _tau(self.temperature))

    @property
    def mean(self) -> torch.Tensor:
        return self.logits / self.temperature

    @property
    def variance(self) -> torch.Tensor:
        return (
            (math.pi**2 / 3) / torch.as_tensor(self.temperature) ** 2 * torch.ones_like(self.logits)
        )

    def entropy(self) -> torch.Tensor:
        return (2.0 - torch.log(torch.as_tensor(self.temperature))) * torch.ones_like(self.logits)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        self._check_sample(value)
        return torch.sigmoid(value * self.temperature - self.logits)

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        return (self.logits + torch.logit(value)) / self.temperature


class RelaxedBernoulli(_Binary):
    r"""The relaxed Bernoulli (binary Concrete) on [0, 1], soft or straight-through 0/1.

    ``rsample`` is :func:`relaxcat.relaxed_bernoulli` (``hard=True``: exact 0s and 1s with
    the soft sample's gradient). Each sample carries its logit-space form, and ``log_prob``
    of that very tensor is the relaxed density at the soft point, computed from the logit:
    finite in float32 at any temperature, where the soft sample itself may round to exactly
    0 or 1 (for ``hard=True``, as Pyro's straight-through classes do). Other values are
    evaluated with :func:`relaxcat.relaxed_bernoulli_log_prob`. ``cdf`` and ``icdf`` are
    closed forms; the KL divergence to a ``RelaxedBernoulli`` of the same temperature is
    registered (exact: that of the logit-space variables).

    Parameters
    ----------
    temperature : float or torch.Tensor
        Temperature > 0.
    probs : float or torch.Tensor, optional
        Probabilities of 1; exactly one of ``probs`` and ``logits``.
    logits : float or torch.Tensor, optional
        Log-odds.
    hard : bool, default False
        Straight-through 0/1 samples.
    validate_args : bool, optional
        As in ``torch.distributions``.

    Examples
    --------
    >>> import torch
    >>> from relaxcat.torch import RelaxedBernoulli
    >>> d = RelaxedBernoulli(0.1, logits=torch.zeros(10_000))
    >>> y = d.rsample()
    >>> int(((y == 0) | (y == 1)).sum()) > 1000  # on the boundary: infinite density there
    True
    >>> bool(torch.isfinite(d.log_prob(y)).all())
    True

    """

    support = constraints.unit_interval

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
        super().__init__(temperature, probs, logits, validate_args)

    def _options(self) -> dict[str, Any]:
        return {"hard": self.hard}

    def rsample(
        self,
        sample_shape: Any = torch.Size(),  # noqa: B008
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw; equal to ``relaxcat.relaxed_bernoulli(logits, T, hard=..., rng=generator)``."""
        x = self._logits_for(sample_shape)
        tau = _tau(self.temperature)
        noise = self._logistic_noise(x, generator)
        y = relaxcat.relaxed_bernoulli(x, tau, hard=self.hard, noise=noise)
        return _attach(y, _LOGIT_SAMPLE, relaxcat.logit_relaxed_bernoulli(x, tau, noise=noise))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check_sample(value)
        tau = _tau(self.temperature)
        z = _latent(value, _LOGIT_SAMPLE)
        if z is None:
            return relaxcat.relaxed_bernoulli_log_prob(value, self.logits, tau)
        # density of y = sigmoid(z): that of z plus log|dz/dy| = softplus(z) + softplus(-z)
        return relaxcat.logit_relaxed_bernoulli_log_prob(z, self.logits, tau) + (
            softplus(z) + softplus(-z)
        )

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        return relaxcat.relaxed_bernoulli_cdf(value, self.logits, _tau(self.temperature))

    def icdf(self, value: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((self.logits + torch.logit(value)) / self.temperature)


class HardConcrete(_Binary):
    r"""Hard Concrete gates (Louizos et al., 2018): exact 0s and 1s, a density in between.

    ``rsample`` is :func:`relaxcat.hard_concrete`; ``log_prob`` is
    :func:`relaxcat.hard_concrete_log_prob`, the density with respect to Lebesgue measure
    on (0, 1) plus unit atoms at 0 and 1 (so ``exp(log_prob(0))`` is ``P(z = 0)``).
    :meth:`expected_l0` is the closed-form ``P(z != 0)`` (the L0 penalty), and ``cdf`` is
    closed-form. No KL divergence is registered: there is none in closed form.

    Parameters
    ----------
    temperature : float or torch.Tensor
        Temperature > 0 (2/3 in Louizos et al.).
    probs : float or torch.Tensor, optional
        :math:`\sigma(\log\alpha)`; exactly one of ``probs`` and ``logits``.
    logits : float or torch.Tensor, optional
        :math:`\log\alpha`.
    limits : tuple of two floats, default (-0.1, 1.1)
        The stretch :math:`(\gamma, \zeta)`, ``low < 0 < 1 < high``.
    validate_args : bool, optional
        As in ``torch.distributions``.

    Examples
    --------
    >>> import torch
    >>> from relaxcat.torch import HardConcrete
    >>> d = HardConcrete(2 / 3, logits=torch.zeros(3))
    >>> d.expected_l0()
    tensor([0.8318, 0.8318, 0.8318])
    >>> z = d.rsample(torch.Size([100_000]))
    >>> round(float((z != 0).float().mean()), 2)
    0.83

    """

    support = constraints.unit_interval

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
        super().__init__(temperature, probs, logits, validate_args)

    def _options(self) -> dict[str, Any]:
        return {"limits": self.limits}

    def rsample(
        self,
        sample_shape: Any = torch.Size(),  # noqa: B008
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw gates; equal to ``relaxcat.hard_concrete(logits, T, rng=generator)``."""
        return relaxcat.hard_concrete(
            self._logits_for(sample_shape),
            _tau(self.temperature),
            limits=self.limits,
            rng=generator,
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check_sample(value)
        return relaxcat.hard_concrete_log_prob(
            value, self.logits, _tau(self.temperature), limits=self.limits
        )

    def expected_l0(self) -> torch.Tensor:
        """``P(z != 0)`` for each gate, differentiable: sum it for the L0 penalty."""
        return relaxcat.hard_concrete_l0(self.logits, _tau(self.temperature), limits=self.limits)

    def cdf(self, value: torch.Tensor) -> torch.Tensor:
        low, high = self.limits
        s = ((value - low) / (high - low)).clamp(1e-30, 1 - 1e-7)  # 0 <= value < 1 here
        inside = torch.sigmoid(torch.logit(s) * self.temperature - self.logits)
        one = torch.ones_like(inside)
        return torch.where(value < 0, 0 * one, torch.where(value >= 1, one, inside))


# -- categorical relaxations ------------------------------------------------------------


class _Categorical(_Relaxed):
    """Parameters over the last dimension: ``probs`` (normalised) or ``logits`` (log-softmaxed)."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "probs": constraints.simplex,
        "logits": constraints.real_vector,
    }

    def __init__(
        self,
        temperature: Any,
        probs: Any = None,
        logits: Any = None,
        validate_args: bool | None = None,
    ) -> None:
        self._check_one_of(probs, logits)
        if probs is not None:
            if probs.dim() < 1:
                raise ValueError("`probs` parameter must be at least one-dimensional.")
            self.probs = probs / probs.sum(-1, keepdim=True)
            param = self.probs
        else:
            if logits.dim() < 1:
                raise ValueError("`logits` parameter must be at least one-dimensional.")
            self.logits = logits - logits.logsumexp(dim=-1, keepdim=True)
            param = self.logits
        # The samplers take the logits as given: relaxcat.gumbel_softmax(logits, ...) draws
        # the same value bit for bit (normalising first would change the last bits).
        self._raw = logits
        self._param = param
        self.temperature = temperature
        _register_with_pyro(type(self))
        super().__init__(param.size()[:-1], param.size()[-1:], validate_args=validate_args)

    @lazy_property
    def logits(self) -> torch.Tensor:
        return probs_to_logits(self.probs)

    @lazy_property
    def probs(self) -> torch.Tensor:
        return logits_to_probs(self.logits)

    def _expand_extra(self, new: Any, param_shape: torch.Size) -> None:
        new._raw = None if self._raw is None else self._raw.expand(param_shape)

    def _logits_for(self, sample_shape: Any) -> torch.Tensor:
        logits = self.logits if self._raw is None else self._raw
        return logits.expand(self._extended_shape(torch.Size(sample_shape)))


class ExpRelaxedCategorical(_Categorical):
    r"""The logarithm of a Gumbel-softmax sample (ExpConcrete), on the real vectors.

    ``rsample`` is :func:`relaxcat.log_gumbel_softmax` and ``log_prob``
    :func:`relaxcat.exp_concrete_log_prob`, finite wherever the sample is, at any
    temperature: the latent to use for a relaxed categorical at low temperature (its
    ``exp`` is a ``RelaxedOneHotCategorical`` sample). No KL divergence is registered:
    there is none in closed form.

    Parameters
    ----------
    temperature : float or torch.Tensor
        Temperature > 0 (a tensor needs size 1 on the category dimension).
    probs : torch.Tensor, optional
        Category probabilities (normalised along the last dimension); exactly one of
        ``probs`` and ``logits``.
    logits : torch.Tensor, optional
        Unnormalised log-probabilities; ``-inf`` masks a category.
    validate_args : bool, optional
        As in ``torch.distributions``.

    Examples
    --------
    >>> import torch
    >>> from relaxcat.torch import ExpRelaxedCategorical
    >>> d = ExpRelaxedCategorical(0.01, logits=torch.zeros(4))
    >>> x = d.rsample(torch.Size([10_000]))
    >>> bool(torch.isfinite(d.log_prob(x)).all())
    True

    """

    support = constraints.real_vector

    def rsample(
        self,
        sample_shape: Any = torch.Size(),  # noqa: B008
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw; equal to ``relaxcat.log_gumbel_softmax(logits, T, rng=generator)``."""
        return relaxcat.log_gumbel_softmax(
            self._logits_for(sample_shape), _tau(self.temperature), rng=generator
        )

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check_sample(value)
        return relaxcat.exp_concrete_log_prob(value, self.logits, _tau(self.temperature))


class RelaxedOneHotCategorical(_Categorical):
    r"""The Gumbel-softmax (Concrete) distribution on the simplex, soft or one-hot.

    ``rsample`` is :func:`relaxcat.gumbel_softmax` for the same generator, with ``hard``,
    ``estimator`` and ``samples`` as there (``hard=True``: the exact one-hot with the
    estimator's gradient): the same noise, hence the same one-hot samples, and the same soft
    values (bit for bit, except for tensors small enough for relaxcat's NumPy kernel, which
    rounds ``exp`` differently from torch: within a few units in the last place). Each
    sample carries its log-space form (the :func:`relaxcat.log_gumbel_softmax` of the same
    noise), and ``log_prob`` of that very tensor is the Concrete density at the soft point
    computed from it (:func:`relaxcat.exp_concrete_log_prob` minus the sum of the
    log-point): finite in
    float32 at any temperature, where entries of the soft sample underflow to 0 and its
    density from ``y`` alone is infinite. For ``hard=True`` it is the relaxed density at
    the soft companion, as Pyro's straight-through classes do. Other values are evaluated
    with :func:`relaxcat.concrete_log_prob`. No mean, variance or KL divergence: none has a
    closed form.

    Parameters
    ----------
    temperature : float or torch.Tensor
        Temperature > 0 (a tensor needs size 1 on the category dimension).
    probs : torch.Tensor, optional
        Category probabilities; exactly one of ``probs`` and ``logits``.
    logits : torch.Tensor, optional
        Unnormalised log-probabilities; ``-inf`` masks a category.
    hard : bool, default False
        Exact one-hot samples.
    estimator : {"st", "reinmax", "gumbel_rao"}, default "st"
        The gradient of a ``hard=True`` sample, as in :func:`relaxcat.gumbel_softmax`.
    samples : int, default 1
        Conditional draws of ``estimator="gumbel_rao"``.
    validate_args : bool, optional
        As in ``torch.distributions``.

    Examples
    --------
    >>> import torch
    >>> import relaxcat
    >>> from relaxcat.torch import RelaxedOneHotCategorical
    >>> logits = torch.zeros(4)
    >>> d = RelaxedOneHotCategorical(0.1, logits=logits)
    >>> y = d.rsample(torch.Size([10_000]), generator=torch.Generator().manual_seed(0))
    >>> same = relaxcat.gumbel_softmax(
    ...     logits.expand(10_000, 4), 0.1, rng=torch.Generator().manual_seed(0)
    ... )
    >>> bool(torch.equal(y, same)), bool((y == 0).any())
    (True, True)
    >>> bool(torch.isfinite(d.log_prob(y)).all())
    True

    """

    support = constraints.simplex

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
        super().__init__(temperature, probs, logits, validate_args)

    def _options(self) -> dict[str, Any]:
        return {"hard": self.hard, "estimator": self.estimator, "samples": self.samples}

    def rsample(
        self,
        sample_shape: Any = torch.Size(),  # noqa: B008
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw; equal to ``relaxcat.gumbel_softmax(logits, T, hard=..., rng=generator)``."""
        x = self._logits_for(sample_shape)
        tau = _tau(self.temperature)
        options: dict[str, Any] = {"hard": self.hard, "estimator": self.estimator}
        if self.estimator == "gumbel_rao":
            # Its conditional draws follow the sample's noise in the generator's stream: the
            # noise is drawn from a twin of the generator, the sample by the call itself.
            g = relaxcat.gumbel_noise(x, rng=_twin(generator, x.device))
            y = relaxcat.gumbel_softmax(x, tau, rng=generator, samples=self.samples, **options)
        else:
            g = relaxcat.gumbel_noise(x, rng=generator)  # the noise rng=generator would draw
            y = relaxcat.gumbel_softmax(x, tau, noise=g, **options)
        return _attach(y, _LOG_SAMPLE, relaxcat.log_gumbel_softmax(x, tau, noise=g))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        self._check_sample(value)
        tau = _tau(self.temperature)
        log_y = _latent(value, _LOG_SAMPLE)
        if log_y is None:
            return relaxcat.concrete_log_prob(value, self.logits, tau)
        lp = relaxcat.exp_concrete_log_prob(log_y, self.logits, tau)
        # Concrete density = ExpConcrete density - sum(log y); masked entries (-inf) are
        # not part of the distribution.
        return lp - torch.where(log_y == -math.inf, 0.0, log_y).sum(-1)


# -- exact KL divergences ---------------------------------------------------------------


def _same_temperature(p: Any, q: Any) -> bool:
    tp, tq = p.temperature, q.temperature
    if tp is tq:
        return True
    a, b = torch.as_tensor(tp), torch.as_tensor(tq)
    return a.shape == b.shape and bool(torch.equal(a.to(b.dtype), b))


def _logistic_kl(p: _Binary, q: _Binary) -> torch.Tensor:
    r"""KL between logistics of one scale ``1/T``: ``d coth(d/2) - 2``, ``d = (l_q - l_p)``.

    With the same temperature the location difference in units of the scale is
    ``d = logits_q - logits_p``. The relaxed Bernoulli variables are the sigmoids of these,
    and KL is invariant under that bijection, so the same value serves both classes.
    """
    if not _same_temperature(p, q):
        raise NotImplementedError(
            "The KL divergence of relaxed Bernoulli distributions has a closed form only for "
            "equal temperatures; estimate it by Monte Carlo (p.log_prob(x) - q.log_prob(x))."
        )
    a = (q.logits - p.logits).abs()
    small = a < 0.5
    s = torch.where(small, a, torch.ones_like(a))  # each branch sees values it is exact on
    b = torch.where(small, torch.ones_like(a), a)
    s2 = s * s  # the series of x coth(x/2) - 2, to x**10; its next term is < 1e-11 here
    series = s2 * (1 / 6 - s2 * (1 / 360 - s2 * (1 / 15120 - s2 * (1 / 604800 - s2 / 23950080))))
    closed = b + 2 * b / torch.expm1(b) - 2
    return torch.where(small, series, closed)


@register_kl(LogitRelaxedBernoulli, LogitRelaxedBernoulli)
def _kl_logit_relaxed_bernoulli(p: LogitRelaxedBernoulli, q: LogitRelaxedBernoulli) -> Any:
    return _logistic_kl(p, q)


@register_kl(RelaxedBernoulli, RelaxedBernoulli)
def _kl_relaxed_bernoulli(p: RelaxedBernoulli, q: RelaxedBernoulli) -> Any:
    return _logistic_kl(p, q)


# -- drop-in for torch.nn.functional.gumbel_softmax -------------------------------------


def gumbel_softmax(
    logits: torch.Tensor,
    tau: float = 1,
    hard: bool = False,
    eps: float = 1e-10,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    estimator: str = "st",
) -> torch.Tensor:
    r"""``torch.nn.functional.gumbel_softmax``'s signature on relaxcat's sampler.

    ``from relaxcat.torch import gumbel_softmax`` replaces
    ``from torch.nn.functional import gumbel_softmax``: the same positional order
    ``(logits, tau, hard, eps, dim)``, the same defaults, the same result type. The sample
    is :func:`relaxcat.gumbel_softmax` (``axis=dim``, ``rng=generator``), so it equals that
    function's for the same generator, with its exact-tail noise, masked categories and
    estimators.

    Parameters
    ----------
    logits : torch.Tensor
        Unnormalised log-probabilities.
    tau : float or torch.Tensor, default 1
        Temperature > 0.
    hard : bool, default False
        Exact one-hot samples with the ``estimator``'s gradient.
    eps : float, default 1e-10
        Accepted and ignored, as torch does; any other value warns with torch's text.
    dim : int, default -1
        The category dimension.
    generator : torch.Generator, optional
        Source of randomness (default: torch's, so ``torch.manual_seed`` applies).
    estimator : {"st", "reinmax", "gumbel_rao"}, default "st"
        The gradient of a ``hard=True`` sample.

    Returns
    -------
    torch.Tensor
        The sample, shaped, typed and placed like ``logits``.

    Examples
    --------
    >>> import torch
    >>> from relaxcat.torch import gumbel_softmax
    >>> x = torch.randn(2, 5, requires_grad=True)
    >>> y = gumbel_softmax(x, 0.5, True)  # as F.gumbel_softmax(x, 0.5, True)
    >>> y.sum(dim=-1)
    tensor([1., 1.], grad_fn=<SumBackward1>)

    """
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    t = tau if isinstance(tau, torch.Tensor) else float(tau)
    return relaxcat.gumbel_softmax(
        logits,
        t,
        hard=hard,
        axis=dim,
        rng=generator,
        estimator=estimator,  # type: ignore[arg-type]
    )
