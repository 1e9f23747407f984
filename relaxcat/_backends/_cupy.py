"""CuPy adapter: counter-based noise and a fused sampler on the array's GPU. Never imports torch.

All random numbers come from the Philox4x32-10 kernels in ``_cuda.py``, one stream per
draw: ``rng`` decides the 64-bit key (an int seed is the key; ``None`` a per-process random
key and a new stream per draw; a CuPy ``Generator``/``RandomState`` draws the key on the
device, without a host synchronisation). Gumbel and exponential draws are two forms of the
same stream, so every sampler sees the same noise for the same ``rng``.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

import array_api_compat.cupy as xp_cupy
import cupy

from . import _cuda
from ._base import Backend, NoiseSource, with_article

if TYPE_CHECKING:
    from .._core import Prepared


class Keys:
    """Where each draw's Philox ``(key, key_array, stream)`` comes from."""

    def __init__(self, key: int = 0, key_array: Any = None, fresh: bool = False) -> None:
        self.key, self.key_array, self.fresh = key, key_array, fresh
        self.stream = 0

    def take(self) -> tuple[int, Any, int]:
        if self.fresh:
            key, stream = _cuda.fresh_key()
            return key, None, stream
        stream, self.stream = self.stream, self.stream + 1
        return self.key, self.key_array, stream


def key_from_generator(rng: Any) -> Any:
    """A 63-bit key drawn on the device by a CuPy generator (no host synchronisation)."""
    high = 2**63 - 1
    if isinstance(rng, cupy.random.Generator):
        return rng.integers(0, high, size=1, dtype=cupy.int64)
    return rng.randint(0, high, size=1, dtype=cupy.int64)


def kind_of(dtype: Any) -> str:
    return cupy.dtype(dtype).name


class CupySource:
    """Philox draws on ``device``, each keyed by the next ``keys.take()``."""

    def __init__(self, device: Any, keys: Keys) -> None:
        self.device = device
        self.keys = keys

    def _draw(self, shape: tuple[int, ...], dtype: Any, exponential: bool) -> Any:
        with self.device:
            out = cupy.empty(shape, dtype)
            key, key_array, stream = self.keys.take()
            _cuda.noise(
                out,
                kind=kind_of(dtype),
                key=key,
                key_array=key_array,
                stream=stream,
                exponential=exponential,
            )
            return out

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._draw(shape, dtype, exponential=True)

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._draw(shape, dtype, exponential=False)


class CupyBackend(Backend):
    name = "cupy"
    rng_libraries = ("cupy",)
    rng_hint = "an int seed, a cupy.random.Generator or a cupy.random.RandomState"

    def __init__(self) -> None:
        super().__init__(xp_cupy)

    def device(self, x: Any) -> Any:
        return x.device

    def same_device(self, a: Any, b: Any) -> bool:
        return bool(a.id == b.id)

    def errstate(self) -> Any:
        return contextlib.nullcontext()

    def values_readable(self, x: Any) -> bool:
        return False  # a read would synchronise the stream on every call

    def default_source(self, device: Any) -> NoiseSource:
        return CupySource(device, Keys(fresh=True))

    def seeded_source(self, seed: int, device: Any) -> NoiseSource:
        return CupySource(device, Keys(key=seed))

    def wrap_generator(self, rng: Any, device: Any) -> NoiseSource:
        if not isinstance(rng, (cupy.random.Generator, cupy.random.RandomState)):
            raise TypeError(f"rng is {with_article(type(rng).__name__)}; pass {self.rng_hint}.")
        with device:
            return CupySource(device, Keys(key_array=key_from_generator(rng)))

    # -- kernels ---------------------------------------------------------------------
    def fused_sample(self, p: Prepared, source: NoiseSource | None, noise: Any, hard: bool) -> Any:
        """The fused kernel: noise, row statistics and the sample in one or two passes."""
        if type(p.tau) is not float or p.tau < _cuda.MIN_TAU:
            return None
        if noise is not None:
            x, g = p.x, noise
            key, key_array, stream = 0, None, 0
        elif isinstance(source, CupySource):
            x, g = p.logits, None  # read in its own dtype (float16 is widened in registers)
            key, key_array, stream = source.keys.take()
        else:
            return None
        with p.device:  # the cast back on the logits' device too (the core's p.out: a no-op)
            return p.out(launch_forward(x, g, p.axis, p.tau, hard, key, key_array, stream))


def to_rows(a: Any, axis: int) -> tuple[Any, int]:
    """``a`` as a C-contiguous ``(rows, n)`` array with ``axis`` last, and ``inner``."""
    inner = math.prod(a.shape[axis + 1 :])
    if axis != a.ndim - 1:
        a = cupy.moveaxis(a, axis, -1)
    a = cupy.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1]), inner


def from_rows(out: Any, shape: tuple[int, ...], axis: int) -> Any:
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    out = out.reshape(moved)
    if axis != len(shape) - 1:
        out = cupy.ascontiguousarray(cupy.moveaxis(out, -1, axis))
    return out


def launch_forward(
    x: Any, g: Any, axis: int, tau: float, hard: bool, key: int, key_array: Any, stream: int
) -> Any:
    shape = tuple(x.shape)
    x2, inner = to_rows(x, axis)
    g2 = None if g is None else to_rows(g, axis)[0]
    out = cupy.empty_like(x2)
    _cuda.forward(
        x2,
        kind=kind_of(x2.dtype),
        tau=tau,
        hard_out=out if hard else None,
        soft_out=None if hard else out,
        noise=g2,
        key=key,
        key_array=key_array,
        stream=stream,
        inner=inner,
    )
    return from_rows(out, shape, axis)
