"""The adapter contract, and the generic adapter that any array-API library gets.

An adapter answers the questions the array-API standard leaves open, and nothing else:

* **random numbers** - :meth:`Backend.noise_source` turns whatever the user passed as ``rng``
  into a :class:`NoiseSource`, one object with one method: "draw standard-exponential
  variates of this shape and dtype, on this device";
* **autodiff** - :meth:`Backend.stop_gradient` and :meth:`Backend.tracks_gradients`;
* **what can be inspected** - :meth:`Backend.values_readable` says whether the values of an
  array can be read now (not traced by a compiler, not lazy, not on an accelerator where a
  read would stall the stream), so argument checks that need values run only there;
* **how to run a pure function** - :meth:`Backend.compiled` may compile the math of one
  call into a single computation (JAX: ``jax.jit``); the function is the same either way.

The mathematics never lives here: it is written once, in ``relaxcat/_core.py``, on the
array-API namespace :attr:`Backend.xp`.
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

import numpy as np

Array = Any


class NoiseSource(Protocol):
    """Draws i.i.d. Exp(1) variates; the one random primitive every backend provides."""

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """Return Exp(1) draws of ``shape`` and ``dtype`` on the source's device.

        The draws may contain exact zeros or ``inf``; the caller clamps them.
        """
        ...


def library_of(obj: object) -> str:
    """Name of the top-level package that defines ``type(obj)``, e.g. ``"torch"``."""
    module = type(obj).__module__ or ""
    top = module.partition(".")[0]
    return "jax" if top == "jaxlib" else top


def is_seed(rng: object) -> bool:
    """True for a Python or NumPy integer used as a seed (``bool`` is not a seed)."""
    return isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_))


def check_seed(seed: int) -> int:
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"rng={seed}: an integer seed must be non-negative.")
    return seed


class NumpyGeneratorSource:
    """Draw with a NumPy ``Generator``; hand the result to ``xp.asarray`` unless ``xp`` is None."""

    def __init__(
        self, generator: np.random.Generator, xp: ModuleType | None = None, device: Any = None
    ) -> None:
        self.generator = generator
        self.xp = xp
        self.device = device

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Array:
        if self.xp is None:
            return self.generator.standard_exponential(size=shape, dtype=dtype)
        np_dtype = np.float32 if self.xp.finfo(dtype).bits == 32 else np.float64
        draws = self.generator.standard_exponential(size=shape, dtype=np_dtype)
        return self.xp.asarray(draws, device=self.device)


_default_numpy_generator: np.random.Generator | None = None
_default_lock = threading.Lock()


def default_numpy_generator() -> np.random.Generator:
    """A process-wide NumPy generator seeded once from OS entropy (``rng=None``)."""
    global _default_numpy_generator
    if _default_numpy_generator is None:
        with _default_lock:
            if _default_numpy_generator is None:
                _default_numpy_generator = np.random.default_rng()
    return _default_numpy_generator


class Backend:
    """Adapter for one array library. Subclasses override only what differs.

    This base class is also the adapter for any array-API library that relaxcat has no
    special knowledge of (``array_api_strict`` among them): noise is drawn with NumPy and
    moved into the namespace with ``xp.asarray``, there is no autodiff, and values are
    readable.
    """

    #: Name users know the library by; used in messages.
    name: str = "array-API"
    #: Libraries whose generator objects this backend accepts as ``rng``.
    rng_libraries: tuple[str, ...] = ("numpy",)
    #: What to pass as ``rng``, for error messages.
    rng_hint: str = "an int seed or a numpy.random.Generator"
    #: Whether the library has reverse-mode autodiff that relaxcat must respect.
    has_autodiff: bool = False

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp

    # -- devices ---------------------------------------------------------------------
    def device(self, x: Array) -> Any:
        from array_api_compat import device

        return device(x)

    def same_device(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    # -- values ----------------------------------------------------------------------
    def values_readable(self, x: Array) -> bool:
        """Whether ``bool(...)`` on a reduction of ``x`` is cheap and allowed right now."""
        return True

    def errstate(self) -> Any:
        """Context in which overflow to +-inf is expected and must not warn.

        ``(s - max) / tau`` may overflow to ``-inf`` for tiny ``tau``; ``exp`` then gives the
        correct 0. NumPy-backed namespaces would warn about it.
        """
        return np.errstate(over="ignore", under="ignore")

    # -- compilation -----------------------------------------------------------------
    def compiled(
        self, fn: Callable[..., Any], static_argnums: tuple[int, ...]
    ) -> Callable[..., Any]:
        """``fn`` as this library runs it best: here ``fn`` itself.

        ``fn`` is a pure function of arrays; the arguments at ``static_argnums`` are
        hashable configuration (the adapter, an axis, ``k``, flags). JAX compiles it into
        one XLA computation, which an eager call would otherwise run op by op. The result
        is the same function: the semantics live in ``fn`` alone.
        """
        return fn

    # -- autodiff --------------------------------------------------------------------
    def stop_gradient(self, x: Array) -> Array:
        return x

    def tracks_gradients(self, x: Array) -> bool:
        """Whether a gradient may flow back through ``x`` (so soft values are needed)."""
        return False

    # -- random numbers --------------------------------------------------------------
    def noise_source(self, rng: object, device: Any) -> NoiseSource:
        """Turn the user's ``rng`` into a :class:`NoiseSource` on ``device``."""
        if rng is None:
            return self.default_source(device)
        if is_seed(rng):
            return self.seeded_source(check_seed(rng), device)  # type: ignore[arg-type]
        owner = library_of(rng)
        if owner not in self.rng_libraries:
            raise TypeError(
                f"rng is a {owner} object ({type(rng).__name__}) but the array is a "
                f"{self.name} array; pass {self.rng_hint}."
            )
        return self.wrap_generator(rng, device)

    def default_source(self, device: Any) -> NoiseSource:
        return self._numpy_source(default_numpy_generator(), device)

    def seeded_source(self, seed: int, device: Any) -> NoiseSource:
        return self._numpy_source(np.random.default_rng(seed), device)

    def wrap_generator(self, rng: Any, device: Any) -> NoiseSource:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng is a {type(rng).__module__}.{type(rng).__name__}; pass {self.rng_hint} "
                "(legacy RandomState objects are not accepted: use numpy.random.default_rng)."
            )
        return self._numpy_source(rng, device)

    def _numpy_source(self, generator: np.random.Generator, device: Any) -> NoiseSource:
        return NumpyGeneratorSource(generator, self.xp, device)
