"""PyTorch adapter: ``torch.Generator`` on the tensor's device, ``detach``, compile awareness."""

from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch
import torch.autograd.forward_ad as _forward_ad

from .._noise import E_MAX, E_MIN, U_MIN, numpy_exponential
from ._base import Backend, NoiseSource, reinmax_jvp, with_article
from ._numpy import axis_positions

_functorch = getattr(torch._C, "_functorch", None)
_is_functorch_wrapped = getattr(_functorch, "is_functorch_wrapped_tensor", None)
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)


def _is_dual(x: torch.Tensor) -> bool:
    """Whether ``x`` carries a ``torch.autograd.forward_ad`` tangent.

    Outside a ``dual_level`` (the module's level is -1) no tensor can: one global read,
    nothing measurable. Inside one, unpacking costs about 10 us; only forward-mode callers
    pay it.
    """
    if _forward_ad._current_level < 0:
        return False
    return _forward_ad.unpack_dual(x).tangent is not None


def _canonical(device: torch.device) -> torch.device:
    """``cuda`` and ``cuda:<current>`` are the same device; give both an index."""
    if device.index is None and device.type != "cpu":
        module = getattr(torch, device.type, None)
        if module is not None and hasattr(module, "current_device"):
            return torch.device(device.type, module.current_device())
    return device


_NP_DTYPES: dict[torch.dtype, Any] = {torch.float32: np.float32, torch.float64: np.float64}


# Large CPU draws: torch's CPU generator (one mt19937 stream) is slow, and slower still for
# the float64 uniforms that exact tails need; NumPy's SFC64 streams, one per fixed block,
# filled in parallel with the GIL released, are several times faster (float32 uniforms, the
# tails redrawn at 53 bits: NumPy's float64 ziggurat took 2.5 times as long). The blocks
# are seeded from one 63-bit draw of the source's generator, so ``torch.manual_seed`` and
# explicit ``torch.Generator`` objects still decide the sample, and the result does not
# depend on the number of threads.
_BLOCK = 1 << 19
_PARALLEL_MIN = 2 * _BLOCK
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(
                    max_workers=max(1, torch.get_num_threads()), thread_name_prefix="relaxcat"
                )
    return _pool


def _forget_pool() -> None:  # a forked child has no worker threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


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

    parts = list(_thread_pool().map(fill, range(n_blocks)))
    index = np.concatenate([part[0] for part in parts])
    return u, index, np.concatenate([part[1] for part in parts])


