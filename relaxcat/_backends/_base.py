"""The adapter contract, and the generic adapter that any array-API library gets.

An adapter answers the questions the array-API standard leaves open, and nothing else:

* **random numbers** - :meth:`Backend.noise_source` turns whatever the user passed as ``rng``
  into a :class:`NoiseSource`, one object with one method: "draw standard-exponential
  variates of this shape and dtype, on this device";
* **autodiff** - :meth:`Backend.stop_gradient` and :meth:`Backend.tracks_gradients`;
* **what can be inspected** - :meth:`Backend.values_readable` says whether the values of an
  array can be read now (not traced by a compiler, not lazy, not on an accelerator where a
  read would stall the stream), so argument checks that need values run only there;
* **registered gradient rules** - :meth:`Backend.reinmax` attaches an estimator's gradient to
  the one-hot sample. Its generic form below, written with ``stop_gradient``, defines the
  rule; the torch and JAX adapters register the same rule with their autodiff systems.
* **how to run a pure function** - :meth:`Backend.compiled` may compile the math of one
  call into a single computation (JAX: ``jax.jit``); the function is the same either way;
* **kernels** - :meth:`Backend.fused_sample` may compute one step that the library does
  faster natively (perturb, softmax or one-hot, and their backward) on inputs that the core
  has already validated; it never replaces the validation.

The sampling mathematics never lives here: it is written once, in ``relaxcat/_core.py`` and
``relaxcat/_estimators.py``, on the array-API namespace :attr:`Backend.xp`. Adapter modules
import nothing from ``relaxcat._core`` or ``relaxcat._validation`` at run time (only for
type checking), so the layers import in one direction.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

import numpy as np

from .._noise import numpy_exponential
from .._philox import Philox, PhiloxSource

if TYPE_CHECKING:
    from .._core import Prepared

Array = Any


class NoiseSource(Protocol):
    """Draws i.i.d. Exp(1) variates; the one random primitive every backend provides.

    A source may also define ``standard_gumbel(shape, dtype)``, a native version of
    ``-log(clip(E, E_MIN, E_MAX))`` that must give the same values as that formula applied to
    its own ``standard_exponential`` draws (a test holds it to this). Anything else a
    library's kernels need from its own source (raw generators, Philox keys, in-place
    logarithms) is a member of that library's source class: its
    :meth:`Backend.fused_sample` receives a ``NoiseSource`` and narrows it with
    ``isinstance``, so no other source has to provide it.
    """

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Array:
        """Return Exp(1) draws of ``shape`` and ``dtype`` on the source's device.

        The draws must resolve both tails of ``E`` at 53 bits or finer before rounding to
        ``dtype`` (see ``relaxcat/_noise.py``). They may contain an exact zero (with
        probability about 2**-53 per draw); the caller clamps to ``[E_MIN, E_MAX]``.
        """
        ...


def library_of(obj: object) -> str:
    """Name of the top-level package that defines ``type(obj)``, e.g. ``"torch"``."""
    module = type(obj).__module__ or ""
    top = module.partition(".")[0]
    return "jax" if top == "jaxlib" else top


def with_article(word: str) -> str:
    """``word`` after "a" or "an", for messages: "an array_api_strict", "a NumPy"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def is_seed(rng: object) -> TypeGuard[numbers.Integral]:
    """True for a Python or NumPy integer used as a seed (``bool`` is not a seed)."""
    if type(rng) is int:
        return True
    return isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_))


def check_seed(seed: numbers.Integral) -> int:
    """``seed`` as a Python int in ``[0, 2**64)``: every such seed gives its own noise."""
    value = int(seed)
    if not 0 <= value < 2**64:
        raise ValueError(
            f"rng={value}: an integer seed must be in [0, 2**64); reduce it first, e.g. "
            f"rng=seed % 2**64, or pass a generator."
        )
    return value


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
            return numpy_exponential(self.generator, shape, dtype)
        np_dtype = np.float32 if self.xp.finfo(dtype).bits == 32 else np.float64
        draws = numpy_exponential(self.generator, shape, np_dtype)
        return self.xp.asarray(draws, device=self.device)


_default_numpy_generator: np.random.Generator | None = None
_default_lock = threading.Lock()


def _forget_default_generator() -> None:
    """A forked child seeds its own generator: otherwise every worker draws the same noise."""
    global _default_numpy_generator
    _default_numpy_generator = None


