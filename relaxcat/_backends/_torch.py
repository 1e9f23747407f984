"""PyTorch adapter: ``torch.Generator`` on the tensor's device, ``detach``, compile awareness."""

from __future__ import annotations

import contextlib
from typing import Any

import array_api_compat.torch as xp_torch
import torch

from ._base import Backend, NoiseSource, reinmax_jvp

_functorch = getattr(torch._C, "_functorch", None)
_is_functorch_wrapped = getattr(_functorch, "is_functorch_wrapped_tensor", None)


def _canonical(device: torch.device) -> torch.device:
    """``cuda`` and ``cuda:<current>`` are the same device; give both an index."""
    if device.index is None and device.type != "cpu":
        module = getattr(torch, device.type, None)
        if module is not None and hasattr(module, "current_device"):
            return torch.device(device.type, module.current_device())
    return device


class TorchSource:
    """Exp(1) as ``-log(U)``: ``torch.rand`` is several times faster than ``exponential_``."""

    def __init__(self, generator: torch.Generator | None, device: torch.device) -> None:
        self.generator = generator
        self.device = device

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if self.generator is None:
            # Not generator=None: that overload of rand takes no symbolic sizes, so
            # torch.compile with dynamic shapes (a batch size, a number of samples) fails.
            u = torch.rand(shape, dtype=dtype, device=self.device)
        else:
            u = torch.rand(shape, dtype=dtype, device=self.device, generator=self.generator)
        # U == 0 gives +inf, clamped by the caller; U < 1 always, so no exact zeros.
        return u.log_().neg_()


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
        if not torch.is_grad_enabled():
            return False
        if torch.compiler.is_compiling():
            return bool(x.requires_grad)
        if _is_functorch_wrapped is not None and _is_functorch_wrapped(x):
            return True  # inside torch.func.grad/vjp/vmap the flag is not reliable
        return bool(x.requires_grad)

    def default_source(self, device: Any) -> NoiseSource:
        return TorchSource(None, device)  # torch's default generator: torch.manual_seed applies

    def seeded_source(self, seed: int, device: Any) -> NoiseSource:
        return TorchSource(torch.Generator(device=device).manual_seed(seed), device)

    def wrap_generator(self, rng: Any, device: Any) -> NoiseSource:
        if not isinstance(rng, torch.Generator):
            raise TypeError(f"rng is a {type(rng).__name__}; pass {self.rng_hint}.")
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
