"""NumPy adapter: NumPy's own ``Generator`` (float64 ziggurat exponentials), no autodiff.

The kernel works in place on one buffer: the exponential draws become ``x + g`` and then
the sample, so a call allocates one array the size of the logits (plus row reductions).
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from .._noise import numpy_exponential
from .._philox import Philox
from ._base import Backend, NoiseSource, NumpyGeneratorSource
from ._numpy_philox import NumpyPhiloxSource

if TYPE_CHECKING:
    from .._core import Prepared

_SMALL = 1 << 14


class NumpyBackend(Backend):
    name = "numpy"
    rng_libraries = ("numpy",)
    rng_hint = "an int seed or a numpy.random.Generator"

    def __init__(self) -> None:
        super().__init__(xp_numpy)

    def device(self, x: Any) -> Any:
        return "cpu"

    def _numpy_source(self, generator: np.random.Generator, device: Any) -> NoiseSource:
        return NumpyGeneratorSource(generator)  # already NumPy: no conversion

    def noise_source(self, rng: object, device: Any, axis: int = -1) -> NoiseSource:
        if type(rng) is np.random.Generator:  # the common case, without the general checks
            return NumpyGeneratorSource(rng)
        return super().noise_source(rng, device, axis)

    def philox_source(self, key: Philox, device: Any, axis: int) -> NoiseSource:
        return NumpyPhiloxSource(self, key, device, axis)

    # -- kernels ---------------------------------------------------------------------
    def fused_sample(self, p: Prepared, source: NoiseSource | None, noise: Any, hard: bool) -> Any:
        if noise is not None:
            s = np.add(p.x, noise)
        elif isinstance(source, NumpyPhiloxSource):
            g = source.standard_gumbel(p.x.shape, p.dtype)
            s = np.add(p.x, g, out=g if g.flags.writeable else None)
        elif isinstance(source, NumpyGeneratorSource) and source.xp is None:
            # float64 draws rounded into the buffer, floored at E_MIN; the float64 ziggurat
            # stays below E_MAX, so this is the generic clip(E, E_MIN, E_MAX).
            e = numpy_exponential(source.generator, p.x.shape, p.dtype)
            s = x_minus_log_(p.x, e)
        else:
            return None
        return sample_(s, p, hard, noise is not None)


def x_minus_log_(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``x + g`` with ``g = -log(e)``, written over ``e`` (``x - log e`` is exactly ``x + g``)."""
    np.log(e, out=e)
    return np.subtract(x, e, out=e)


def sample_(s: np.ndarray, p: Prepared, hard: bool, noise_given: bool) -> np.ndarray:
    """The generic sample from ``s = x + g``, over ``s`` in place (soft) or one-hot (hard).

    A row maximum that is not finite is diagnosed by ``p.check_rows``, which raises. The
    rows are screened by the sum of their maxima in the compute dtype: a sum that overflows
    although every maximum is finite only costs the exact check, which then passes. The
    reductions are called on the ufuncs directly: ``ndarray.max`` and ``.sum`` go through
    Python-level wrappers that cost as much as the arithmetic on a small array.
    """
    axis = p.axis
    with np.errstate(over="ignore", under="ignore"):
        m = np.maximum.reduce(s, axis=axis, keepdims=True)
        if not math.isfinite(float(np.add.reduce(m, axis=None))):  # inf: re-checked
            p.check_rows(m, noise_given)
        if hard:
            index = s.argmax(axis=axis, keepdims=True)
            if s.size <= _SMALL:  # fewer Python-level steps
                return np.equal(axis_positions(s.shape[axis], axis, s.ndim), index).astype(s.dtype)
            y = np.zeros(s.shape, s.dtype)  # no full-size temporary beyond the output
            np.put_along_axis(y, index, 1.0, axis)
            return y
        np.subtract(s, m, out=s)
        np.divide(s, p.tau, out=s)
        np.exp(s, out=s)
        return np.divide(s, np.add.reduce(s, axis=axis, keepdims=True), out=s)


@functools.lru_cache(maxsize=64)
def axis_positions(n: int, axis: int, ndim: int) -> np.ndarray:
    """``0 .. n-1`` along ``axis`` of an ``ndim``-d array, size 1 elsewhere (read-only)."""
    shape = [1] * ndim
    shape[axis] = n
    positions = np.arange(n).reshape(shape)
    positions.flags.writeable = False
    return positions
