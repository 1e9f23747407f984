"""The NumPy kernel of :class:`relaxcat.Philox` noise: the same words, in cache-sized blocks.

``relaxcat/_philox.py`` defines the words on any array-API namespace, one full-size array
per operation. NumPy runs each operation as its own pass over memory, so this kernel does
the same arithmetic on blocks of about 8192 counters that stay in cache, in place, and keeps
the 32-bit words as ``uint32`` views of the ``uint64`` products (the low and high halves),
which saves the shifts and masks. It produces the Gumbel noise of the generic path bit for
bit (``tests/test_philox.py`` holds it to that): the same words, then the same floating
point operations of :func:`relaxcat._noise.exponential_from_words` and
:func:`relaxcat._noise.gumbel_from_exponential`.

It serves the layouts where the positions of each row of seeds run along the trailing
dimensions (one seed for the whole array, or one seed per row of the last axis); others
take the generic path.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import numpy as np

from .._noise import E_MAX, E_MIN
from .._philox import (
    _M0,
    _M1,
    _W0,
    _W1,
    ROUNDS,
    PhiloxSource,
    category_axis,
    contiguous_start,
    key_shape,
    position_dims,
)
from ._threads import LazyPool

#: counters per block: 8192 counters (16384 elements) of a few uint64/uint32 buffers
_BLOCK = 8192
_LITTLE = sys.byteorder == "little"
#: elements from which the blocks are shared among threads (NumPy releases the GIL in its
#: loops); every block is a pure function of its positions, so the values do not depend on
#: the number of threads
PARALLEL_MIN = 1 << 17


def _workers() -> int:
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return min(8, len(cpus) if cpus is not None else (os.cpu_count() or 1))


POOL = LazyPool(_workers, "relaxcat-philox")


class NumpyPhiloxSource(PhiloxSource):
    """:class:`PhiloxSource` on NumPy with a native ``standard_gumbel``."""

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        shape = tuple(shape)
        axis = category_axis(self.axis, len(shape))
        shapes = [
            key_shape(self.key.seed, shape, axis, "seed"),
            key_shape(self.key.offset, shape, axis, "offset"),
        ]
        if not kernel_applies(shape, shapes):
            e = self.standard_exponential(shape, dtype)
            return np.negative(np.log(np.clip(e, E_MIN, E_MAX)))
        parts = [
            p if isinstance(p, int) else np.reshape(p, s)
            for p, s in zip(
                self._parts(), [shapes[0], shapes[0], shapes[1], shapes[1]], strict=True
            )
        ]
        return gumbel_block(shape, parts, shapes, self.next_stream(), np.dtype(dtype))


def kernel_applies(
    shape: tuple[int, ...],
    shapes: list[tuple[int, ...]],
    full_shape: tuple[int, ...] | None = None,
    origin: tuple[int, ...] | None = None,
) -> bool:
    """Whether :func:`gumbel_block` serves a block: trailing positions in one run per row."""
    ndim = len(shape)
    full_shape = shape if full_shape is None else full_shape
    origin = (0,) * ndim if origin is None else origin
    pdims = position_dims(shapes, ndim)
    if not _LITTLE or pdims != list(range(ndim - len(pdims), ndim)):
        return False
    start = contiguous_start(full_shape, origin, shape, pdims)
    length = math.prod([shape[d] for d in pdims])
    return start is not None and length > 0 and start + length + 1 < 2**33


def gumbel_block(
    shape: tuple[int, ...],
    parts: list[Any],
    shapes: list[tuple[int, ...]],
    stream: int,
    dtype: np.dtype,
    full_shape: tuple[int, ...] | None = None,
    origin: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Gumbel noise of a block, where :func:`kernel_applies`.

    ``parts`` (k0, k1, offset lo, offset hi) are ints or arrays of the block, right-aligned,
    as in ``relaxcat._philox.words``.
    """
    ndim = len(shape)
    full_shape = shape if full_shape is None else full_shape
    origin = (0,) * ndim if origin is None else origin
    pdims = position_dims(shapes, ndim)
    start = contiguous_start(full_shape, origin, shape, pdims)
    assert start is not None
    lead = shape[: ndim - len(pdims)]
    rows = math.prod(lead)
    first: tuple[Any, ...] = (Ellipsis, *([0] * len(pdims)))
    words: list[Any] = []
    for p in parts:
        if isinstance(p, int):
            words.append(p)
        else:
            full = (1,) * (ndim - p.ndim) + tuple(p.shape)
            a = np.broadcast_to(np.reshape(p, full)[first], lead)
            words.append(np.ascontiguousarray(a.reshape(rows, 1)).astype(np.uint32))
    out = np.empty((rows, math.prod([shape[d] for d in pdims])), dtype)
    gumbel_rows(out, words, stream, start)
    return out.reshape(shape)


