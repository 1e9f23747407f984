"""CuPy adapter: CuPy's own generators, drawn on the array's GPU. Never imports torch."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import array_api_compat.cupy as xp_cupy
import cupy

from ._base import Backend, NoiseSource

_defaults: dict[int, Any] = {}
_lock = threading.Lock()


class CupySource:
    def __init__(self, generator: Any, device: Any) -> None:
        self.generator = generator
        self.device = device

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        with self.device:
            return self.generator.standard_exponential(size=shape, dtype=dtype)


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
        if device.id not in _defaults:
            with _lock, device:
                _defaults.setdefault(device.id, cupy.random.default_rng())
        return CupySource(_defaults[device.id], device)

    def seeded_source(self, seed: int, device: Any) -> NoiseSource:
        with device:
            return CupySource(cupy.random.default_rng(seed), device)

    def wrap_generator(self, rng: Any, device: Any) -> NoiseSource:
        if not isinstance(rng, (cupy.random.Generator, cupy.random.RandomState)):
            raise TypeError(f"rng is a {type(rng).__name__}; pass {self.rng_hint}.")
        return CupySource(rng, device)
