"""PyTorch adapter: torch's behaviour. Generators and seeds, devices, autodiff, torch's modes.

What torch *does* is decided here: which generator draws (:class:`TorchSource`), which mode
torch is in (the helpers below, the only place that asks), which gradient rule applies
(ReinMax's registered Function), and when a native kernel may run
(:meth:`TorchBackend.fused_sample`). The kernels themselves, the speed work, live in
``_torch_cpu.py`` (in place, NumPy for tiny tensors, parallel CPU draws); the CUDA kernels of
``_cuda.py`` are reached through DLPack at the end of this module.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch
import torch.autograd.forward_ad as _forward_ad

from .._noise import E_MAX, E_MIN, U_MIN, numpy_exponential
from .._philox import Philox, PhiloxSource
from ._base import Backend, NoiseSource, reinmax_jvp, with_article
from ._numpy_philox import NumpyPhiloxSource
from ._torch_cpu import PARALLEL_MIN, eager_sample, exponential_blocks, softmax_vjp, sum_grads

if TYPE_CHECKING:
    from .._core import Prepared

# -- torch's modes: every question "what is torch doing right now" is asked here ----------
_functorch = getattr(torch._C, "_functorch", None)
_is_functorch_wrapped = getattr(_functorch, "is_functorch_wrapped_tensor", None)
_are_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)


def compiling() -> bool:
    """Inside ``torch.compile``'s trace: no values, no NumPy, no CuPy, no in-place kernels."""
    return torch.compiler.is_compiling()


def transforms_active() -> bool:
    """Inside a ``torch.func`` transform (``grad``, ``vjp``, ``jvp``, ``vmap``)."""
    return _are_transforms_active is not None and bool(_are_transforms_active())


def transformed(x: torch.Tensor) -> bool:
    """Whether ``x`` is wrapped by a ``torch.func`` transform (its flags are not reliable)."""
    return _is_functorch_wrapped is not None and bool(_is_functorch_wrapped(x))


def is_dual(x: torch.Tensor) -> bool:
    """Whether ``x`` carries a ``torch.autograd.forward_ad`` tangent.

    Outside a ``dual_level`` (the module's level is -1) no tensor can: one global read,
    nothing measurable. Inside one, unpacking costs about 10 us; only forward-mode callers
    pay it.
    """
    if _forward_ad._current_level < 0:
        return False
    return _forward_ad.unpack_dual(x).tangent is not None


def plain_eager(x: torch.Tensor) -> bool:
    """Eager torch on a plain tensor: not compiling, not transformed, no forward tangent.

    Only there may the kernels of ``_torch_cpu.py`` run: they work in place and register
    Functions without forward rules. Ordered cheapest first; under ``torch.compile`` the
    first test is all that is traced.
    """
    if torch.compiler.is_compiling():  # compiling(), transformed(), is_dual() written out:
        return False  # this runs on every eager call, where each Python call counts
    if _is_functorch_wrapped is not None and _is_functorch_wrapped(x):
        return False
    return _forward_ad._current_level < 0 or not is_dual(x)


def _canonical(device: torch.device) -> torch.device:
    """``cuda`` and ``cuda:<current>`` are the same device; give both an index."""
    if device.index is None and device.type != "cpu":
        module = getattr(torch, device.type, None)
        if module is not None and hasattr(module, "current_device"):
            return torch.device(device.type, module.current_device())
    return device


_NP_DTYPES: dict[torch.dtype, Any] = {torch.float32: np.float32, torch.float64: np.float64}


