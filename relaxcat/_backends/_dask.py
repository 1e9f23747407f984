"""Dask adapter: lazy graphs, Dask's own generator, noise aligned with the logits' chunks.

A relaxcat call on a Dask array builds a graph and returns it:

* nothing is computed during the call: :meth:`DaskBackend.values_readable` is False, so no
  argument check reads a value (a ``bool()`` or ``float()`` of a Dask array would compute
  it), and nothing else in relaxcat asks for one;
* the noise is drawn by ``dask.array.random.Generator`` (``default_rng``), which puts one
  task per chunk in the graph, each with its own child stream spawned from the generator's
  seed sequence. The draws are laid out with the logits' chunks, so noise and logits line
  up chunk for chunk; a seed reproduces the sample for the same chunking, and another
  chunking gives another sample. The seeds are fixed in the graph, so computing a result
  twice gives the same values;
* the placement of a Dask array, what relaxcat calls its device, is its chunking
  (:class:`Chunking`): noise, one-hot positions, an explicit ``noise=`` and an array
  ``tau`` are all laid out with the logits' chunks, so every result has the logits' chunks.

The category axis may be split across chunks. The agnostic core then runs unchanged on
array-api-compat's Dask namespace: Dask's reductions (max, sum, argmax with ``keepdims``)
combine the chunks of a row, and argmax's combination keeps the first index among ties.
What the namespace lacks is an ``arange`` chunked like the category axis; it is
:meth:`DaskBackend.positions`. And one of its functions is replaced (:class:`DaskNamespace`):
``clip`` with scalar bounds, which array-api-compat broadcasts into full-size bound arrays
that make the scheduler hold every chunk of the logits in memory at once. Dask arrays of
other chunk types (CuPy, sparse) are not supported: relaxcat draws NumPy noise.

:meth:`Backend.errstate` cannot reach a Dask graph: it is evaluated later, in worker
threads and processes, outside any context of the call. Where the other backends overflow
silently to ``-inf`` (logits within a few orders of magnitude of the dtype's largest value,
or gaps of ~1e26 at ``tau`` ~ 1e-12), NumPy warns in the task; the values are the same.
"""

from __future__ import annotations

import math
import types
from typing import Any

import array_api_compat.dask.array as xp_dask
import array_api_compat.numpy as xp_numpy
import dask.array as da
import numpy as np

from .._noise import E_MAX, E_MIN, exponential_from_words
from .._philox import MAX_STREAMS, Philox, _host_split, category_axis, key_shape, words
from ._base import Backend, NoiseSource, library_of
from ._numpy_philox import gumbel_block, kernel_applies

Chunks = tuple[tuple[int, ...], ...]


class Chunking:
    """Where a Dask array lives: its shape and chunks (the adapter's "device").

    :meth:`chunks_for` lays out other arrays so that they combine with this one block for
    block: dimensions that match (counted from the right, as in broadcasting) take these
    chunks, broadcast dimensions of size 1 stay one chunk, and extra leading dimensions
    (the ``samples`` of Gumbel-Rao, say) are one chunk each.
    """

    __slots__ = ("chunks", "shape")

    def __init__(self, shape: tuple[int, ...], chunks: Chunks) -> None:
        self.shape = shape
        self.chunks = chunks

    def __repr__(self) -> str:
        return f"Chunking(shape={self.shape}, chunks={self.chunks})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chunking) and other.chunks == self.chunks

    def __hash__(self) -> int:
        return hash(self.chunks)

    def chunks_for(self, shape: tuple[int, ...]) -> Any:
        """Chunks for an array of ``shape`` that combines with this layout."""
        if shape == self.shape:
            return self.chunks
        lead = len(shape) - len(self.shape)
        if lead < 0:
            return "auto"
        out: list[Any] = [(d,) for d in shape[:lead]]
        for d, own, chunks in zip(shape[lead:], self.shape, self.chunks, strict=True):
            if d == own:
                out.append(chunks)
            elif d == 1:
                out.append((1,))
            else:
                return "auto"
        return tuple(out)


def clip(x: Any, /, min: Any = None, max: Any = None) -> Any:
    """The array-API ``clip``, chunk by chunk where the bounds are Python numbers.

    array-api-compat's version broadcasts scalar bounds to arrays of the full shape;
    clipping the 200-million-element noise with them held every chunk in memory at once
    (46 chunks of the logits' size, against 4 with this version). Array bounds go to
    array-api-compat's version. The result has the dtype of ``x``, as the standard says.
    """
    if isinstance(min, (int, float, type(None))) and isinstance(max, (int, float, type(None))):
        if min is None and max is None:
            return x
        y = x.clip(min, max)
        return y if y.dtype == x.dtype else y.astype(x.dtype)
    compat: Any = xp_dask  # its clip is not in the module's typed interface
    return compat.clip(x, min=min, max=max)


