"""Temperature schedules for training with Gumbel-softmax samples."""

from __future__ import annotations

import math
import numbers
from typing import Any, overload

import numpy as np

from ._backends import Array, backend_of

__all__ = ["anneal_tau"]


def _check_number(value: object, name: str, *, positive: bool) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a Python number; got {type(value).__name__}.")
    number = float(value)
    ok = 0.0 < number < math.inf if positive else 0.0 <= number < math.inf
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}={value!r}: it must be a finite number {bound}.")
    return number


@overload
def anneal_tau(
    step: float, *, tau0: float = ..., rate: float = ..., tau_min: float = ...
) -> float: ...
@overload
def anneal_tau(
    step: Array, *, tau0: float = ..., rate: float = ..., tau_min: float = ...
) -> Array: ...


def anneal_tau(step: Any, *, tau0: float = 1.0, rate: float = 1e-4, tau_min: float = 0.5) -> Any:
    r"""The annealed temperature :math:`\max(\tau_{min}, \tau_0 e^{-r t})` at training step ``t``.

    This is the schedule of Jang et al. (2017): the temperature decays exponentially from
    ``tau0`` and is held at ``tau_min`` from step :math:`\ln(\tau_0/\tau_{min}) / r` on.

    Parameters
    ----------
    step : int, float or array
        The training step :math:`t \ge 0`. A Python (or NumPy scalar) number gives a Python
        float. An array of any supported library (integer or real floating) gives an array
        of the same library, shape and device, computed without reading its values, so a
        step counter inside ``jax.jit`` or ``torch.compile`` works. Integer arrays give the
        library's default floating dtype; floating arrays keep their dtype.
    tau0 : float, default 1.0
        Temperature at step 0, > 0.
    rate : float, default 1e-4
        Decay rate :math:`r \ge 0` per step (the paper used values from 1e-5 to 1e-4).
    tau_min : float, default 0.5
        Lower bound of the temperature, > 0 and <= ``tau0``.

    Returns
    -------
    float or array
        The temperature, ready to pass as ``tau`` to :func:`gumbel_softmax`.

    Raises
    ------
    TypeError
        For a ``step`` that is neither a real number nor a real array, or parameters that
        are not Python numbers.
    ValueError
        For a negative, infinite or NaN Python ``step`` (array steps are not inspected), a
        ``tau0`` or ``tau_min`` that is not a finite number > 0, a ``tau_min`` greater than
        ``tau0``, or a ``rate`` that is not finite and >= 0.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> relaxcat.anneal_tau(0)
    1.0
    >>> round(relaxcat.anneal_tau(5000, tau0=2.0), 4)
    1.2131
    >>> relaxcat.anneal_tau(10**6)
    0.5
    >>> relaxcat.anneal_tau(np.array([0, 5000, 20000]), tau0=2.0)
    array([2.        , 1.21306132, 0.5       ])

    """
    tau0 = _check_number(tau0, "tau0", positive=True)
    rate = _check_number(rate, "rate", positive=False)
    tau_min = _check_number(tau_min, "tau_min", positive=True)
    if tau_min > tau0:
        raise ValueError(
            f"tau_min={tau_min!r} is greater than tau0={tau0!r}: the schedule would start "
            f"below its floor and return tau_min throughout. Pass tau_min <= tau0."
        )
    if isinstance(step, numbers.Real) and not isinstance(step, (bool, np.bool_)):
        t = float(step)
        if not 0.0 <= t < math.inf:
            raise ValueError(f"step={step!r}: the training step must be a finite number >= 0.")
        return max(tau_min, tau0 * math.exp(-rate * t))
    if isinstance(step, (bool, np.bool_)):
        raise TypeError("step must be a number or an array; got a bool.")
    try:
        backend = backend_of(step, "step")
    except TypeError:
        raise TypeError(
            f"step must be a number or an array of training steps; got {type(step).__name__}."
        ) from None
    xp = backend.xp
    if not xp.isdtype(step.dtype, ("integral", "real floating")):
        raise TypeError(f"step has dtype {step.dtype}; it must be an integer or real floating.")
    if not xp.isdtype(step.dtype, "real floating"):
        step = xp.astype(step, _default_float(xp))
    return xp.clip(tau0 * xp.exp(-rate * step), min=tau_min)


def _default_float(xp: Any) -> Any:
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return xp.float64
    return info().default_dtypes()["real floating"]
