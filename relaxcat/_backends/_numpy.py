"""NumPy adapter: NumPy's own ``Generator`` (float64 ziggurat exponentials), no autodiff.

The fast path works in place on one buffer: the exponential draws become ``x + g`` and then
the sample, so a call allocates one array the size of the logits (plus row reductions).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from .._noise import numpy_exponential
from ._base import Backend, NoiseSource, NumpyGeneratorSource

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

    def generator(self, rng: object) -> np.random.Generator:
        """The NumPy ``Generator`` that ``rng`` stands for (same rules as noise_source)."""
        if type(rng) is np.random.Generator:
            return rng
        source: Any = self.noise_source(rng, None)
        return source.generator

    # -- fast paths ------------------------------------------------------------------
    def fast_gumbel_softmax(self, prepared: Any, rng: object, noise: object, hard: bool) -> Any:
        p = prepared
        if noise is None:
            # float64 draws rounded into the buffer, floored at E_MIN; the float64 ziggurat
            # stays below E_MAX, so this is the generic clip(E, E_MIN, E_MAX).
            e = numpy_exponential(self.generator(rng), p.x.shape, p.dtype)
            s = x_minus_log_(p.x, e)
        else:
            from .._validation import check_noise

            s = np.add(p.x, check_noise(noise, self, p.logits, p.dtype))
        return p.out(sample_(s, p, hard, lambda m: p.check_rows(m, noise is not None)))


def x_minus_log_(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``x + g`` with ``g = -log(e)``, written over ``e`` (``x - log e`` is exactly ``x + g``)."""
    np.log(e, out=e)
    return np.subtract(x, e, out=e)


def sample_(
    s: np.ndarray, p: Any, hard: bool, diagnose: Callable[[np.ndarray], None]
) -> np.ndarray:
    """The generic sample from ``s = x + g``, over ``s`` in place (soft) or one-hot (hard).

    ``diagnose(row_max)`` is called when a row maximum is not finite; it raises. The
    reductions are called on the ufuncs directly: ``ndarray.max`` and ``.sum`` go through
    Python-level wrappers that cost as much as the arithmetic on a small array.
    """
    axis = p.axis
    with np.errstate(over="ignore", under="ignore"):
        m = np.maximum.reduce(s, axis=axis, keepdims=True)
        if not math.isfinite(float(np.add.reduce(m, axis=None, dtype=np.float64))):
            diagnose(m)
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