def _empty_aware(name: str) -> Any:
    """The namespace's ``max`` or ``min``, also for arrays with no elements.

    Dask's tree reduction fails at compute time ("zero-size array to reduction operation
    maximum which has no identity") on a ``(0, n)`` batch, where NumPy returns an empty
    result. Where the result has no elements either, its values do not matter: ``sum``
    gives it with the right shape and chunks.
    """
    compat: Any = xp_dask  # sum and astype are not in the module's typed interface
    reduce = getattr(compat, name)

    def reduction(x: Any, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        if 0 in x.shape and axis is not None:
            axes = (axis,) if isinstance(axis, int) else tuple(axis)
            kept = [d for i, d in enumerate(x.shape) if i not in {a % x.ndim for a in axes}]
            if 0 in kept:
                return compat.astype(compat.sum(x, axis=axis, keepdims=keepdims), x.dtype)
        return reduce(x, axis=axis, keepdims=keepdims)

    reduction.__name__ = name
    return staticmethod(reduction)


class DaskNamespace(types.ModuleType):
    """array-api-compat's Dask namespace: :func:`clip` above, ``max``/``min`` for empty batches."""

    clip = staticmethod(clip)
    max = _empty_aware("max")
    min = _empty_aware("min")

    def __init__(self) -> None:
        super().__init__("relaxcat._backends._dask.namespace", DaskNamespace.__doc__)

    def __getattr__(self, name: str) -> Any:
        return getattr(xp_dask, name)


class DaskSource:
    """Exp(1) draws from a Dask ``Generator``, chunked like the logits.

    Drawn in float64 and rounded chunk by chunk: the float64 ziggurat resolves both tails of
    ``E`` (see ``relaxcat/_noise.py``), the float32 one returns exact zeros.
    """

    def __init__(self, generator: da.random.Generator, layout: Chunking) -> None:
        self.generator = generator
        self.layout = layout

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        chunks = self.layout.chunks_for(shape)
        e = self.generator.standard_exponential(size=shape, dtype=np.float64, chunks=chunks)
        return e.astype(np.float32) if np.dtype(dtype) == np.float32 else e


class DaskPhiloxSource:
    """Exp(1) draws of a :class:`relaxcat.Philox` key, one NumPy task per chunk.

    Each chunk computes the words of its own positions in the whole array
    (``relaxcat._philox.words`` with the chunk's origin), so any chunking gives the values
    of NumPy's single array. Seed and offset arrays (NumPy or Dask) are laid out with the
    chunks of the batch dimensions they cover.
    """

    def __init__(self, key: Philox, layout: Chunking, axis: int) -> None:
        self.key = key
        self.layout = layout
        self.axis = axis
        self.stream = 0

    def skip(self) -> None:
        self.stream += 1

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._map(shape, dtype, "exponential")

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._map(shape, dtype, "gumbel")

    def words(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """The ``(hi, lo)`` words of the next stream (two graphs of one draw; for tests)."""
        hi = self._map(shape, np.uint64, "hi")
        self.stream -= 1
        return hi, self._map(shape, np.uint64, "lo")

    def _map(self, shape: tuple[int, ...], dtype: Any, what: str) -> Any:
        if self.stream >= MAX_STREAMS:
            raise ValueError(f"a Philox key has {MAX_STREAMS} streams per call.")
        stream = self.stream
        self.stream += 1
        shape = tuple(shape)
        ndim = len(shape)
        axis = category_axis(self.axis, ndim)
        chunks = da.core.normalize_chunks(self.layout.chunks_for(shape), shape, dtype=dtype)
        key_shapes = [
            key_shape(self.key.seed, shape, axis, "seed"),
            key_shape(self.key.offset, shape, axis, "offset"),
        ]
        args: list[Any] = [da.empty(shape, chunks=chunks, dtype=np.uint8)]
        named = ((self.key.seed, "seed"), (self.key.offset, "offset"))
        for (v, name), s in zip(named, key_shapes, strict=True):
            if isinstance(v, int):
                continue
            if not isinstance(v, (np.ndarray, da.Array)):
                raise TypeError(
                    f"Philox {name} is a {type(v).__module__}.{type(v).__name__} but the logits "
                    f"are a Dask array; pass a Python int, a NumPy array or a Dask array."
                )
            full = (1,) * (ndim - len(s)) + s
            own = tuple(c if n != 1 else (1,) for c, n in zip(chunks, full, strict=True))
            if isinstance(v, np.ndarray):
                lo, hi = _host_split(v, name)
                v = da.from_array(np.stack([lo, hi]).reshape((2, *full)), chunks=((2,), *own))
            else:
                v = da.stack([v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF]).reshape((2, *full))
                v = v.rechunk(((2,), *own))
            args.append(v[0])
            args.append(v[1])
        seed_given = not isinstance(self.key.seed, int)
        offset_given = not isinstance(self.key.offset, int)
        seed, offset = self.key.seed, self.key.offset

        def block(template: np.ndarray, *arrays: np.ndarray, block_info: Any = None) -> Any:
            origin = tuple(start for start, _ in block_info[0]["array-location"])
            block_shape = tuple(template.shape)
            it = iter(arrays)
            parts: list[Any] = []
            for given, value in ((seed_given, seed), (offset_given, offset)):
                if given:
                    parts += [next(it).astype(np.uint64), next(it).astype(np.uint64)]
                else:
                    parts += [value & 0xFFFFFFFF, value >> 32]
            if what == "gumbel":
                if kernel_applies(block_shape, key_shapes, shape, origin):
                    return gumbel_block(
                        block_shape, parts, key_shapes, stream, np.dtype(dtype), shape, origin
                    )
                e = words_exponential(block_shape, parts, origin)
                return np.negative(np.log(np.clip(e, E_MIN, E_MAX)))
            if what == "exponential":
                return words_exponential(block_shape, parts, origin)
            hi, lo = words(
                xp_numpy, "uint64", block_shape, parts, key_shapes, stream, None, shape, origin
            )
            return hi if what == "hi" else lo

        def words_exponential(block_shape: tuple[int, ...], parts: list[Any], origin: Any) -> Any:
            hi, lo = words(
                xp_numpy, "uint64", block_shape, parts, key_shapes, stream, None, shape, origin
            )
            return exponential_from_words(xp_numpy, hi, lo, dtype)

        return da.map_blocks(
            block, *args, dtype=dtype, chunks=chunks, meta=np.empty((0,) * ndim, dtype)
        )


_RNG_HINT = (
    "an int seed, a dask.array.random.Generator (dask.array.random.default_rng(seed)) or a "
    "numpy.random.Generator"
)


class DaskBackend(Backend):
    name = "dask"
    rng_libraries = ("dask", "numpy")
    rng_hint = _RNG_HINT

    def __init__(self) -> None:
        super().__init__(DaskNamespace())

    # -- devices ---------------------------------------------------------------------
    def device(self, x: Any) -> Chunking:
        chunks = x.chunks
        if any(math.isnan(c) for dim in chunks for c in dim):
            raise ValueError(
                f"a Dask array of shape {x.shape} has unknown chunk sizes (NaN); relaxcat needs "
                f"the chunk sizes of every Dask array passed to it. Call .compute_chunk_sizes() "
                f"on it first."
            )
        if not isinstance(x._meta, np.ndarray):
            raise TypeError(
                f"relaxcat supports Dask arrays of NumPy chunks; this one holds "
                f"{library_of(x._meta)} chunks ({type(x._meta).__name__})."
            )
        return Chunking(tuple(x.shape), chunks)

    def same_device(self, a: Any, b: Any) -> bool:
        return True  # all in the cluster's memory; chunks are aligned by ``align``

    def align(self, a: Any, device: Any) -> Any:
        chunks = device.chunks_for(tuple(a.shape))
        if chunks == "auto" or chunks == a.chunks:
            return a
        return a.rechunk(chunks)

    def positions(self, n: int, axis: int, ndim: int, dtype: Any, device: Any) -> Any:
        index = tuple(slice(None) if d == axis else None for d in range(ndim))
        lead = len(device.shape) - ndim  # device may be that of a stack of such arrays
        if lead < 0 or device.shape[lead + axis] != n:
            return da.arange(n, dtype=dtype)[index]
        shape, chunks = device.shape[lead:], device.chunks[lead:]
        positions = da.arange(n, dtype=dtype, chunks=chunks[axis])[index]
        # Broadcast (as views, block by block) to the logits' chunks: compared with the
        # argmax, a (1, n) array would make Dask warn that the number of chunks grows.
        return da.broadcast_to(positions, shape, chunks=chunks)

    # -- values ----------------------------------------------------------------------
    def values_readable(self, x: Any) -> bool:
        return False  # reading a value would compute the graph

    # -- random numbers --------------------------------------------------------------
    def philox_source(self, key: Philox, device: Any, axis: int) -> NoiseSource:
        return DaskPhiloxSource(key, device, axis)

    def default_source(self, device: Any) -> NoiseSource:
        return DaskSource(da.random.default_rng(), device)

    def seeded_source(self, seed: int, device: Any) -> NoiseSource:
        return DaskSource(da.random.default_rng(seed), device)

    def wrap_generator(self, rng: Any, device: Any) -> NoiseSource:
        if isinstance(rng, (da.random.Generator, np.random.Generator)):
            return DaskSource(da.random.default_rng(rng), device)
        raise TypeError(
            f"rng is a {type(rng).__module__}.{type(rng).__name__}; pass {_RNG_HINT} "
            f"(legacy RandomState objects are not accepted)."
        )