def _exponential_blocks(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """:func:`_uniform_blocks`' ``E``: torch's log for the bulk, the exact tail values over it."""
    u, index, tail = _uniform_blocks(shape, dtype, seed)
    e = u.log_().neg_()
    e.view(-1)[torch.from_numpy(index)] = torch.from_numpy(tail)
    return e


class TorchSource:
    """Exp(1) draws at 53-bit resolution (see ``relaxcat/_noise.py``), on the tensor's device.

    * an int seed on the CPU: a NumPy ``Generator`` seeded with it (torch's CPU generator
      keeps only 32 bits of a seed, so ``s`` and ``s + 2**32`` would draw the same noise);
    * otherwise torch's generator (the default one, or the one passed): float64 uniforms
      ``U = k * 2**-53`` and ``E = -log(max(U, 2**-54))``, so ``2**-53 <= E <= 37.4``;
    * large CPU draws outside ``torch.compile``: :func:`_exponential_blocks` (float32
      uniforms whose tails are redrawn at 53 bits), seeded from one draw of that generator;
    * CUDA outside ``torch.compile`` and ``torch.func``: the Philox kernels of ``_cuda.py``
      (which still build E from a 24-bit uniform: on the GPU the noise stops at 16.6).
    """

    def __init__(
        self, generator: torch.Generator | None, device: torch.device, seed: int | None = None
    ) -> None:
        self.generator = generator
        self.device = device
        self.seed = seed
        self.stream = 0
        self.numpy = (
            np.random.default_rng(seed) if seed is not None and device.type == "cpu" else None
        )

    def philox_keys(self) -> tuple[int, Any, int]:
        """``(key, key_tensor, stream)`` of the next draw for the CUDA kernels.

        An int seed is the key (a new stream per draw of one call); otherwise the key is a
        63-bit draw of the torch generator made on the device, so ``torch.manual_seed`` and
        generator objects decide the noise without a host synchronisation.
        """
        if self.seed is not None:
            stream, self.stream = self.stream, self.stream + 1
            return self.seed, None, stream
        key = torch.randint(
            0, 2**63 - 1, (1,), device=self.device, dtype=torch.int64, generator=self.generator
        )
        return 0, key, 0

    def _block_seed(self) -> int:
        if self.numpy is not None:
            return int(self.numpy.integers(0, 2**63 - 1))
        return int(torch.randint(0, 2**63 - 1, (1,), generator=self.generator, dtype=torch.int64))

    def _uniform64(self, shape: tuple[int, ...]) -> torch.Tensor:
        f64 = torch.float64
        if self.generator is None:
            # Not generator=None: that overload of rand takes no symbolic sizes, so
            # torch.compile with dynamic shapes (a batch size, a number of samples) fails.
            return torch.rand(shape, dtype=f64, device=self.device)
        return torch.rand(shape, dtype=f64, device=self.device, generator=self.generator)

    def exponential_numpy(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """The draws of :meth:`standard_exponential` as a NumPy array (CPU, eager)."""
        np_dtype = _NP_DTYPES[dtype]
        if self.numpy is not None:
            return numpy_exponential(self.numpy, shape, np_dtype)
        u = self._uniform64(shape).numpy()
        np.maximum(u, U_MIN, out=u)
        np.log(u, out=u)
        np.negative(u, out=u)
        return u if np_dtype is np.float64 else u.astype(np_dtype)

    def _kernels(self) -> bool:
        """Whether draws go through the CUDA Philox kernels (not inside torch.func/compile)."""
        return (
            self.device.type == "cuda"
            and not torch.compiler.is_compiling()
            and not _functorch_active()
            and _cuda_kernels() is not None
        )

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if self._kernels():
            return _cuda_noise(self, shape, dtype, exponential=True)
        if self.device.type == "cpu" and not torch.compiler.is_compiling():
            if math.prod(shape) >= _PARALLEL_MIN:
                return _exponential_blocks(shape, dtype, self._block_seed())
            if self.numpy is not None:
                return torch.from_numpy(numpy_exponential(self.numpy, shape, _NP_DTYPES[dtype]))
        u = self._uniform64(shape)
        if _functorch_active():  # vmap has no batching rule for clamp_: a slow fallback, warned
            return (-u.clamp(min=U_MIN).log()).to(dtype)
        return u.clamp_(min=U_MIN).log_().neg_().to(dtype)

    def log_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """``log(clip(E, E_MIN, E_MAX))`` in one buffer: the generic formula, in place.

        Only the CUDA kernels' draws are clipped here. Every other source's ``E`` already
        lies in ``[E_MIN, E_MAX]`` (the 53-bit uniforms: ``[2**-53, 37.4]``; the blocks:
        ``[E_MIN, 42.3]``; the NumPy ziggurat: floored at ``E_MIN``, above ``E_MAX`` with
        probability 1.6e-28, where the logarithm is finite anyway), so the clip would be a
        pass over the array that changes nothing.
        """
        e = self.standard_exponential(shape, dtype)
        if self._kernels():
            return e.clamp_(E_MIN, E_MAX).log_()
        return e.log() if _functorch_active() else e.log_()

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if self._kernels():
            return _cuda_noise(self, shape, dtype)
        return self.log_exponential(shape, dtype).neg_()


def _scaled_softmax_(s: torch.Tensor, row_max: torch.Tensor, tau: float, dim: int) -> torch.Tensor:
    """``softmax(s / tau)`` written over ``s`` (the generic formula, in place)."""
    s.sub_(row_max).div_(tau).exp_()
    return s.div_(s.sum(dim, keepdim=True))


def _one_hot(s: torch.Tensor, dim: int) -> torch.Tensor:
    index = s.argmax(dim, keepdim=True)  # ties: the first index
    return torch.zeros_like(s).scatter_(dim, index, 1.0)


def _softmax_vjp(y: torch.Tensor, grad: torch.Tensor, tau: float, dim: int) -> torch.Tensor:
    """``J(y)^T grad / tau = y * (grad - <grad, y>) / tau`` for ``y = softmax(z / tau)``.

    One temporary the size of ``y``; differentiable, so double backward works.
    """
    out = grad * y
    out.addcmul_(y, out.sum(dim, keepdim=True), value=-1.0)
    return out if tau == 1.0 else out.mul_(1.0 / tau)


def _sum_grads(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None or b is None:
        return a if b is None else b
    return a + b


class _SoftSample(torch.autograd.Function):
    """Registered rule for the soft sample: saves only ``y``, the backward is one formula."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor, s: torch.Tensor, row_max: torch.Tensor, tau: float, dim: int
    ) -> Any:
        return _scaled_softmax_(s, row_max, tau, dim)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.tau, ctx.dim = inputs[3], inputs[4]
        ctx.mark_dirty(inputs[1])
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        return _softmax_vjp(y, grad, ctx.tau, ctx.dim), None, None, None, None


class _HardSample(torch.autograd.Function):
    """Straight-through rule: outputs the exact one-hot and the soft sample it differentiates."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor, s: torch.Tensor, row_max: torch.Tensor, tau: float, dim: int
    ) -> Any:
        hot = _one_hot(s, dim)
        return hot, _scaled_softmax_(s, row_max, tau, dim)

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
        grad = _sum_grads(grad_hot, grad_soft)
        if grad is None:
            return None, None, None, None, None
        return _softmax_vjp(y, grad, ctx.tau, ctx.dim), None, None, None, None


class ReinMaxRule(torch.autograd.Function):
    """ReinMax registered with autograd: forward ``hot``, backward ``2 J(pi1) g - 0.5 J(pi0) g``.

    ``forward`` and ``setup_context`` are separate, and the rule uses torch operations only,
    so it works under ``torch.func`` (``grad``, ``vjp``, ``vmap``) and ``torch.compile``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, hot: Any, pi0: Any, pi1: Any, axis: int) -> Any:
        return hot

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        _, _, pi0, pi1, axis = inputs
        ctx.save_for_backward(pi0, pi1)
        ctx.save_for_forward(pi0, pi1)
        ctx.axis = axis

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        pi0, pi1 = ctx.saved_tensors
        return reinmax_jvp(xp_torch, pi0, pi1, g, ctx.axis), None, None, None, None


class ReinMaxRuleWithJvp(ReinMaxRule):
    """:class:`ReinMaxRule` with forward-mode AD (``torch.func.jvp``, ``jacfwd``), used eagerly.

    ``torch.compile`` cannot trace a Function that defines ``jvp``, so compiled code gets
    :class:`ReinMaxRule`; the rule (``J`` is symmetric) is the same in both directions.
    """

    @staticmethod
    def jvp(ctx: Any, dx: Any, *_: Any) -> Any:
        pi0, pi1 = ctx.saved_tensors
        return reinmax_jvp(xp_torch, pi0, pi1, dx, ctx.axis)


class TorchBackend(Backend):
    name = "torch"
    rng_libraries = ("torch",)
    rng_hint = "an int seed or a torch.Generator on the logits' device"
    has_autodiff = True

    def __init__(self) -> None:
        super().__init__(xp_torch)

    def device(self, x: Any) -> Any:
        return x.device

    def same_device(self, a: Any, b: Any) -> bool:
        return _canonical(torch.device(a)) == _canonical(torch.device(b))

    def errstate(self) -> Any:
        return contextlib.nullcontext()

    def values_readable(self, x: Any) -> bool:
        if torch.compiler.is_compiling() or x.device.type != "cpu":
            return False
        return not (_is_functorch_wrapped is not None and _is_functorch_wrapped(x))

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def tracks_gradients(self, x: Any) -> bool:
        # Ordered so that a plain tensor is answered by three cheap reads (the 1x10 fast
        # path pays for this call): its flag, the dual level, the functorch transforms.
        if x.requires_grad and torch.is_grad_enabled():
            return True
        if _is_dual(x):
            return True  # forward-mode AD ignores torch.no_grad: never drop the tangent
        if _transforms_active is None or not _transforms_active():
            return False
        # Inside torch.func.grad/vjp/jvp/vmap the flag is not reliable.
        return (
            torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
            and _is_functorch_wrapped is not None
            and bool(_is_functorch_wrapped(x))
        )

    def default_source(self, device: Any) -> NoiseSource:
        return TorchSource(None, device)  # torch's default generator: torch.manual_seed applies

    def seeded_source(self, seed: int, device: Any) -> NoiseSource:
        if device.type == "cpu":  # a NumPy generator keeps all 64 bits of the seed
            return TorchSource(None, device, seed)
        return TorchSource(torch.Generator(device=device).manual_seed(seed), device, seed)

    def wrap_generator(self, rng: Any, device: Any) -> NoiseSource:
        if not isinstance(rng, torch.Generator):
            raise TypeError(f"rng is {with_article(type(rng).__name__)}; pass {self.rng_hint}.")
        if not self.same_device(rng.device, device):
            raise ValueError(
                f"rng is a torch.Generator on {rng.device} but the logits are on {device}; "
                f"create it with torch.Generator(device={str(device)!r})."
            )
        return TorchSource(rng, device)

    # -- estimators ------------------------------------------------------------------
    def reinmax(self, x: Any, hot: Any, pi0: Any, pi1: Any, axis: int) -> Any:
        rule = ReinMaxRule if torch.compiler.is_compiling() else ReinMaxRuleWithJvp
        return rule.apply(x, hot, pi0, pi1, axis)

    # -- fast paths ------------------------------------------------------------------
    def fast_gumbel_softmax(self, prepared: Any, rng: object, noise: object, hard: bool) -> Any:
        """Eager torch: noise, sample and one-hot in one buffer; a registered backward.

        Used outside ``torch.compile`` and ``torch.func`` transforms, for a Python ``tau``,
        and not for dual tensors of ``torch.autograd.forward_ad`` (its Functions define no
        forward rule; the generic path is written with differentiable torch operations).
        It computes the generic formula in place (same operations, same order), so its
        values equal the generic path's; the backward saves only the soft sample.
        """
        p = prepared
        x = p.x
        if type(p.tau) is not float or torch.compiler.is_compiling():
            return None
        if _is_functorch_wrapped is not None and _is_functorch_wrapped(x):
            return None
        if _is_dual(x):
            return None
        dim, device = p.axis, p.device
        tracks = p.gradient_needed()  # the one rule (tau is a Python float here)
        if device.type == "cuda" and p.tau >= 1e-30 and _cuda_kernels() is not None:
            return p.out(_cuda_sample(self, p, rng, noise, hard, tracks))
        if noise is None:
            source = self.noise_source(rng, device)
            if not tracks and device.type == "cpu" and x.numel() <= _TINY:
                return p.out(torch.from_numpy(_tiny_sample(source, p, hard)))
            s = source.log_exponential(tuple(x.shape), p.dtype)  # type: ignore[attr-defined]
            torch.sub(x.detach(), s, out=s)  # x + g, with g = -log E
        else:
            from .._validation import check_noise

            s = x.detach() + check_noise(noise, self, p.logits, p.dtype)
        row_max = s.amax(dim, keepdim=True)
        if device.type == "cpu" and not math.isfinite(row_max.sum(dtype=torch.float64).item()):
            p.check_rows(row_max, noise is not None)  # raises with the diagnosis
        if not tracks:
            y = _one_hot(s, dim) if hard else _scaled_softmax_(s, row_max, p.tau, dim)
        elif hard:
            y = _HardSample.apply(x, s, row_max, p.tau, dim)[0]
        else:
            y = _SoftSample.apply(x, s, row_max, p.tau, dim)
        return p.out(y)


# Below this many elements a torch call costs its dispatch overhead, several microseconds
# per operation, more than the arithmetic: after torch draws the uniforms, NumPy computes
# the generic formula on the same memory with a fraction of that overhead.
_TINY = 1024


def _tiny_sample(source: Any, p: Any, hard: bool) -> np.ndarray:
    """The generic formula in NumPy on the source's exponentials, for a few hundred elements.

    Same operations and order as the generic path: ``E`` (at 53-bit resolution, in
    ``[2**-53, 37.4]``, so the clip to ``[E_MIN, E_MAX]`` cannot act), ``s = x - log E``
    (exactly ``x + g``), the row maximum and its check, then the softmax or the one-hot. It
    is :func:`._numpy.sample_` written out in one ``errstate``: every Python-level step costs
    as much as the arithmetic at this size.
    """
    s = source.exponential_numpy(tuple(p.x.shape), p.dtype)
    axis = p.axis
    with np.errstate(over="ignore", under="ignore"):
        np.log(s, out=s)
        np.subtract(p.x.numpy(), s, out=s)
        m = np.maximum.reduce(s, axis=axis, keepdims=True)
        if not math.isfinite(float(np.add.reduce(m, axis=None, dtype=np.float64))):
            p.check_rows(torch.from_numpy(m), False)  # raises with the diagnosis
        if hard:  # one 1 per row, at the first maximum
            index = s.argmax(axis=axis, keepdims=True)
            return np.equal(axis_positions(s.shape[axis], axis, s.ndim), index).astype(s.dtype)
        np.subtract(s, m, out=s)
        np.divide(s, p.tau, out=s)
        np.exp(s, out=s)
        return np.divide(s, np.add.reduce(s, axis=axis, keepdims=True), out=s)


# -- CUDA: the fused kernels of ``_cuda.py`` through DLPack ------------------------------
_CUDA: Any = None  # the ``_cuda`` module, False when CuPy is unusable, None before the check


def _cuda_kernels() -> Any:
    """The fused-kernel module if CuPy can be imported, else None (the torch path is used)."""
    global _CUDA
    if _CUDA is None:
        if torch.compiler.is_compiling():
            return None
        try:
            from . import _cuda

            _CUDA = _cuda
        except Exception:  # CuPy absent or without a usable CUDA runtime
            _CUDA = False
    return _CUDA or None


@contextlib.contextmanager
def _on_torch_stream(device: torch.device) -> Any:
    """Make CuPy launch on torch's current stream of ``device``."""
    import cupy

    with (
        cupy.cuda.Device(device.index),
        cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream),
    ):
        yield


def _cp(t: torch.Tensor | None) -> Any:
    if t is None:
        return None
    import cupy

    return cupy.from_dlpack(t.detach())  # a view of the same memory, outside autograd


_KINDS = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


def _cuda_noise(
    source: TorchSource, shape: tuple[int, ...], dtype: Any, exponential: bool = False
) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=source.device)
    key, key_tensor, stream = source.philox_keys()
    with _on_torch_stream(out.device):
        _CUDA.noise(
            _cp(out),
            kind=_KINDS[dtype],
            key=key,
            key_array=_cp(key_tensor),
            stream=stream,
            exponential=exponential,
        )
    return out


