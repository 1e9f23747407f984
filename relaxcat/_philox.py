"""Portable counter-based noise: Philox4x32-10 written once on the array-API namespace.

A :class:`Philox` key makes the noise of every element a function of (seed, offset, stream,
position) alone, so every library, device, chunking and sharding draws the same bits. The
counter layout is documented in ``docs/guide/reproducible.md`` precisely enough to
reproduce the bits elsewhere; in short, for the element at position ``p``:

* key ``(k0, k1) = (seed mod 2**32, seed >> 32)``;
* counter ``(c0, c1, c2, c3) = (q mod 2**32, (q >> 32) + stream * 2**16, offset mod 2**32,
  offset >> 32)`` with ``q = p >> 1`` (one counter serves two neighbouring positions);
* the output words ``(x0, x1, x2, x3)``: an even ``p`` takes ``(hi, lo) = (x0, x1)``, an odd
  ``p`` takes ``(x2, x3)``; then ``E = exponential_from_words(hi, lo)`` and ``g = -log E``.

The *position* of an element is its index in C order among the elements that share its
seed and its offset: with one seed for the whole array, its flat index; with one seed per
row, its category index (so a row's noise does not depend on the batch it is in).

Integer arithmetic is done in one of three word types, whichever the library has: unsigned
64-bit words (the 32x32-bit product is exact), signed 64-bit words (torch, which lacks
unsigned arithmetic: the multiplier is split in 16-bit halves so no product reaches
2**63), or unsigned 32-bit words (JAX without x64: both factors split in 16-bit halves).
The three give identical words. This module imports no array library.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._noise import exponential_from_words

__all__ = ["Philox", "PhiloxSource", "philox4x32"]

_MASK = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57  # Philox4x32 multipliers
_W0, _W1 = 0x9E3779B9, 0xBB67AE85  # Weyl key increments
ROUNDS = 10
#: streams are the top 16 bits of counter word 1; positions get 49 bits (48 bits of pairs)
MAX_STREAMS = 1 << 16
MAX_POSITIONS = 1 << 49

#: word kinds: "uint64", "int64" (torch), "uint32" (JAX without x64)
WORD_KINDS = ("uint64", "int64", "uint32")


class Philox:
    """A portable random key: the same noise from one seed on every library and device.

    Pass it as ``rng=`` to :func:`gumbel_noise` and to every sampler. The noise of an element
    depends only on ``seed``, ``offset`` and the element's position, never on the library
    (NumPy, PyTorch on CPU or CUDA, JAX under ``jit``/``vmap``/sharding, CuPy, Dask,
    array-API libraries), the device, the number of threads, Dask's chunks or JAX's
    sharding. It is Philox4x32-10 (Salmon et al. 2011), the generator of cuRAND and of
    torch's CUDA generator, computed with the array library's own integer operations.

    A ``Philox`` is a value, like a JAX key: the same object gives the same noise at every
    call. For fresh noise each step, make a new one with ``offset=step`` (or
    :meth:`advance`); nothing advances behind your back, so a call is a pure function of
    its arguments under ``jit``, ``vmap``, CUDA graphs and replays.

    Parameters
    ----------
    seed : int or integer array
        A Python int in ``[0, 2**64)``, or an integer array (of the logits' library, or
        NumPy) with one seed per row: the logits' shape without the category axis, or a
        shape that broadcasts to it. An element's noise then depends on its row's seed and
        its category index only, not on the row's place in the batch or the batch size.
        Rows given the same seed (by broadcasting) and the same offset get different noise:
        positions are counted over all elements that share a seed and an offset.
        Negative array values are an error where values can be read, and are otherwise
        taken modulo ``2**64`` (``2**32`` for 32-bit arrays).
    offset : int or integer array, default 0
        A second key, e.g. the training step or the decoding position: a Python int in
        ``[0, 2**64)`` or an integer array shaped like an array ``seed`` (one per row). Under
        ``jax.jit`` both may be traced arrays; on CUDA, device tensors.

    Notes
    -----
    One call that draws several arrays (Gumbel-Rao's conditional draws,
    ``relaxed_topk(method="max")``, ``relaxed_bernoulli``'s two Gumbel draws are one array)
    uses stream 0 for the first array it draws, stream 1 for the next, and so on, of the
    same key; a draw of shape ``(m, *shape)`` is one array whose leading index is part of
    the position. The counter layout is in the guide's "Reproducible sampling" page.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]))
    >>> key = relaxcat.Philox(42)
    >>> relaxcat.sample_categorical(logits, rng=key)
    array([0, 0])

    One seed per row: each row keeps its sample in any batch.

    >>> seeds = np.array([7, 8])
    >>> a = relaxcat.gumbel_noise(logits, rng=relaxcat.Philox(seeds))
    >>> b = relaxcat.gumbel_noise(logits[1:], rng=relaxcat.Philox(seeds[1:]))
    >>> bool((a[1:] == b).all())
    True

    """

    __slots__ = ("offset", "seed")

    def __init__(self, seed: Any, /, *, offset: Any = 0) -> None:
        self.seed = _check_key_part(seed, "seed")
        self.offset = _check_key_part(offset, "offset")

    def __repr__(self) -> str:
        def show(v: Any) -> str:
            return str(v) if isinstance(v, int) else f"<{type(v).__name__} of shape {_shape(v)}>"

        return f"Philox({show(self.seed)}, offset={show(self.offset)})"

    def advance(self, steps: Any = 1) -> Philox:
        """The key ``steps`` offsets further on: ``Philox(seed, offset=offset + steps)``.

        Parameters
        ----------
        steps : int or integer array, default 1
            How far to move the offset (an int offset wraps modulo ``2**64``).

        Returns
        -------
        Philox
            A new key; this one is unchanged.

        Examples
        --------
        >>> import relaxcat
        >>> relaxcat.Philox(3).advance()
        Philox(3, offset=1)

        """
        offset = self.offset + steps
        if isinstance(offset, int):
            offset %= 2**64
        return Philox(self.seed, offset=offset)


def _shape(v: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in v.shape)


def _check_key_part(v: Any, name: str) -> Any:
    """A Python int in [0, 2**64), or an integer array (kept as given)."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"Philox {name} must be an int or an integer array, not a bool.")
    if isinstance(v, numbers.Integral):
        value = int(v)
        if not 0 <= value < 2**64:
            raise ValueError(
                f"Philox {name}={value} is outside [0, 2**64); reduce it first, e.g. "
                f"{name} % 2**64."
            )
        return value
    dtype = getattr(v, "dtype", None)
    shape = getattr(v, "shape", None)
    if dtype is None or shape is None:
        raise TypeError(
            f"Philox {name} must be a Python int or an integer array; got "
            f"{type(v).__module__}.{type(v).__qualname__}."
        )
    if isinstance(v, np.ndarray):
        integral = v.dtype.kind in "iu"
    else:
        import array_api_compat as aac

        integral = aac.array_namespace(v).isdtype(dtype, "integral")
    if not integral:
        raise TypeError(
            f"Philox {name} must be an integer array; got dtype {dtype}. Convert it, e.g. "
            f"with .astype(int64)."
        )
    return v


# -- the rounds -------------------------------------------------------------------------


def _mulhilo(xp: Any, kind: str, m: Any, a: Any) -> tuple[Any, Any]:
    """High and low 32-bit words of ``m * a`` for a 32-bit constant ``m`` and words ``a``.

    For ``kind == "uint32"``, ``m`` and its halves come as arrays (see :func:`philox4x32`).
    """
    if isinstance(a, int):
        product = int(m) * a
        return product >> 32, product & _MASK
    if kind == "uint64":
        product = a * m  # exact: both factors are below 2**32
        return product >> 32, product & _MASK
    if kind == "int64":  # products below 2**48: no signed overflow
        t1, t0 = a * (m >> 16), a * (m & 0xFFFF)
        return (t1 + (t0 >> 16)) >> 16, (((t1 & 0xFFFF) << 16) + t0) & _MASK
    # uint32: every partial product below 2**32; the low word wraps modulo 2**32 exactly
    m1, m0 = m >> 16, m & 0xFFFF
    a1, a0 = a >> 16, a & 0xFFFF
    p01, p10 = a0 * m1, a1 * m0
    carry = ((p01 & 0xFFFF) + (p10 & 0xFFFF) + ((a0 * m0) >> 16)) >> 16
    return a1 * m1 + (p01 >> 16) + (p10 >> 16) + carry, a * m


def philox4x32(
    xp: Any, kind: str, counter: tuple[Any, Any, Any, Any], key: tuple[Any, Any]
) -> tuple[Any, Any, Any, Any]:
    """Philox4x32-10 of ``counter`` under ``key``; words are Python ints or arrays of ``kind``.

    Arrays broadcast against each other; the result words have the broadcast shape. With
    Python ints in and out it is the reference of the known-answer tests.
    """
    c0, c1, c2, c3 = counter
    k0, k1 = key
    m0: Any = _M0
    m1: Any = _M1
    w0: Any = _W0
    w1: Any = _W1
    if kind == "uint32" and xp is not None:
        # 32-bit words: constants as uint32 arrays (JAX reads a Python int above 2**31 - 1
        # as an overflowing int32), and additions wrap by themselves.
        def u32(v: Any) -> Any:
            return xp.asarray(v, dtype=xp.uint32) if isinstance(v, int) else v

        c0, c1, c2, c3, k0, k1, m0, m1, w0, w1 = map(u32, (c0, c1, c2, c3, k0, k1, m0, m1, w0, w1))
    for r in range(ROUNDS):
        if r:
            k0, k1 = k0 + w0, k1 + w1
            if kind != "uint32" or xp is None:
                k0, k1 = k0 & _MASK, k1 & _MASK
        hi0, lo0 = _mulhilo(xp, kind, m0, c0)
        hi1, lo1 = _mulhilo(xp, kind, m1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


# -- the source --------------------------------------------------------------------------


def word_dtype(xp: Any, kind: str) -> Any:
    return getattr(xp, kind)


def split64(xp: Any, kind: str, v: Any, name: str, readable: bool) -> tuple[Any, Any]:
    """Low and high 32-bit words of a seed or an offset (an int, or an array of ``xp``)."""
    if isinstance(v, int):
        return v & _MASK, v >> 32
    if readable and bool(xp.any(v < 0)):
        raise ValueError(
            f"Philox {name} holds negative values; seeds and offsets must be >= 0 (reduce "
            f"them first, e.g. {name} % 2**63)."
        )
    wide = xp.iinfo(v.dtype).bits == 64
    if kind == "uint32":
        if wide:  # NumPy input on JAX without x64: split on the host
            raise AssertionError("64-bit words reach the uint32 path only through NumPy")
        return xp.astype(v, xp.uint32), 0
    dtype = word_dtype(xp, kind)
    w = xp.astype(v, dtype)  # int64 -> uint64 keeps the bit pattern (mod 2**64)
    if not wide:
        if xp.iinfo(v.dtype).min < 0:
            w = w & _MASK  # a negative int32 as a 32-bit pattern
        return w, 0
    return w & _MASK, (w >> 32) & _MASK


def _host_split(v: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Low and high words of a NumPy seed or offset array, as uint32 arrays."""
    if v.dtype.kind == "i" and bool((v < 0).any()):
        raise ValueError(
            f"Philox {name} holds negative values; seeds and offsets must be >= 0 (reduce "
            f"them first, e.g. {name} % 2**63)."
        )
    w = v.astype(np.uint64)
    return (w & _MASK).astype(np.uint32), (w >> np.uint64(32)).astype(np.uint32)


def key_shape(part: Any, shape: tuple[int, ...], axis: int, name: str) -> tuple[int, ...]:
    """Shape of a seed/offset array with the category axis inserted, right-aligned to ``shape``.

    ``axis`` is negative. The array must broadcast to ``shape`` without the category axis.
    """
    if isinstance(part, int):
        return ()
    own = _shape(part)
    after = -axis - 1  # dimensions of ``shape`` after the category axis
    batch = shape[: len(shape) + axis] + shape[len(shape) + axis + 1 :]
    try:
        full = np.broadcast_shapes(own, batch)
    except ValueError:
        full = None
    if full != batch:
        raise ValueError(
            f"Philox {name} of shape {own} does not broadcast to the batch shape {batch} "
            f"(the shape {shape} without its category axis {axis}); pass one {name} per row, "
            f"of shape {batch}, or a shape that broadcasts to it."
        )
    if len(own) <= after:
        return own
    return (*own[: len(own) - after], 1, *own[len(own) - after :])


def position_dims(shapes: list[tuple[int, ...]], ndim: int) -> list[int]:
    """The dimensions along which every key part is broadcast: positions count along them."""
    dims = []
    for d in range(ndim):
        back = ndim - d
        if all(len(s) < back or s[len(s) - back] == 1 for s in shapes):
            dims.append(d)
    return dims


class PhiloxSource:
    """Exp(1) draws of a :class:`Philox` key on the array-API namespace ``xp``.

    Draw ``i`` of one call uses stream ``i``. ``axis`` (negative) is the category axis of
    every shape drawn, for per-row seeds.
    """

    def __init__(self, backend: Any, key: Philox, device: Any, axis: int) -> None:
        self.backend = backend
        self.xp = backend.xp
        self.kind = backend.philox_words()
        self.key = key
        self.device = device
        self.axis = axis
        self.stream = 0

    def skip(self) -> None:
        """Leave a stream unused (the draw that explicit ``noise=`` replaced)."""
        self.stream += 1

    def _parts(self) -> tuple[Any, Any, Any, Any]:
        """``k0, k1, o_lo, o_hi``: ints, or arrays of ``xp`` in the word dtype."""
        out: list[Any] = []
        backend = self.backend
        for v, name in ((self.key.seed, "seed"), (self.key.offset, "offset")):
            if isinstance(v, int):
                out += [v & _MASK, v >> 32]
            elif isinstance(v, np.ndarray) and not _is_namespace_numpy(self.xp):
                lo, hi = _host_split(v, name)
                dtype = word_dtype(self.xp, self.kind)
                out += [self.xp.asarray(w, dtype=dtype, device=self.device) for w in (lo, hi)]
            else:
                from ._backends import backend_of
                from ._backends._base import with_article

                if backend_of(v, name) is not backend:
                    raise TypeError(
                        f"Philox {name} is {with_article(backend_of(v, name).name)} array but the "
                        f"logits are {with_article(backend.name)} array; pass a Python int, a "
                        f"NumPy array or an array of the logits' library."
                    )
                out += split64(self.xp, self.kind, v, name, backend.key_readable(v))
        return out[0], out[1], out[2], out[3]

    def next_stream(self) -> int:
        stream = self.stream
        if stream >= MAX_STREAMS:
            raise ValueError(f"a Philox key has {MAX_STREAMS} streams per call; draw {stream}.")
        self.stream += 1
        return stream

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        hi, lo = self.words(shape)
        return exponential_from_words(self.xp, hi, lo, dtype)

    def key_shapes(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of the seed and of the offset, laid out for an array of ``shape``."""
        axis = category_axis(self.axis, len(shape))
        return (
            key_shape(self.key.seed, shape, axis, "seed"),
            key_shape(self.key.offset, shape, axis, "offset"),
        )

    def words(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """The ``(hi, lo)`` words of the next stream for an array of ``shape``."""
        stream = self.next_stream()
        shape = tuple(shape)
        shapes = list(self.key_shapes(shape))
        part_shapes = [shapes[0], shapes[0], shapes[1], shapes[1]]
        parts = [
            p if isinstance(p, int) else self.xp.reshape(p, s)
            for p, s in zip(self._parts(), part_shapes, strict=True)
        ]
        return words(self.xp, self.kind, shape, parts, shapes, stream, self.device)


def is_philox_source(source: object) -> bool:
    """Whether ``source`` draws from a :class:`Philox` key (on any backend)."""
    return isinstance(getattr(source, "key", None), Philox)


def category_axis(axis: int, ndim: int) -> int:
    """``axis`` (negative) if ``ndim``-d arrays have it, else -1 (the last axis, if any)."""
    return axis if -ndim <= axis < 0 else -1


def _is_namespace_numpy(xp: Any) -> bool:
    return getattr(xp, "__name__", "") in ("numpy", "array_api_compat.numpy")


def words(
    xp: Any,
    kind: str,
    shape: tuple[int, ...],
    parts: list[Any],
    shapes: list[tuple[int, ...]],
    stream: int,
    device: Any,
    full_shape: tuple[int, ...] | None = None,
    origin: tuple[int, ...] | None = None,
) -> tuple[Any, Any]:
    """The ``(hi, lo)`` words of every element of ``shape``; ``parts`` are k0, k1, o_lo, o_hi.

    The position dimensions are moved to the end, where positions are ``0 .. L - 1`` in C
    order, computed for pairs of positions; the result is moved back. ``shape`` may be a
    block at ``origin`` of an array of ``full_shape`` (a Dask chunk): its positions are
    those of the full array.
    """
    ndim = len(shape)
    full_shape = shape if full_shape is None else full_shape
    origin = (0,) * ndim if origin is None else origin
    pdims = position_dims(shapes, ndim)
    total = math.prod([full_shape[d] for d in pdims])
    if total > MAX_POSITIONS or (kind == "uint32" and total > 2**33):
        raise ValueError(
            f"a Philox draw of shape {full_shape} has {total} positions per seed; the most is "
            f"{MAX_POSITIONS if kind != 'uint32' else 2**33} (on JAX without x64: 2**33). Use "
            f"one seed per row."
        )
    start = contiguous_start(full_shape, origin, shape, pdims)
    if start is None:
        aligned = [p if isinstance(p, int) else _aligned(xp, p, ndim) for p in parts]
        return words_at(xp, kind, full_shape, origin, shape, aligned, shapes, stream, device)
    lead = [d for d in range(ndim) if d not in pdims]
    perm = lead + pdims
    length = math.prod([shape[d] for d in pdims])
    lead_shape = tuple(shape[d] for d in lead)
    moved = []
    for p in parts:
        if not isinstance(p, int):
            p = _aligned(xp, p, ndim)
            kept = tuple(int(p.shape[d]) for d in lead)
            p = xp.reshape(xp.permute_dims(p, tuple(perm)), (*kept, 1))
        moved.append(p)
    hi, lo = run(xp, kind, moved, start, length, len(lead_shape), stream, device)
    hi = xp.reshape(hi, (*_broadcast_lead(hi, lead_shape), *(shape[d] for d in pdims)))
    lo = xp.reshape(lo, tuple(hi.shape))
    if perm != list(range(ndim)):
        inverse = tuple(int(i) for i in np.argsort(perm))
        hi, lo = xp.permute_dims(hi, inverse), xp.permute_dims(lo, inverse)
    if tuple(hi.shape) != shape:
        hi, lo = xp.broadcast_to(hi, shape), xp.broadcast_to(lo, shape)
    return hi, lo


def _aligned(xp: Any, p: Any, ndim: int) -> Any:
    """``p`` with leading dimensions of size 1 up to ``ndim``."""
    shape = _shape(p)
    return p if len(shape) == ndim else xp.reshape(p, (1,) * (ndim - len(shape)) + shape)


def _broadcast_lead(a: Any, lead_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The lead shape that ``a`` (of shape ``lead + (L,)``) actually has."""
    return tuple(int(d) for d in a.shape[: len(lead_shape)])


def run(
    xp: Any,
    kind: str,
    parts: list[Any],
    start: int,
    length: int,
    nlead: int,
    stream: int,
    device: Any,
) -> tuple[Any, Any]:
    """Words of positions ``start .. start + length - 1``: arrays of shape ``lead + (length,)``.

    ``parts`` (k0, k1, o_lo, o_hi) are ints or arrays of shape ``lead + (1,)``.
    """
    dtype = word_dtype(xp, kind)
    q0, q1 = start >> 1, (start + length - 1) >> 1 if length else start >> 1
    npairs = q1 - q0 + 1 if length else 0
    q = xp.arange(q0, q0 + npairs, dtype=dtype, device=device)
    q = xp.reshape(q, (1,) * nlead + (npairs,))
    if kind == "uint32":
        c0, c1 = q, stream << 16
    else:
        c0, c1 = q & _MASK, (q >> 32) | (stream << 16)
    k0, k1, o_lo, o_hi = parts
    x0, x1, x2, x3 = philox4x32(xp, kind, (c0, c1, o_lo, o_hi), (k0, k1))
    x0, x1, x2, x3 = xp.broadcast_arrays(x0, x1, x2, x3)
    lead = tuple(x0.shape[:-1])
    hi = xp.reshape(xp.stack((x0, x2), axis=-1), (*lead, 2 * npairs))
    lo = xp.reshape(xp.stack((x1, x3), axis=-1), (*lead, 2 * npairs))
    first = start & 1
    if first or 2 * npairs != length:
        hi, lo = hi[..., first : first + length], lo[..., first : first + length]
    return hi, lo


def strides(shape: tuple[int, ...], pdims: list[int]) -> dict[int, int]:
    """Position stride of each position dimension: C order over the position dimensions."""
    out, stride = {}, 1
    for d in reversed(pdims):
        out[d] = stride
        stride *= shape[d]
    return out


def words_at(
    xp: Any,
    kind: str,
    full_shape: tuple[int, ...],
    origin: tuple[int, ...],
    shape: tuple[int, ...],
    parts: list[Any],
    shapes: list[tuple[int, ...]],
    stream: int,
    device: Any,
) -> tuple[Any, Any]:
    """Words of the block ``shape`` at ``origin`` of an array of ``full_shape``, element by element.

    The reference layout, with no pairing trick: every element computes the counter of its
    position ``p`` (``q = p >> 1``) and keeps the half of the output that its parity selects.
    ``parts`` are right-aligned to the block (their position dimensions have size 1).
    """
    ndim = len(full_shape)
    pdims = position_dims(shapes, ndim)
    stride = strides(full_shape, pdims)
    dtype = word_dtype(xp, kind)
    p: Any = 0
    for d in pdims:
        index = xp.arange(origin[d], origin[d] + shape[d], dtype=dtype, device=device)
        p = p + xp.reshape(index, tuple(shape[d] if e == d else 1 for e in range(ndim))) * stride[d]
    if isinstance(p, int):
        p = xp.zeros((1,) * ndim, dtype=dtype, device=device)
    q = p >> 1
    if kind == "uint32":
        c0, c1 = q, stream << 16
    else:
        c0, c1 = q & _MASK, (q >> 32) | (stream << 16)
    k0, k1, o_lo, o_hi = parts
    x0, x1, x2, x3 = philox4x32(xp, kind, (c0, c1, o_lo, o_hi), (k0, k1))
    odd = (p & 1) == 1
    hi, lo = xp.where(odd, x2, x0), xp.where(odd, x3, x1)
    if tuple(hi.shape) != shape:
        hi, lo = xp.broadcast_to(hi, shape), xp.broadcast_to(lo, shape)
    return hi, lo


def contiguous_start(
    full_shape: tuple[int, ...], origin: tuple[int, ...], shape: tuple[int, ...], pdims: list[int]
) -> int | None:
    """First position of a block whose positions form one run per lead index, else None.

    That is the case when every position dimension but the first is covered whole.
    """
    for d in pdims[1:]:
        if origin[d] != 0 or shape[d] != full_shape[d]:
            return None
    stride = strides(full_shape, pdims)
    return sum(origin[d] * stride[d] for d in pdims)
