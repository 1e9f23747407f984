"""Standard exponential and Gumbel noise with exact tails, from raw random numbers.

relaxcat's Gumbel noise is ``g = -log(E)`` with ``E ~ Exp(1)``. Both tails of ``g`` are tails
of ``E`` near its ends: the upper tail (``g`` large, the rare category that wins) is ``E`` near 0,
the lower tail (``g`` very negative, the favourite that loses) is ``E`` large. A float32 uniform
on the grid ``k * 2**-24`` cuts both: ``E >= 2**-24`` (``g <= 16.6``), and ``U == 0`` gives
``E = inf``. Every source in relaxcat therefore draws ``E`` at 53-bit resolution or finer and
only then rounds it to the compute dtype (float32 has the *relative* precision to hold any
``E``; it is the absolute grid of a float32 uniform that is too coarse):

* NumPy, Dask and array-API libraries: NumPy's float64 ziggurat exponential, cast;
* torch: float64 uniforms (``k * 2**-53``), ``E = -log(max(U, 2**-54))`` in float64, cast;
  large CPU draws: float32 uniforms from 32-bit words, the words in a tail redrawn at 53 bits;
* JAX: two 32-bit words per element, :func:`exponential_from_words`.

The clamp :data:`E_MIN`, :data:`E_MAX` in :func:`gumbel_from_exponential` only keeps the
noise finite: it acts on events of probability about ``2**-53`` per draw (a ziggurat zero),
where it puts ``g`` at 38.8, not 87.3 as the float32 ``smallest_normal`` clamp did. This module
imports no array library; the adapters call it with their namespace.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "E_MAX",
    "E_MIN",
    "U_MIN",
    "clamp_exponential",
    "exponential_from_words",
    "gumbel_from_exponential",
    "numpy_exponential",
]

#: Smallest exponential kept: ``g = -log E <= 38.8``. ``P(g > 38.8)`` is 1.4e-17 per draw.
E_MIN = 2.0**-56
#: Largest exponential kept: ``g >= -4.16``. ``P(E > 64)`` is 1.6e-28 per draw.
E_MAX = 64.0
#: Floor of a 53-bit uniform before its logarithm: ``U == 0`` stands for ``U < 2**-53``.
U_MIN = 2.0**-54

_TWO_M32 = 2.0**-32
_TWO_M64 = 2.0**-64
_TWO_M65 = 2.0**-65


def clamp_exponential(xp: Any, e: Any) -> Any:
    """``E`` clipped to ``[E_MIN, E_MAX]``.

    The bounds are written as literals: ``torch.compile`` turns float globals into symbolic
    inputs, which array-api-compat's ``clip`` cannot take under ``fullgraph=True``.
    """
    return xp.clip(e, 2.0**-56, 64.0)


def gumbel_from_exponential(xp: Any, e: Any) -> Any:
    """``-log(E)``, with ``E`` clamped to ``[E_MIN, E_MAX]`` so the noise is always finite."""
    return -xp.log(clamp_exponential(xp, e))


def exponential_from_words(xp: Any, hi: Any, lo: Any, dtype: Any) -> Any:
    """Exp(1) draws from two uniform 32-bit words per element, exact in both tails.

    The 64 bits give a uniform ``U`` on the grid ``(j + 1/2) * 2**-64``: the top bit of ``hi``
    says which half of (0, 1) it lies in, the other 63 bits give its distance
    ``W = ((hi mod 2**31) * 2**32 + lo + 1/2) * 2**-64`` from the nearer end, ``0 < W < 1/2``.
    Then ``E = -log(U)`` is ``-log(W)`` in the lower half and ``-log1p(-W)`` in the upper half,
    so both ends of ``E`` are computed from a ``W`` that keeps its full relative precision:
    ``E`` ranges over ``[2**-65, 45.1]`` with no zero and no infinity, in float32 as in
    float64. ``hi`` and ``lo`` are unsigned 32-bit arrays of one shape; the result has that
    shape and ``dtype``.
    """
    upper = (hi >> 31) == 1
    high = xp.astype(hi & 0x7FFFFFFF, dtype)
    w = high * _TWO_M32 + xp.astype(lo, dtype) * _TWO_M64 + _TWO_M65
    # -log1p(-w) as Kahan's -w * log(u) / c with u = 1 - w, c = 1 - u (exact here): it needs
    # only an accurate log (XLA's float64 log1p on the CPU is off by up to 120 ulp), and one
    # logarithm serves both halves: log(u) above 1/2, log(w) below. c is written 1 - u, not
    # -(u - 1): XLA rewrites (1 - w) - 1 as -w under jit, which would make the formula
    # -log(u), 0 wherever u rounds to 1. Where c is 0, -log(1 - w) is w within the rounding.
    u = 1.0 - w
    c = 1.0 - u
    log_t = xp.log(xp.where(upper, u, w))
    exact = c == 0.0
    lower_tail = xp.where(exact, w, -w * log_t / xp.where(exact, 1.0, c))
    return xp.where(upper, lower_tail, -log_t)


#: Block size of :func:`numpy_exponential`: a float64 scratch that stays in cache.
_BLOCK = 1 << 14


def numpy_exponential(
    generator: np.random.Generator, shape: tuple[int, ...], dtype: Any, out: Any = None
) -> np.ndarray:
    """Exp(1) draws of a NumPy generator, at float64 resolution, in ``dtype``, >= ``E_MIN``.

    NumPy's float32 ziggurat returns exact zeros about once in 8 million draws and lies on a
    grid of about 1e-7 near 0; its float64 ziggurat has a grid of about 1e-15 there. The draws
    are made in float64 blocks and rounded into the result, so the values are those of one
    ``standard_exponential(size=shape, dtype=float64)`` call on the same generator, rounded,
    and the extra memory is one block. The float64 ziggurat never exceeds 45, so only the
    lower clamp can act.
    """
    if out is None:
        if math.prod(shape) <= _BLOCK:  # one draw and one rounding pass: fewer Python steps
            draws = generator.standard_exponential(shape)
            return np.maximum(draws, E_MIN, out=draws).astype(dtype, copy=False)
        out = np.empty(shape, dtype)
    dtype = out.dtype
    flat = out.reshape(-1)  # a view: ``out`` is contiguous
    if dtype == np.float64:
        generator.standard_exponential(out=flat)
        np.maximum(flat, E_MIN, out=flat)
        return out
    n = flat.size
    scratch = np.empty(min(n, _BLOCK), np.float64)
    for start in range(0, n, _BLOCK):
        block = scratch[: min(_BLOCK, n - start)]
        generator.standard_exponential(out=block)
        np.maximum(block, E_MIN, out=flat[start : start + block.size], casting="same_kind")
    return out