os.register_at_fork(after_in_child=_forget_default_generator)


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

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp
        #: dtype -> compute dtype, filled by ``relaxcat._validation.compute_dtype``.
        self.compute_dtypes: dict[Any, Any] = {}

    # -- devices ---------------------------------------------------------------------
    def device(self, x: Array) -> Any:
        from array_api_compat import device

        return device(x)

    def same_device(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    def align(self, a: Array, device: Any) -> Array:
        """``a``, already on ``device``, laid out to combine element-wise with the logits.

        Explicit noise and array temperatures pass through here, so that a result keeps
        the logits' layout. Here ``a`` itself; Dask rechunks it to the logits' chunks.
        """
        return a

    def positions(self, n: int, axis: int, ndim: int, dtype: Any, device: Any) -> Array:
        """``0, 1, ..., n - 1`` along ``axis`` of an ``ndim``-d array, size 1 elsewhere.

        Compared with an argmax to build a one-hot. Dask lays it out in the chunks of the
        category axis, so that the one-hot has the logits' chunks.
        """
        shape = [1] * ndim
        shape[axis] = n
        return self.xp.reshape(self.xp.arange(n, dtype=dtype, device=device), tuple(shape))

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
        """Whether a derivative may flow through ``x``, in reverse or forward mode.

        Soft values are computed only where one may; samplers ask through
        ``relaxcat._core.Prepared.gradient_needed``, which applies this to the logits and ``tau``.
        """
        return False

    # -- random numbers --------------------------------------------------------------
    def philox_words(self) -> str:
        """Integer words for :class:`relaxcat.Philox` (see ``relaxcat/_philox.py``).

        "uint64" where the library multiplies and shifts unsigned 64-bit integers, else
        "int64" or "uint32".
        """
        return "uint64"

    def noise_source(self, rng: object, device: Any, axis: int = -1) -> NoiseSource:
        """Turn the user's ``rng`` into a :class:`NoiseSource` on ``device``.

        ``axis`` (negative) is the category axis of the shapes drawn; only a
        :class:`relaxcat.Philox` key with one seed per row uses it.
        """
        if isinstance(rng, Philox):
            return self.philox_source(rng, device, axis)
        if rng is None:
            return self.default_source(device)
        if is_seed(rng):
            return self.seeded_source(check_seed(rng), device)
        owner = library_of(rng)
        if owner not in self.rng_libraries:
            raise TypeError(
                f"rng is {with_article(owner)} object ({type(rng).__name__}) but the array is "
                f"{with_article(self.name)} array; pass {self.rng_hint}."
            )
        return self.wrap_generator(rng, device)

    def philox_source(self, key: Philox, device: Any, axis: int) -> NoiseSource:
        """The portable source of a :class:`relaxcat.Philox` key, on this namespace."""
        return PhiloxSource(self, key, device, axis)

    def key_readable(self, v: Any) -> bool:
        """Whether the values of a seed or offset array may be read (to check them)."""
        return self.values_readable(v)

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

    # -- kernels ---------------------------------------------------------------------
    def fused_sample(
        self, p: Prepared, source: NoiseSource | None, noise: Array | None, hard: bool
    ) -> Array | None:
        """``gumbel_softmax``'s sample computed natively, or None to use the generic one.

        The core has validated everything before this runs: ``p`` is the prepared call,
        ``noise`` is the user's noise, checked and in the compute dtype, or None; then
        ``source`` is the :meth:`noise_source` of the user's ``rng``, which the kernel draws
        from exactly as the generic path would (``relaxcat._core.Prepared.draw``), so that
        ``gumbel_softmax(x, rng=seed)`` and ``gumbel_noise(x, rng=seed)`` stay consistent.
        An override returns the sample in the compute dtype or the logits' dtype (the core
        casts it with ``p.out``); its values must be those of the generic path
        (``tests/test_fast_paths.py`` holds it to that). It may decline (return None) before
        it draws anything; the generic path then draws from the same ``source``.
        """
        return None

    # -- estimators ------------------------------------------------------------------
    # Gradient rules of the hard-sample estimators (relaxcat/_estimators.py). The generic
    # form here is the definition: it is written with stop_gradient on the array-API
    # namespace, so it is correct on any library with autodiff. An adapter may replace it
    # with a rule registered with its autodiff system, and a test holds the two equal.

    def reinmax(self, x: Array, hot: Array, pi0: Array, pi1: Array, axis: int) -> Array:
        """``hot`` in the forward pass; ReinMax's gradient ``2 J(pi1) g - 0.5 J(pi0) g`` to ``x``.

        ``J(p) = diag(p) - p p^T`` is the softmax Jacobian at ``p``; ``pi0``, ``pi1`` and
        ``hot`` carry no gradient. Written as ``hot`` plus the rule applied to the tangent
        ``t = x - stop_gradient(x)``: ``t`` is exactly zero, so the forward value is exactly
        ``hot``, and its derivative with respect to ``x`` is the identity. Masked (-inf)
        logits are replaced by 0 in ``t`` (they have ``p = 0``, so their gradient is 0).
        """
        xp = self.xp
        finite = xp.where(x == -math.inf, xp.zeros_like(x), x)
        t = finite - self.stop_gradient(finite)
        return hot + reinmax_jvp(xp, pi0, pi1, t, axis)


def softmax_jvp(xp: Any, p: Array, t: Array, axis: int) -> Array:
    """``J(p) t = p * (t - sum(p * t))`` along ``axis``: the softmax Jacobian at ``p`` times ``t``.

    ``J(p)`` is symmetric, so this is also the vector-Jacobian product.
    """
    return p * (t - xp.sum(p * t, axis=axis, keepdims=True))


def reinmax_jvp(xp: Any, pi0: Array, pi1: Array, t: Array, axis: int) -> Array:
    """ReinMax's rule applied to ``t``: ``2 J(pi1) t - 0.5 J(pi0) t``, also its VJP."""
    return 2.0 * softmax_jvp(xp, pi1, t, axis) - 0.5 * softmax_jvp(xp, pi0, t, axis)