class TorchCpuPhiloxSource(PhiloxSource):
    """:class:`relaxcat.Philox` noise on the CPU, eagerly: NumPy's block kernel, shared memory.

    The words are those of the generic path (``_numpy_philox.py`` holds its kernel to them);
    torch's own integer operations (the generic path, in int64 words) take the place of
    this one under ``torch.compile`` and ``torch.func`` transforms, and on CUDA.
    """

    def __init__(self, backend: Backend, key: Philox, device: Any, axis: int) -> None:
        super().__init__(backend, key, device, axis)
        from . import backend_of

        seed, offset = (
            v.numpy() if isinstance(v, torch.Tensor) else v for v in (key.seed, key.offset)
        )
        numpy_backend = backend_of(np.zeros(0))
        self.numpy = NumpyPhiloxSource(numpy_backend, Philox(seed, offset=offset), "cpu", axis)

    def skip(self) -> None:
        self.numpy.skip()

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.from_numpy(self.numpy.standard_gumbel(shape, _NP_DTYPES[dtype]))

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.from_numpy(self.numpy.standard_exponential(shape, _NP_DTYPES[dtype]))

    def words(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        return tuple(torch.from_numpy(w.astype(np.int64)) for w in self.numpy.words(shape))  # type: ignore[return-value]


def _plain_cpu_key_part(v: Any) -> bool:
    """A seed or offset the NumPy kernel can read: an int, NumPy, or a plain CPU tensor."""
    if isinstance(v, (int, np.ndarray)):
        return True
    return (
        isinstance(v, torch.Tensor)
        and v.device.type == "cpu"
        and not v.requires_grad
        and plain_eager(v)
    )


class TorchSource:
    """Exp(1) draws at 53-bit resolution (see ``relaxcat/_noise.py``), on the tensor's device.

    * an int seed on the CPU: a NumPy ``Generator`` seeded with it (torch's CPU generator
      keeps only 32 bits of a seed, so ``s`` and ``s + 2**32`` would draw the same noise);
    * otherwise torch's generator (the default one, or the one passed): float64 uniforms
      ``U = k * 2**-53`` and ``E = -log(max(U, 2**-54))``, so ``2**-53 <= E <= 37.4``;
    * large CPU draws outside ``torch.compile``: ``_torch_cpu.exponential_blocks`` (float32
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
        """The draws of :meth:`standard_exponential` as a NumPy array (CPU, eager).

        ``shape`` should be a tuple of ints: torch parses a ``torch.Size`` (symbolic sizes)
        microseconds slower, which the tiny path feels.
        """
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
            and not compiling()
            and not transforms_active()
            and _cuda_kernels() is not None
        )

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if self._kernels():
            return _cuda_noise(self, shape, dtype, exponential=True)
        if self.device.type == "cpu" and not compiling():
            if math.prod(shape) >= PARALLEL_MIN:
                return exponential_blocks(shape, dtype, self._block_seed())
            if self.numpy is not None:
                return torch.from_numpy(numpy_exponential(self.numpy, shape, _NP_DTYPES[dtype]))
        u = self._uniform64(shape)
        if transforms_active():  # vmap has no batching rule for clamp_: a slow fallback, warned
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
        return e.log() if transforms_active() else e.log_()

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if self._kernels():
            return _cuda_noise(self, shape, dtype)
        return self.log_exponential(shape, dtype).neg_()


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

    def philox_words(self) -> str:
        return "int64"  # torch lacks unsigned 64-bit multiplication and shifts on the CPU

    def __init__(self) -> None:
        super().__init__(xp_torch)

    def device(self, x: Any) -> Any:
        return x.device

    def same_device(self, a: Any, b: Any) -> bool:
        return _canonical(torch.device(a)) == _canonical(torch.device(b))

    def errstate(self) -> Any:
        return contextlib.nullcontext()

    def values_readable(self, x: Any) -> bool:
        if compiling() or x.device.type != "cpu":
            return False
        return not transformed(x)

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def tracks_gradients(self, x: Any) -> bool:
        # Ordered so that a plain tensor is answered by three cheap reads (the 1x10 fast
        # path pays for this call): its flag, the dual level, the functorch transforms.
        if x.requires_grad and torch.is_grad_enabled():
            return True
        if _forward_ad._current_level >= 0 and is_dual(x):
            return True  # forward-mode AD ignores torch.no_grad: never drop the tangent
        if _are_transforms_active is None or not _are_transforms_active():
            return False  # transforms_active(), written out: every eager call asks
        # Inside torch.func.grad/vjp/jvp/vmap the flag is not reliable.
        return torch.is_grad_enabled() and not compiling() and transformed(x)

    def philox_source(self, key: Philox, device: Any, axis: int) -> NoiseSource:
        if (
            device.type == "cpu"
            and not compiling()
            and _plain_cpu_key_part(key.seed)
            and _plain_cpu_key_part(key.offset)
        ):
            return TorchCpuPhiloxSource(self, key, device, axis)
        return super().philox_source(key, device, axis)

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
        rule = ReinMaxRule if compiling() else ReinMaxRuleWithJvp
        return rule.apply(x, hot, pi0, pi1, axis)

    # -- kernels ---------------------------------------------------------------------
    def fused_sample(self, p: Prepared, source: NoiseSource | None, noise: Any, hard: bool) -> Any:
        """Eager torch: noise, sample and one-hot in one buffer; a registered backward.

        Used outside ``torch.compile`` and ``torch.func`` transforms, for a Python ``tau``,
        and not for dual tensors of ``torch.autograd.forward_ad`` (its Functions define no
        forward rule; the generic path is written with differentiable torch operations).
        On a GPU with CuPy: the fused CUDA kernels; elsewhere ``_torch_cpu.eager_sample``,
        the generic formula in place (same operations, same order), so its values equal
        the generic path's.
        """
        if type(p.tau) is not float or not plain_eager(p.x):
            return None
        torch_source = source if isinstance(source, TorchSource) else None
        if noise is None and torch_source is None:
            return None
        tracks = p.gradient_needed()  # the one rule (tau is a Python float here)
        if p.x.is_cuda:
            kernels = _cuda_kernels()
            if kernels is not None and p.tau >= kernels.MIN_TAU:
                return _cuda_sample(p, torch_source, noise, hard, tracks)
        return eager_sample(p, torch_source, noise, hard, tracks)


# -- CUDA: the fused kernels of ``_cuda.py`` through DLPack ------------------------------
_CUDA: Any = None  # the ``_cuda`` module, False when CuPy is unusable, None before the check


def _cuda_kernels() -> Any:
    """The fused-kernel module if CuPy can be imported, else None (the torch path is used)."""
    global _CUDA
    if _CUDA is None:
        if compiling():
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
        return softmax_vjp(y, grad, tau, -1)
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
        grad = sum_grads(grad_hot, grad_soft)
        if grad is None:
            return None, None, None, None, None, None, None
        return _cuda_vjp(y, grad, ctx.tau), None, None, None, None, None, None


def _cuda_sample(
    p: Prepared, source: TorchSource | None, noise: Any, hard: bool, tracks: bool
) -> torch.Tensor:
    """The fused CUDA kernels on validated ``noise``, or on draws keyed by ``source``."""
    shape = tuple(p.x.shape)
    if noise is None:
        assert source is not None
        key, key_tensor, stream = source.philox_keys()
        x = p.x if tracks else p.logits  # untracked: read half precision as it is
        g2 = None
    else:
        key, key_tensor, stream = 0, None, 0
        x = p.x
        g2 = _to_rows(noise, p.axis)[0]
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