def _functorch_active() -> bool:
    """Inside torch.func.vmap/grad: draw with torch ops, which the transforms understand."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def _to_rows(a: torch.Tensor, dim: int) -> tuple[torch.Tensor, int]:
    inner = math.prod(a.shape[dim + 1 :])
    if dim != a.ndim - 1:
        a = a.movedim(dim, -1)
    a = a.contiguous()
    return a.reshape(-1, a.shape[-1]), inner


def _from_rows(out: torch.Tensor, shape: tuple[int, ...], dim: int) -> torch.Tensor:
    if dim == len(shape) - 1:
        return out.reshape(shape)
    moved = shape[:dim] + shape[dim + 1 :] + (shape[dim],)
    return out.reshape(moved).movedim(-1, dim).contiguous()


def _launch(x2, g2, soft, hot, tau, key, key_tensor, stream, inner):  # type: ignore[no-untyped-def]
    with _on_torch_stream(x2.device):
        _CUDA.forward(
            _cp(x2),
            kind=_KINDS[x2.dtype],
            tau=tau,
            hard_out=_cp(hot),
            soft_out=_cp(soft),
            noise=_cp(g2),
            key=key,
            key_array=_cp(key_tensor),
            stream=stream,
            inner=inner,
        )


def _cuda_vjp(y: torch.Tensor, grad: torch.Tensor, tau: float) -> torch.Tensor:
    if torch.is_grad_enabled():  # create_graph=True: stay differentiable
        return _softmax_vjp(y, grad, tau, -1)
    out = torch.empty_like(y)
    with _on_torch_stream(y.device):
        _CUDA.backward(_cp(grad.contiguous()), _cp(y), _cp(out), kind=_KINDS[y.dtype], tau=tau)
    return out


class _CudaSoftSample(torch.autograd.Function):
    """Fused CUDA forward; the backward is one row-wise kernel (saves only ``y``)."""

    @staticmethod
    def forward(x2, g2, tau, key, key_tensor, stream, inner):  # type: ignore[no-untyped-def]
        y = torch.empty_like(x2)
        _launch(x2, g2, y, None, tau, key, key_tensor, stream, inner)
        return y

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.tau = inputs[2]
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        return _cuda_vjp(y, grad, ctx.tau), None, None, None, None, None, None


class _CudaHardSample(torch.autograd.Function):
    """Fused CUDA forward writing the one-hot and the soft sample; straight-through backward."""

    @staticmethod
    def forward(x2, g2, tau, key, key_tensor, stream, inner):  # type: ignore[no-untyped-def]
        y = torch.empty_like(x2)
        hot = torch.empty_like(x2)
        _launch(x2, g2, y, hot, tau, key, key_tensor, stream, inner)
        return hot, y

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.tau = inputs[2]
        ctx.save_for_backward(output[1])
        ctx.set_materialize_grads(False)  # no zeros for the unused soft output

    @staticmethod
    def backward(
        ctx: Any, grad_hot: torch.Tensor, grad_soft: torch.Tensor | None
    ) -> tuple[Any, ...]:
        (y,) = ctx.saved_tensors
        grad = _sum_grads(grad_hot, grad_soft)
        if grad is None:
            return None, None, None, None, None, None, None
        return _cuda_vjp(y, grad, ctx.tau), None, None, None, None, None, None


def _cuda_sample(
    backend: TorchBackend, p: Any, rng: object, noise: object, hard: bool, tracks: bool
) -> torch.Tensor:
    shape = tuple(p.x.shape)
    if noise is None:
        source: Any = backend.noise_source(rng, p.x.device)
        key, key_tensor, stream = source.philox_keys()
        x = p.x if tracks else p.logits  # untracked: read half precision as it is
        g2 = None
    else:
        from .._validation import check_noise

        key, key_tensor, stream = 0, None, 0
        x = p.x
        g2 = _to_rows(check_noise(noise, backend, p.logits, p.dtype), p.axis)[0]
    x2, inner = _to_rows(x, p.axis)
    if tracks:
        fn = _CudaHardSample if hard else _CudaSoftSample
        result = fn.apply(x2, g2, p.tau, key, key_tensor, stream, inner)
        y2 = result[0] if hard else result
    else:
        y2 = torch.empty_like(x2.detach())
        soft_out, hot_out = (None, y2) if hard else (y2, None)
        _launch(x2.detach(), g2, soft_out, hot_out, p.tau, key, key_tensor, stream, inner)
    return _from_rows(y2, shape, p.axis)
