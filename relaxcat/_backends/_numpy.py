"""NumPy adapter: NumPy's own ``Generator`` (ziggurat exponentials), no autodiff."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from ._base import Backend, NoiseSource, NumpyGeneratorSource


class NumpyBackend(Backend):
    name = "numpy"
    rng_libraries = ("numpy",)
    rng_hint = "an int seed or a numpy.random.Generator"

    def __init__(self) -> None:
        super().__init__(xp_numpy)

    def device(self, x: Any) -> Any:
        return "cpu"

    def _numpy_source(self, generator: np.random.Generator, device: Any) -> NoiseSource:
        return NumpyGeneratorSource(generator)  # already NumPy: no conversion
