"""torch's speed work: in-place kernels, a NumPy path for tiny CPU tensors, parallel CPU draws.

Everything here computes the generic formula of ``relaxcat/_core.py`` faster, with the same
values (``tests/test_fast_paths.py`` holds each kernel equal to the generic path); the
behaviour (which generator, which mode of torch, which gradient) is decided in ``_torch.py``,
which calls :func:`eager_sample` only for eager, untransformed tensors and a Python ``tau``.

* :func:`eager_sample`: noise, sample and one-hot in one buffer (any device), with a
  registered backward that saves only the soft sample (:class:`SoftSample`,
  :class:`HardSample`); below :data:`TINY_ELEMENTS` on the CPU without a gradient, the
  same formula in NumPy (:func:`tiny_sample`), where torch's per-operation dispatch would
  cost more than the arithmetic;
* :func:`exponential_blocks`: large CPU draws from NumPy SFC64 streams filled in parallel.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .._noise import E_MIN, U_MIN
from ._numpy import axis_positions
from ._threads import LazyPool

if TYPE_CHECKING:
    from .._core import Prepared
    from ._torch import TorchSource

# Large CPU draws: torch's CPU generator (one mt19937 stream) is slow, and slower still for
# the float64 uniforms that exact tails need; NumPy's SFC64 streams, one per fixed block,
# filled in parallel with the GIL released, are several times faster (float32 uniforms, the
# tails redrawn at 53 bits: NumPy's float64 ziggurat took 2.5 times as long). The blocks
# are seeded from one 63-bit draw of the source's generator, so ``torch.manual_seed`` and
# explicit ``torch.Generator`` objects still decide the sample, and the result does not
# depend on the number of threads.
_BLOCK = 1 << 19
PARALLEL_MIN = 2 * _BLOCK
POOL = LazyPool(torch.get_num_threads, "relaxcat")


#: Uniforms below this or at least ``1 - _TAIL`` are redrawn at 53-bit resolution.
_TAIL = 2.0**-7
# The tails in 32-bit words ``w`` (``U = w * 2**-32``): ``w < 2**25`` or ``w >= 2**32 - 2**25``.
# Adding 2**25 (mod 2**32) sends exactly those words below 2**26.
_TAIL_SHIFT = np.uint32(1 << 25)
_TAIL_WORDS = np.uint32(1 << 26)
_CHUNK = 1 << 16


def _fill_block(block: np.ndarray, seed: np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """Uniforms into ``block`` from one SFC64 stream; ``(tail positions, their exact E)``.

    float32: the stream's raw 64-bit words, split into 32-bit words ``w``, give
    ``U = w * 2**-32`` rounded to float32 (relative resolution ``2**-24`` at every scale),
    and the tail test is done on the integers, so the tails have probability exactly
    ``_TAIL`` each. float64: ``Generator.random`` (``k * 2**-53``).
    """
    bits = np.random.SFC64(seed)
    uniform = np.random.Generator(bits)
    tails, highs = [], []
    # In pieces that stay in the core's cache (and below malloc's mmap threshold): one
    # 2 MiB temporary per step was about twice as slow.
    for start in range(0, block.size, _CHUNK):
        part = block[start : start + _CHUNK]
        if part.dtype == np.float32:
            w = bits.random_raw(-(-part.size // 2)).view(np.uint32)[: part.size]
            tail = np.flatnonzero(np.add(w, _TAIL_SHIFT) < _TAIL_WORDS)
            highs.append(w[tail] >= np.uint32(1 << 31))
            np.copyto(part, w, casting="unsafe")  # rounds to 24 significant bits
            part *= np.float32(2.0**-32)
        else:
            uniform.random(out=part)
            tail = np.flatnonzero((part < _TAIL) | (part >= 1.0 - _TAIL))
            highs.append(part[tail] >= 0.5)
        tails.append(tail + start)
    tail, high = np.concatenate(tails), np.concatenate(highs)
    w64 = np.maximum(uniform.random(tail.size), U_MIN) * _TAIL
    e = np.where(high, -np.log1p(-w64), -np.log(w64))
    # The floor that the generic clip would apply (E >= 2**-61 here): the block path then
    # needs no clip pass of its own.
    np.maximum(e, E_MIN, out=e)
    block[tail] = 1.0  # a placeholder: -log(1) = 0, overwritten with e
    return tail, e.astype(block.dtype)


def _uniform_blocks(
    shape: tuple[int, ...], dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Uniforms for Exp(1) on the CPU with exact tails, from SFC64 streams filled in parallel.

    Returns ``(u, index, tail)``: ``E = -log(u)`` except at the flat positions ``index``,
    where ``E`` is ``tail``. NumPy only (no torch kernel runs here, so it works in a forked
    child, where torch's OpenMP pool may hang).

    Each block is uniforms ``U`` (the fast part, see :func:`_fill_block`). The
    ``2 * _TAIL`` of them that lie in a tail, ``U < _TAIL`` or ``U >= 1 - _TAIL``, are redrawn
    from their exact conditional law at 53-bit resolution: ``W = V * _TAIL`` from the nearer
    end, ``V`` a float64 uniform of the same stream, and ``E`` is ``-log W`` or
    ``-log1p(-W)`` in float64, floored at ``E_MIN``. The bulk gets ``E = -log U`` from torch's
    vectorised log, and the tail values are written over it. So ``E`` resolves both ends to
    53 bits, ``E`` lies in ``[E_MIN, 42.3]`` (no clip needed), and in the bulk ``E`` keeps a
    relative resolution of ``2**-17`` or finer.
    """
    u = torch.empty(shape, dtype=dtype)
    flat = u.view(-1).numpy()
    n_blocks = -(-flat.size // _BLOCK)
    children = np.random.SeedSequence(seed).spawn(n_blocks)

    def fill(i: int) -> tuple[np.ndarray, np.ndarray]:
        index, e = _fill_block(flat[i * _BLOCK : (i + 1) * _BLOCK], children[i])
        return index + i * _BLOCK, e

    parts = list(POOL.get().map(fill, range(n_blocks)))
    index = np.concatenate([part[0] for part in parts])
    return u, index, np.concatenate([part[1] for part in parts])


def exponential_blocks(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """:func:`_uniform_blocks`' ``E``: torch's log for the bulk, the exact tail values over it."""
    u, index, tail = _uniform_blocks(shape, dtype, seed)
    e = u.log_().neg_()
    e.view(-1)[torch.from_numpy(index)] = torch.from_numpy(tail)
    return e


def scaled_softmax_(s: torch.Tensor, row_max: torch.Tensor, tau: float, dim: int) -> torch.Tensor:
    """``softmax(s / tau)`` written over ``s``: the generic formula, in place.

    ``(s - row_max) / tau`` first, as the generic path does (no overflow at any ``tau``, and
    the row maximum becomes exactly 0); then torch's fused softmax kernel writes over its
    input on the CPU (it reads each element before writing it), three passes, not five.
    """
    s.sub_(row_max).div_(tau)
    if s.is_cpu:
        return torch.softmax(s, dim, out=s)
    s.exp_()  # CUDA tensors without the fused kernels: the five passes, as run on a GPU
    return s.div_(s.sum(dim, keepdim=True))


def one_hot(s: torch.Tensor, dim: int, row_max: torch.Tensor | None = None) -> torch.Tensor:
    """The exact one-hot of the first maximum of ``s`` along ``dim`` (the generic argmax).

    Given the row maxima on the CPU, the one-hot is ``s == row_max``, written into a new
    float tensor, unless a row holds its maximum twice: then, as for a tensor on another
    device, the first index of ``argmax``. torch's CPU ``argmax`` is a scalar loop, several
    times slower than the vectorised comparison and the row sums that look for ties.
    """
    if row_max is not None and s.is_cpu:
        return _first_ones_(torch.eq(s, row_max, out=torch.empty_like(s)), dim)
    index = s.argmax(dim, keepdim=True)  # ties: the first index
    return torch.zeros_like(s).scatter_(dim, index, 1.0)


def one_hot_(s: torch.Tensor, dim: int, row_max: torch.Tensor) -> torch.Tensor:
    """:func:`one_hot`, written over ``s`` on the CPU (``s == row_max`` in place)."""
    return _first_ones_(s.eq_(row_max), dim) if s.is_cpu else one_hot(s, dim)


def _first_ones_(hot: torch.Tensor, dim: int) -> torch.Tensor:
    """``hot`` (1 at every maximum of a row) with only the first 1 of each row kept.

    A row holds its maximum twice only when two of its values round to the same number
    (rare, but not impossible in float32 with many categories): its sum is then above 1
    (exactly: a sum of a few ones), and ``argmax`` of ``hot``, whose maxima are its 1s,
    gives the first. (The row sums and their maximum take a third of the time of
    ``count_nonzero``.)
    """
    if hot.numel() == 0 or float(hot.sum(dim).amax()) == 1.0:
        return hot
    index = hot.argmax(dim, keepdim=True)
    return hot.zero_().scatter_(dim, index, 1.0)


def softmax_vjp(y: torch.Tensor, grad: torch.Tensor, tau: float, dim: int) -> torch.Tensor:
    """``J(y)^T grad / tau = y * (grad - <grad, y>) / tau`` for ``y = softmax(z / tau)``.

    On the CPU torch's own fused softmax backward (one kernel), then the ``1 / tau``;
    differentiable either way, so double backward works.
    """
    if y.is_cpu:
        out = torch._softmax_backward_data(grad, y, dim, y.dtype)
    else:  # as run on a GPU (create_graph=True through the CUDA kernels' rule)
        out = grad * y
        out.addcmul_(y, out.sum(dim, keepdim=True), value=-1.0)
    return out if tau == 1.0 else out.mul_(1.0 / tau)


def sum_grads(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return a if b is None else b
    return a + b


class SoftSample(torch.autograd.Function):
    """Registered rule for the soft sample: saves only ``y``, the backward is one formula."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor, s: torch.Tensor, row_max: torch.Tensor, tau: float, dim: int
    ) -> Any:
        return scaled_softmax_(s, row_max, tau, dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.tau, ctx.dim = inputs[3], inputs[4]
        ctx.mark_dirty(inputs[1])
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        return softmax_vjp(y, grad, ctx.tau, ctx.dim), None, None, None, None


class HardSample(torch.autograd.Function):
    """Straight-through rule: outputs the exact one-hot and the soft sample it differentiates."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor, s: torch.Tensor, row_max: torch.Tensor, tau: float, dim: int
    ) -> Any:
        hot = one_hot(s, dim, row_max)
        return hot, scaled_softmax_(s, row_max, tau, dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.tau, ctx.dim = inputs[3], inputs[4]
        ctx.mark_dirty(inputs[1])
        ctx.save_for_backward(output[1])
        ctx.set_materialize_grads(False)  # no zeros for the unused soft output

    @staticmethod
    def backward(
        ctx: Any, grad_hot: torch.Tensor, grad_soft: torch.Tensor | None
    ) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        grad = sum_grads(grad_hot, grad_soft)
        if grad is None:
            return None, None, None, None, None
        return softmax_vjp(y, grad, ctx.tau, ctx.dim), None, None, None, None


# Below this many elements a torch call costs its dispatch overhead, several microseconds
# per operation, more than the arithmetic: after torch draws the uniforms, NumPy computes
# the generic formula on the same memory with a fraction of that overhead.
TINY_ELEMENTS = 1024


def _tiny_log_e(source: TorchSource, p: Prepared) -> np.ndarray:
    """``log E`` in NumPy, in the compute dtype: ``-g``, the generic path's noise negated.

    ``E`` comes at 53-bit resolution, in ``[2**-53, 37.4]``, so the generic clip to
    ``[E_MIN, E_MAX]`` cannot act. ``x - log E`` is then exactly ``x + g``.
    """
    # A tuple of ints: torch parses a torch.Size (symbolic sizes) microseconds slower.
    e = source.exponential_numpy(tuple(p.x.shape), p.dtype)
    return np.log(e, out=e)


def _tiny_row_max(s: np.ndarray, p: Prepared) -> np.ndarray:
    """The row maxima of ``s``; a row whose maximum is not finite is diagnosed (raises)."""
    m = np.maximum.reduce(s, axis=p.axis, keepdims=True)
    if not math.isfinite(np.add.reduce(m, axis=None)):  # inf: re-checked
        p.check_rows(torch.from_numpy(m), False)  # raises with the diagnosis
    return m


def _tiny_one_hot(s: np.ndarray, axis: int) -> np.ndarray:
    index = s.argmax(axis=axis, keepdims=True)  # one 1 per row, at the first maximum
    return np.equal(axis_positions(s.shape[axis], axis, s.ndim), index).astype(s.dtype)


def tiny_sample(source: TorchSource, p: Prepared, hard: bool) -> np.ndarray:
    """The generic formula in NumPy on the source's exponentials, for a few hundred elements.

    Same operations and order as the generic path: ``s = x + g``, the row maximum and its
    check, then the softmax or the one-hot. It is :func:`._numpy.sample_` written out in one
    ``errstate``: every Python-level step costs as much as the arithmetic at this size.
    """
    axis = p.axis
    # Overflow and underflow give the right values here (a row that is all -inf is
    # diagnosed first), and the check's sum of maxima may add +inf and -inf.
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        s = _tiny_log_e(source, p)
        np.subtract(p.x.numpy(), s, out=s)
        m = _tiny_row_max(s, p)
        if hard:
            return _tiny_one_hot(s, axis)
        np.subtract(s, m, out=s)
        np.divide(s, p.tau, out=s)
        np.exp(s, out=s)
        return np.divide(s, np.add.reduce(s, axis=axis, keepdims=True), out=s)


def tiny_tracked_sample(source: TorchSource, p: Prepared, hard: bool) -> torch.Tensor:
    """Small tensors that need a gradient: the generic formula in torch operations.

    ``softmax(((x + g) - m) / tau)`` with ``m`` a constant, so autograd runs torch's C++
    backward nodes: at a few hundred elements that is cheaper than a Python
    ``autograd.Function`` (whose backward is Python, and whose ``apply`` binds arguments
    with ``inspect`` on every call), and cheaper than NumPy here, whose code competes with
    the backward pass's for the CPU's caches. The generic path's operations, with torch's
    fused softmax for its last three: equal values up to that kernel's rounding (the one-hot
    exactly equal).
    """
    x, axis = p.x, p.axis
    log_e = source.standard_exponential(tuple(x.shape), p.dtype).log_()  # E in [E_MIN, E_MAX]
    s = torch.sub(x, log_e)  # x + g, with g = -log E
    m = s.detach().amax(axis, keepdim=True)
    if not math.isfinite(m.sum(dtype=torch.float64).item()):
        p.check_rows(m, False)  # raises with the diagnosis
    y = torch.softmax(s.sub(m).div_(p.tau), axis)
    if not hard:
        return y
    return one_hot(s.detach(), axis) + (y - y.detach())  # exactly the one-hot


def eager_sample(
    p: Prepared, source: TorchSource | None, noise: torch.Tensor | None, hard: bool, tracks: bool
) -> torch.Tensor:
    """The generic sample computed in place: ``x + g``, its row maximum, softmax or one-hot.

    ``noise`` is validated noise in the compute dtype, or None and the noise is drawn from
    ``source``; ``tracks`` is ``p.gradient_needed()``. The same operations in the same order
    as the generic path, so the values are equal; the backward saves only the soft sample.
    """
    x, dim = p.x, p.axis
    if noise is None:
        assert source is not None
        if x.is_cpu and x.numel() <= TINY_ELEMENTS:
            if tracks:
                return tiny_tracked_sample(source, p, hard)
            return torch.from_numpy(tiny_sample(source, p, hard))
        s = source.log_exponential(tuple(x.shape), p.dtype)
        torch.sub(x.detach(), s, out=s)  # x + g, with g = -log E
    else:
        s = x.detach() + noise
    row_max = s.amax(dim, keepdim=True)
    if x.is_cpu and not math.isfinite(row_max.sum(dtype=torch.float64).item()):
        p.check_rows(row_max, noise is not None)  # raises with the diagnosis
    if not tracks:
        return one_hot_(s, dim, row_max) if hard else scaled_softmax_(s, row_max, p.tau, dim)
    if hard:
        return HardSample.apply(x, s, row_max, p.tau, dim)[0]
    return SoftSample.apply(x, s, row_max, p.tau, dim)
