"""Argument checks shared by every public function.

Each check raises an exception that names the argument and says how to fix it. Checks that
need array *values* run only where the adapter says values can be read cheaply (not inside
``jax.jit`` or ``torch.compile``, not on a GPU, not on a lazy Dask graph).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any

import numpy as np

from ._backends import Array, Backend, backend_of
from ._backends._base import with_article


class _NoTau:
    def __repr__(self) -> str:
        return "NO_TAU"


#: Passed as ``tau`` by the internal callers that have no temperature (the exact samplers,
#: the KL divergence), so that ``tau=None`` from a user is an error rather than "no tau".
NO_TAU = _NoTau()


def same_library(a: Backend, b: Backend) -> bool:
    """Whether two adapters are of one library (one namespace; normally the same object)."""
    return a is b or a.xp is b.xp


def normalize_axis(axis: object, ndim: int, argname: str = "logits") -> int:
    if type(axis) is int and -ndim <= axis < ndim:  # the common case, cheaply
        return axis % ndim
    if not isinstance(axis, numbers.Integral) or isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"axis must be an int; got {type(axis).__name__}.")
    if ndim == 0:
        raise ValueError(
            f"{argname} is a 0-d array: it needs at least one axis of categories "
            f"(reshape it to (1,) or (n,))."
        )
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(
            f"axis={axis} is out of range for {argname} with {ndim} dimension(s); "
            f"use an axis in [{-ndim}, {ndim - 1}]."
        )
    return axis % ndim


def compute_dtype(backend: Backend, dtype: Any, argname: str = "logits") -> Any:
    """The dtype to compute in: float32 for half precision, else ``dtype`` itself."""
    try:
        return backend.compute_dtypes[dtype]
    except (KeyError, TypeError):
        pass
    xp = backend.xp
    if not xp.isdtype(dtype, "real floating"):
        # Each library's own spelling: torch tensors have no astype, the standard's is a function.
        cast = {
            "numpy": "{0}.astype(np.float32)",
            "cupy": "{0}.astype(cupy.float32)",
            "jax": "{0}.astype(jnp.float32)",
            "dask": "{0}.astype(np.float32)",
            "torch": "{0}.float() or {0}.to(torch.float32)",
        }.get(backend.name, "{1}.astype({0}, {1}.float32)")
        raise TypeError(
            f"{argname} has dtype {dtype}; it must be a real floating dtype (float16, bfloat16, "
            f"float32 or float64). Cast it first, e.g. {cast.format(argname, backend.name)}."
        )
    result = xp.float32 if xp.finfo(dtype).bits < 32 else dtype
    with contextlib.suppress(TypeError):  # an unhashable dtype object is not cached
        backend.compute_dtypes[dtype] = result
    return result


def check_categories(n: int, argname: str = "logits", axis: int = -1) -> None:
    if n == 0:
        raise ValueError(f"{argname} has no categories along axis {axis} (size 0).")


#: Temperatures in this range are supported in float32 and in float64, the two compute
#: dtypes (see :func:`tau_range`): a Python ``tau`` inside it needs no look-up of the limits.
_TAU_LO = float(np.finfo(np.float32).smallest_normal)
_TAU_HI = 1.0 / _TAU_LO


def tau_range(backend: Backend, dtype: Any) -> tuple[float, float]:
    """The temperatures the compute ``dtype`` supports: ``[tiny, 1 / tiny]``.

    ``tiny`` is the smallest normal number. Below it a temperature is subnormal (JAX and
    GPUs flush it to 0, so ``(s - max) / tau`` is NaN) or rounds to 0; above ``1 / tiny``
    its reciprocal, which XLA multiplies by in place of a division, is subnormal, and
    ``-inf * 0`` is NaN for a masked category (above the largest finite number ``tau``
    itself is ``inf``).
    """
    tiny = float(backend.xp.finfo(dtype).smallest_normal)
    return tiny, 1.0 / tiny


def _range_text(backend: Backend, dtype: Any) -> str:
    lo, hi = tau_range(backend, dtype)
    name = str(dtype).rsplit(".", 1)[-1].replace("dtype('", "").replace("')", "")
    return (
        f"[{lo:.4g}, {hi:.4g}] for the {name} computation (a temperature and its reciprocal "
        f"must be normal {name} numbers; at tau={lo:.4g} a soft sample is already one-hot "
        f"up to rounding: use hard=True for the exact one-hot, or float64 logits for a "
        f"wider range)"
    )


def _all_within(backend: Backend, lo: float, hi: float, x: Array) -> Array:
    """Whether every entry lies in ``[lo, hi]`` (NaN does not)."""
    return backend.xp.all((x >= lo) & (x <= hi))


def check_tau(
    tau: Any, backend: Backend, logits: Array, dtype: Any, axis: int | None, argname: str = "tau"
) -> Any:
    """Return ``tau`` as a Python float or as an array of ``dtype`` on the logits' device.

    ``axis`` is the category axis, an axis of ``logits`` (a non-negative one is counted from
    the logits' first axis), along which an array ``tau`` must have size 1; ``None`` for
    element-wise distributions (the relaxed Bernoulli), where it need only broadcast. An
    array ``tau`` may have more dimensions than the logits, or size > 1 where they have
    size 1: the result is then the broadcast of the two, and the returned ``tau`` has the
    broadcast's number of dimensions. Temperatures must lie in :func:`tau_range`.
    """
    if type(tau) is float and _TAU_LO <= tau <= _TAU_HI:  # the common case, cheaply
        return tau
    if isinstance(tau, numbers.Real) and not isinstance(tau, (bool, np.bool_)):
        value = float(tau)
        if not (0.0 < value < math.inf):
            raise ValueError(
                f"{argname}={tau!r}: the temperature must be a finite number > 0 "
                f"(tau -> 0 is the one-hot limit: use hard=True or sample_categorical for it)."
            )
        lo, hi = tau_range(backend, dtype)
        if not lo <= value <= hi:
            raise ValueError(
                f"{argname}={tau!r} is outside the supported range of temperatures "
                f"{_range_text(backend, dtype)}."
            )
        return value
    if isinstance(tau, (bool, np.bool_)):
        raise TypeError(f"{argname} must be a number > 0 or an array; got a bool.")
    if tau is None:
        raise TypeError(
            f"{argname}=None: the temperature is required; pass a number > 0 (e.g. "
            f"{argname}=1.0) or {with_article(backend.name)} array."
        )
    try:
        tau_backend = backend_of(tau, argname)
    except TypeError:
        raise TypeError(
            f"{argname} must be a number > 0 or {with_article(backend.name)} array that "
            f"broadcasts against the logits; got {type(tau).__name__}."
        ) from None
    if not same_library(tau_backend, backend):
        raise TypeError(
            f"{argname} is {with_article(tau_backend.name)} array but the logits are "
            f"{with_article(backend.name)} array; pass a Python number or "
            f"{with_article(backend.name)} array."
        )
    xp = backend.xp
    if not xp.isdtype(tau.dtype, "real floating"):
        tau = xp.astype(tau, dtype)
    shape = tuple(logits.shape)
    tshape = tuple(tau.shape)
    ndim = max(len(shape), len(tshape))
    padded_logits = (1,) * (ndim - len(shape)) + shape
    padded = (1,) * (ndim - len(tshape)) + tshape
    if any(1 != t != s != 1 for t, s in zip(padded, padded_logits, strict=True)):
        raise ValueError(
            f"{argname} has shape {tshape}, which does not broadcast against logits of shape "
            f"{shape}."
        )
    if axis is not None:
        tail = axis - len(shape) if axis >= 0 else axis  # counted from the end
        if padded[tail] != 1:
            wanted = list(np.broadcast_shapes(padded, padded_logits))
            wanted[tail] = 1
            raise ValueError(
                f"{argname} has shape {tshape}, which varies along the category axis "
                f"({ndim + tail} of the broadcast shape) of logits {shape}; a temperature is "
                f"one number per distribution. Give it size 1 on that axis, e.g. shape "
                f"{tuple(wanted)}."
            )
    if tau.dtype != dtype:
        with backend.errstate():  # out of range overflows to inf, rejected below
            tau = xp.astype(tau, dtype)
    if backend.values_readable(tau):
        lo, hi = tau_range(backend, dtype)
        if not bool(backend.compiled(_all_within, (0, 1, 2))(backend, lo, hi, tau)):
            raise ValueError(
                f"{argname} contains values that are <= 0, NaN, or (in {dtype}) outside the "
                f"supported range of temperatures {_range_text(backend, dtype)}."
            )
    return backend.align(xp.reshape(tau, padded), backend.device(logits))


def _all_finite(backend: Backend, x: Array) -> Array:
    return backend.xp.all(backend.xp.isfinite(x))


def check_finite_rows(
    backend: Backend, row_max: Array, logits: Array, axis: int, noise_given: bool
) -> None:
    """Raise for rows with no valid sample, where values can be read.

    ``row_max`` is the maximum of ``logits + noise`` along the category axis. It is finite
    exactly when the row has no NaN and no ``+inf`` and at least one unmasked category.
    """
    xp = backend.xp
    if not backend.values_readable(row_max):
        return
    if bool(backend.compiled(_all_finite, (0,))(backend, row_max)):
        return
    if bool(xp.any(xp.isnan(logits))):
        raise ValueError("logits contain NaN; every entry must be a real number or -inf (masked).")
    if bool(xp.any(logits == math.inf)):
        raise ValueError(
            "logits contain +inf; entries must be finite, or -inf for a masked category."
        )
    if bool(xp.any(xp.all(logits == -math.inf, axis=axis))):
        raise ValueError(
            "logits have a row in which every category is masked (-inf): such a row has no "
            "valid sample. Leave at least one category unmasked in every row."
        )
    source = "noise contains NaN or inf" if noise_given else "the noise overflowed"
    raise ValueError(
        f"{source}: logits + noise is not finite in some row. Noise must be finite "
        f"standard-Gumbel draws (see relaxcat.gumbel_noise)."
    )


def check_noise(
    noise: Any, backend: Backend, logits: Array, dtype: Any, shape: tuple[int, ...] | None = None
) -> Array:
    """Validate explicit ``noise`` and return it in the compute ``dtype``."""
    try:
        noise_backend = backend_of(noise, "noise")
    except TypeError:
        raise TypeError(
            f"noise must be {with_article(backend.name)} array of standard-Gumbel draws; got "
            f"{type(noise).__name__}."
        ) from None
    if not same_library(noise_backend, backend):
        raise TypeError(
            f"noise is {with_article(noise_backend.name)} array but the logits are "
            f"{with_article(backend.name)} array; pass noise from the same library "
            f"(relaxcat.gumbel_noise(logits) makes it)."
        )
    expected = tuple(logits.shape) if shape is None else shape
    got = tuple(noise.shape)
    if got != expected:
        raise ValueError(f"noise has shape {got}; it must have shape {expected}.")
    xp = backend.xp
    if not xp.isdtype(noise.dtype, "real floating"):
        raise TypeError(f"noise has dtype {noise.dtype}; it must be a real floating array.")
    noise_device = backend.device(noise)
    logits_device = backend.device(logits)
    if not backend.same_device(noise_device, logits_device):
        raise ValueError(
            f"noise is on device {noise_device} but the logits are on {logits_device}; "
            f"move it to the logits' device."
        )
    if noise.dtype != dtype:
        noise = xp.astype(noise, dtype)
    return backend.align(noise, logits_device)


#: Gradient estimators for ``hard=True`` samples, in the order the docs list them.
ESTIMATORS = ("st", "reinmax", "gumbel_rao")


def check_estimator(estimator: object, samples: object, hard: bool) -> tuple[str, int]:
    """Validate ``estimator`` and ``samples``; return them as ``(name, int)``."""
    if type(estimator) is str and estimator == "st" and type(samples) is int and samples == 1:
        return "st", 1  # the defaults, on every call: no message is built
    valid = ", ".join(repr(name) for name in ESTIMATORS)
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a string, one of {valid}; got {estimator!r}.")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator={estimator!r} is not a known estimator; use one of {valid}.")
    if not isinstance(samples, numbers.Integral) or isinstance(samples, (bool, np.bool_)):
        raise TypeError(f"samples must be an int >= 1; got {samples!r}.")
    samples = int(samples)
    if samples < 1:
        raise ValueError(f"samples={samples}: the number of conditional draws must be >= 1.")
    if estimator != "st" and not hard:
        raise ValueError(
            f"estimator={estimator!r} is a gradient estimator for the one-hot sample and "
            f"applies only with hard=True; the soft sample (hard=False) has its exact "
            f"reparameterisation gradient. Pass hard=True, or leave estimator='st'."
        )
    if samples != 1 and estimator != "gumbel_rao":
        raise ValueError(
            f"samples={samples} applies only to estimator='gumbel_rao' (the number of "
            f"conditional Gumbel draws it averages); estimator={estimator!r} takes samples=1."
        )
    return estimator, samples


# -- checks for the distribution functions ----------------------------------------------


def check_k(k: object, n: int, axis: int) -> int:
    """``k`` as an int in ``1..n`` (``n`` categories along ``axis``)."""
    if not isinstance(k, numbers.Integral) or isinstance(k, (bool, np.bool_)):
        raise TypeError(f"k must be an int (the subset size); got {type(k).__name__}.")
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(
            f"k={k} is out of range: with n={n} categories along axis {axis}, k must be "
            f"between 1 and {n}."
        )
    return k


def check_method(method: object, valid: tuple[str, ...]) -> str:
    if method not in valid:
        raise ValueError(f"method={method!r} is not known; use one of {', '.join(valid)}.")
    return str(method)


def _row_flags(backend: Backend, axis: int, x: Array) -> tuple[Array, Array, Array]:
    """(any NaN, any +inf, any row entirely -inf), as one computation.

    A tuple, not one stacked array: on eager JAX, indexing an array is a computation of
    its own, compiled for every new shape.
    """
    xp = backend.xp
    return (
        xp.any(xp.isnan(x)),
        xp.any(x == math.inf),
        xp.any(xp.all(x == -math.inf, axis=axis)),
    )


def check_logits_rows(backend: Backend, logits: Array, axis: int, argname: str = "logits") -> None:
    """Raise for NaN, ``+inf`` or an entirely masked row, where values can be read."""
    if not backend.values_readable(logits):
        return
    flags = backend.compiled(_row_flags, (0, 1))(backend, axis, logits)
    has_nan, has_inf, all_masked = (bool(flag) for flag in flags)
    if has_nan:
        raise ValueError(f"{argname} contain NaN; every entry must be a real number or -inf.")
    if has_inf:
        raise ValueError(
            f"{argname} contain +inf; entries must be finite, or -inf for a masked category."
        )
    if all_masked:
        raise ValueError(
            f"{argname} have a row in which every category is masked (-inf); leave at least "
            f"one category unmasked in every row."
        )


def _any_nan(backend: Backend, x: Array) -> Array:
    return backend.xp.any(backend.xp.isnan(x))


def check_no_nan(backend: Backend, x: Array, argname: str) -> None:
    """Raise for NaN entries, where values can be read."""
    if backend.values_readable(x) and bool(backend.compiled(_any_nan, (0,))(backend, x)):
        raise ValueError(f"{argname} contains NaN.")


def _simplex_deviation(backend: Backend, axis: int, y: Array) -> Array:
    xp = backend.xp
    return xp.max(xp.abs(xp.sum(y, axis=axis) - 1.0))


def check_simplex(backend: Backend, y: Array, axis: int, dtype: Any, argname: str = "y") -> None:
    """Raise if a row of ``y`` does not sum to 1 along ``axis``, where values can be read.

    The sum is taken in the compute ``dtype``. The tolerance is ``8 n eps + 2**-8`` for
    ``n`` categories and the machine epsilon of ``y``'s own dtype: ``8 n eps`` bounds the
    rounding of a softmax computed in that dtype, so a sample of
    :func:`relaxcat.gumbel_softmax` always passes; ``2**-8`` admits points rounded to half
    precision (at most ``2**-9`` off in bfloat16) and then cast up, a float32 sample
    evaluated in float64, and the small steps of finite differences.
    """
    shape = tuple(y.shape)
    if not backend.values_readable(y) or math.prod(shape) == 0:
        return
    xp = backend.xp
    tol = 8.0 * shape[axis] * float(xp.finfo(y.dtype).eps) + 2.0**-8
    yc = y if y.dtype == dtype else xp.astype(y, dtype)
    if float(backend.compiled(_simplex_deviation, (0, 1))(backend, axis, yc)) <= tol:
        return
    sums = xp.sum(yc, axis=axis)
    bad = xp.reshape(xp.logical_not(xp.abs(sums - 1.0) <= tol), (-1,))
    first = int(xp.argmax(xp.astype(bad, xp.int8)))
    total = float(xp.reshape(sums, (-1,))[first])
    row = tuple(int(i) for i in np.unravel_index(first, tuple(sums.shape)))
    where = f"row {row}" if row else "its row"
    raise ValueError(
        f"{argname} is not a point of the simplex: {where} (categories along axis {axis}) "
        f"sums to {total!r}, not 1 within {tol:.3g} ({y.dtype}). Normalise it, e.g. "
        f"{argname} / {argname}.sum(axis={axis}, keepdims=True)."
    )


def _fewest_unmasked(backend: Backend, axis: int, x: Array) -> Array:
    xp = backend.xp
    return xp.min(xp.count_nonzero(x != -math.inf, axis=axis))


def check_enough_unmasked(backend: Backend, logits: Array, k: int, axis: int) -> None:
    """Raise if a row has fewer than ``k`` unmasked categories, where values can be read."""
    if k == 1 or not backend.values_readable(logits) or math.prod(tuple(logits.shape)) == 0:
        return  # (an empty batch has no row to check)
    fewest = int(backend.compiled(_fewest_unmasked, (0, 1))(backend, axis, logits))
    if fewest < k:
        raise ValueError(
            f"k={k} but a row of logits has only {fewest} unmasked (finite) categories; k "
            f"distinct categories cannot be drawn from it. Lower k or unmask categories."
        )


def broadcast_pair(
    backend: Backend, a: Array, b: Array, names: tuple[str, str], axis: int | None
) -> tuple[Array, Array, int | None]:
    """Broadcast ``a`` and ``b`` (same library and device) against each other.

    With a category ``axis`` (an axis of the broadcast shape), both must have the same
    number of categories there: a category axis is never broadcast. Returns the broadcast
    arrays and the normalised axis.
    """
    other = backend_of(a, names[0])
    if not same_library(other, backend):
        raise TypeError(
            f"{names[0]} is {with_article(other.name)} array but {names[1]} is "
            f"{with_article(backend.name)} array; pass arrays of one library."
        )
    da, db = backend.device(a), backend.device(b)
    if not backend.same_device(da, db):
        raise ValueError(f"{names[0]} is on device {da} but {names[1]} is on {db}.")
    sa, sb = tuple(a.shape), tuple(b.shape)
    ndim = max(len(sa), len(sb))
    if axis is not None:
        axis = normalize_axis(axis, ndim, f"the broadcast of {names[0]} and {names[1]}")
        pa = (1,) * (ndim - len(sa)) + sa
        pb = (1,) * (ndim - len(sb)) + sb
        if pa[axis] != pb[axis]:
            raise ValueError(
                f"{names[0]} has {pa[axis]} categories along axis {axis} but {names[1]} has "
                f"{pb[axis]}; a category axis is not broadcast, so they must be equal."
            )
        check_categories(pa[axis], names[1], axis)
    try:
        shape = np.broadcast_shapes(sa, sb)
    except ValueError:
        raise ValueError(
            f"{names[0]} of shape {sa} and {names[1]} of shape {sb} do not broadcast against "
            f"each other."
        ) from None
    xp = backend.xp
    if sa != shape:
        a = xp.broadcast_to(a, shape)
    if sb != shape:
        b = xp.broadcast_to(b, shape)
    return a, b, axis