def gumbel_rows(out: np.ndarray, parts: list[Any], stream: int, start: int = 0) -> None:
    """Fill ``out`` (rows, L): row ``r`` gets the noise of positions ``start .. start + L - 1``.

    ``parts`` (k0, k1, offset lo, offset hi) are Python ints or uint32 arrays (rows, 1).
    """
    if start & 1:  # an odd first position: compute from the even one before it
        wider = np.empty((out.shape[0], out.shape[1] + 1), out.dtype)
        gumbel_rows(wider, parts, stream, start - 1)
        out[...] = wider[:, 1:]
        return
    base = start >> 1
    rows, length = out.shape
    pairs = (length + 1) // 2
    rows_per_block = max(1, _BLOCK // pairs)
    step = min(pairs, _BLOCK)
    tasks = [
        (r0, min(rows, r0 + rows_per_block), q0, min(pairs, q0 + step))
        for r0 in range(0, rows, rows_per_block)
        for q0 in range(0, pairs, step)
    ]

    def fill(task: tuple[int, int, int, int]) -> None:
        r0, r1, q0, q1 = task
        sub = [p if isinstance(p, int) else p[r0:r1] for p in parts]
        hi, lo = _block_words(sub, r1 - r0, base + q0, base + q1, stream)
        n = min(length, 2 * q1) - 2 * q0
        out[r0:r1, 2 * q0 : 2 * q0 + n] = _gumbel(hi[:, :n], lo[:, :n], out.dtype)

    if out.size < PARALLEL_MIN or len(tasks) < 2:
        for task in tasks:
            fill(task)
    else:
        list(POOL.get().map(fill, tasks))


def _block_words(
    parts: list[Any], nrows: int, q0: int, q1: int, stream: int
) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) uint32 words of pairs ``q0 .. q1 - 1`` for ``nrows`` rows: (nrows, 2 * n)."""
    shape = (nrows, q1 - q0)
    k0, k1, o_lo, o_hi = parts
    c0 = np.empty(shape, np.uint32)
    c0[...] = np.arange(q0, q1, dtype=np.uint32)
    c1 = np.full(shape, stream << 16, np.uint32)
    c2 = np.empty(shape, np.uint32)
    c2[...] = o_lo
    c3: Any = np.empty(shape, np.uint32)
    c3[...] = o_hi
    products = [np.empty((2, *shape), np.uint64), np.empty((2, *shape), np.uint64)]
    m0, m1 = np.uint64(_M0), np.uint64(_M1)
    key0: Any = k0
    key1: Any = k1
    for r in range(ROUNDS):
        if r:
            key0 = (key0 + _W0) & 0xFFFFFFFF if isinstance(key0, int) else key0 + np.uint32(_W0)
            key1 = (key1 + _W1) & 0xFFFFFFFF if isinstance(key1, int) else key1 + np.uint32(_W1)
        p = products[r % 2]
        np.multiply(c0, m0, out=p[0], dtype=np.uint64)
        np.multiply(c2, m1, out=p[1], dtype=np.uint64)
        halves = p.view(np.uint32)  # (2, rows, 2n): [..., 0::2] low, [..., 1::2] high words
        lo0, hi0 = halves[0, :, 0::2], halves[0, :, 1::2]
        lo1, hi1 = halves[1, :, 0::2], halves[1, :, 1::2]
        np.bitwise_xor(hi1, c1, out=c0)
        np.bitwise_xor(c0, key0, out=c0)
        np.bitwise_xor(hi0, c3, out=c2)
        np.bitwise_xor(c2, key1, out=c2)
        c1, c3 = lo1, lo0  # views into this round's products, read in the next round
    n = shape[1]
    hi = np.empty((nrows, 2 * n), np.uint32)
    lo = np.empty((nrows, 2 * n), np.uint32)
    hi[:, 0::2], hi[:, 1::2] = c0, c2
    lo[:, 0::2], lo[:, 1::2] = c1, c3
    return hi, lo


def _gumbel(hi: np.ndarray, lo: np.ndarray, dtype: Any) -> np.ndarray:
    """``-log(clip(exponential_from_words(hi, lo), E_MIN, E_MAX))``, the same operations."""
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = hi >= 0x80000000
        w = (hi & 0x7FFFFFFF).astype(dtype)
        w *= dtype.type(2.0**-32)
        w += lo.astype(dtype) * dtype.type(2.0**-64)
        w += dtype.type(2.0**-65)
        u = np.subtract(1.0, w)
        c = np.subtract(1.0, u)
        log_t = np.log(np.where(upper, u, w))
        exact = c == 0.0
        lower_tail = np.where(exact, w, -w * log_t / np.where(exact, dtype.type(1.0), c))
        e = np.where(upper, lower_tail, np.negative(log_t, out=log_t))
        np.clip(e, E_MIN, E_MAX, out=e)
        np.log(e, out=e)
        return np.negative(e, out=e)
