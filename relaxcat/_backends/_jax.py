"""JAX adapter: explicit PRNG keys (typed or raw), ``lax.stop_gradient``, tracer awareness.

Sharded arrays: the "device" of an array that spans several devices is its ``Sharding``.
Noise for it is generated with that sharding, each device drawing its own block (JAX's
random bits do not depend on how an array is sharded, so the sample equals the unsharded
one for the same key). Under ``jax.jit`` the placement is the compiler's: XLA's sharding
propagation partitions the generator like the logits it is added to.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from .._noise import exponential_from_words, gumbel_from_exponential
from .._philox import PhiloxSource, word_dtype
from .._philox import words as philox_words
from ._base import Backend, NoiseSource, reinmax_jvp, with_article

if TYPE_CHECKING:
    from .._core import Prepared


def _find_trace_state_clean() -> Callable[[], bool] | None:
    """JAX's private "no transformation is tracing" test, or None.

    Looked up defensively, as the torch adapter does with functorch; without it, only
    tracers count as unreadable.
    """
    try:
        from jax._src import core
    except ImportError:  # pragma: no cover
        return None
    return getattr(core, "trace_state_clean", None)


_trace_state_clean = _find_trace_state_clean()

# Completed by the caller: noise= is advice only where no rng was passed at all.
_NEEDS_KEY = (
    "JAX has no global random state, so relaxcat needs a PRNG key for JAX arrays: pass "
    "rng=jax.random.key(0) (split it between calls) or an int seed"
)


def is_key(rng: Any) -> bool:
    """A typed key (``jax.random.key``) or a raw ``uint32`` key (``jax.random.PRNGKey``)."""
    if not isinstance(rng, jax.Array):
        return False
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return True
    return rng.dtype == jnp.uint32 and rng.shape in _RAW_KEY_IMPLS


#: Raw key shapes and the implementation each stands for when the default does not fit.
_RAW_KEY_IMPLS = {(2,): "threefry2x32", (4,): "rbg"}


def typed_key(rng: Any) -> Any:
    """``rng`` as a typed key: raw ``uint32[2]`` is threefry, ``uint32[4]`` rbg.

    A raw key of the default implementation's shape is that implementation (so raw
    ``unsafe_rbg`` keys work where it is the default).
    """
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return rng
    try:
        return jax.random.wrap_key_data(rng)
    except (TypeError, ValueError):
        return jax.random.wrap_key_data(rng, impl=_RAW_KEY_IMPLS[tuple(rng.shape)])


def seed_key(seed: int) -> Any:
    """The threefry key of a 64-bit seed: both 32-bit halves are key words.

    For seeds below 2**31 this is ``jax.random.key(seed)``; ``jax.random.key`` itself
    keeps only 32 bits without x64, so ``s`` and ``s + 2**32`` would share a key.
    """
    words = jnp.asarray(np.array([seed >> 32, seed & 0xFFFFFFFF], dtype=np.uint32))
    return jax.random.wrap_key_data(words, impl="threefry2x32")


def _is_threefry(key: Any) -> bool:
    return str(jax.random.key_impl(key)) == "threefry2x32"


def exponential(key: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """Exp(1) draws with exact tails: two 32-bit words per element (``relaxcat/_noise.py``).

    For a threefry key the words of element ``i`` are the two outputs of one Threefry-2x32
    block, counters ``i`` and ``n + i``: as many blocks as ``jax.random.bits`` computes for
    ``n`` 32-bit words, so the exact tail costs no extra random numbers. Other
    implementations draw ``(2, *shape)`` words with ``jax.random.bits``.
    """
    n = math.prod(shape)
    if _is_threefry(key) and 0 < n < 2**31:
        words = threefry_2x32(jax.random.key_data(key), jax.lax.iota(jnp.uint32, 2 * n))
        hi, lo = jnp.reshape(words[:n], shape), jnp.reshape(words[n:], shape)
    else:
        bits = jax.random.bits(key, (2, *shape), jnp.uint32)
        hi, lo = bits[0], bits[1]
    return exponential_from_words(jnp, hi, lo, dtype)


class JaxSource:
    """Draw ``i`` of one call uses ``fold_in(key, i)``: deterministic and jit/vmap safe."""

    def __init__(self, key: Any, device: Any) -> None:
        self.key = key
        self.count = 0
        self.device = device

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._draw(shape, dtype, False)

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """``gumbel_from_exponential`` of the next exponential draw, computed with it.

        Eagerly, the clamp, log and negation would each be compiled on their own for every
        new shape; here they are part of the draw's one computation (the same values).
        """
        return self._draw(shape, dtype, True)

    def _draw(self, shape: tuple[int, ...], dtype: Any, gumbel: bool) -> Any:
        key = jax.random.fold_in(self.key, self.count)
        self.count += 1
        if isinstance(self.device, jax.sharding.Sharding) and not isinstance(key, jax.core.Tracer):
            return sharded_exponential(key, shape, dtype, self.device, gumbel)
        draws = _exponential(key, shape, dtype, gumbel)
        if isinstance(self.device, jax.Device) and not isinstance(draws, jax.core.Tracer):
            draws = jax.device_put(draws, self.device)
        return draws


def _exponential_or_gumbel(key: Any, shape: tuple[int, ...], dtype: Any, gumbel: bool) -> Any:
    e = exponential(key, shape, dtype)
    return gumbel_from_exponential(jnp, e) if gumbel else e


_exponential = jax.jit(_exponential_or_gumbel, static_argnums=(1, 2, 3))
_exponential_by_sharding: dict[Any, Callable[..., Any]] = {}


def sharded_exponential(
    key: Any, shape: tuple[int, ...], dtype: Any, sharding: Any, gumbel: bool = False
) -> Any:
    """Exp(1) draws (or their Gumbel noise) laid out with ``sharding``, one block a device.

    A shape that the sharding cannot split (the ``(samples, *shape)`` draws of Gumbel-Rao,
    say) is drawn as usual and left to JAX to place.
    """
    try:
        sharding.shard_shape(shape)
    except (ValueError, TypeError, IndexError):
        return _exponential(key, shape, dtype, gumbel)
    draw = _exponential_by_sharding.get(sharding)
    if draw is None:
        draw = jax.jit(_exponential_or_gumbel, static_argnums=(1, 2, 3), out_shardings=sharding)
        _exponential_by_sharding[sharding] = draw
    return draw(key, shape, dtype, gumbel)


def _philox_noise(
    parts: tuple[Any, ...],
    kind: str,
    shape: tuple[int, ...],
    shapes: tuple[tuple[int, ...], ...],
    stream: int,
    dtype: Any,
    gumbel: bool,
) -> Any:
    """A Philox stream's Exp(1) draws (or Gumbel noise): ``PhiloxSource``'s operations."""
    part_shapes = (shapes[0], shapes[0], shapes[1], shapes[1])
    arrays = [jnp.reshape(p, s) for p, s in zip(parts, part_shapes, strict=True)]
    hi, lo = philox_words(jnp, kind, shape, arrays, list(shapes), stream, None)
    e = exponential_from_words(jnp, hi, lo, dtype)
    return gumbel_from_exponential(jnp, e) if gumbel else e


# Eagerly, Philox's ten rounds are a hundred primitives, each compiled on its own for every
# new shape (about 2 s); as one jitted computation, a tenth of that.
_philox_noise_jit = jax.jit(_philox_noise, static_argnums=(1, 2, 3, 4, 5, 6))


class JaxPhiloxSource(PhiloxSource):
    """A :class:`relaxcat.Philox` key's draws; eagerly on one CPU device, jitted per shape.

    The same operations as :class:`PhiloxSource` (so the same values); under a
    transformation, on accelerators and for sharded arrays, they are the generic ones.
    """

    def _jitted(self, shape: tuple[int, ...], dtype: Any, gumbel: bool) -> Any:
        device = self.device
        if not isinstance(device, jax.Device) or device.platform != "cpu":
            return None
        if _trace_state_clean is not None and not _trace_state_clean():
            return None
        parts = self._parts()
        if any(isinstance(p, jax.core.Tracer) for p in parts):
            return None
        stream = self.next_stream()
        shape = tuple(shape)
        shapes = self.key_shapes(shape)
        dtype_w = word_dtype(jnp, self.kind)
        arrays = tuple(jnp.asarray(p, dtype=dtype_w) for p in parts)
        return _philox_noise_jit(arrays, self.kind, shape, shapes, stream, dtype, gumbel)

    def standard_exponential(self, shape: tuple[int, ...], dtype: Any) -> Any:
        e = self._jitted(shape, dtype, False)
        return super().standard_exponential(shape, dtype) if e is None else e

    def standard_gumbel(self, shape: tuple[int, ...], dtype: Any) -> Any:
        g = self._jitted(shape, dtype, True)
        if g is None:
            return gumbel_from_exponential(jnp, super().standard_exponential(shape, dtype))
        return g


def _fused(x: Any, key: Any, tau: Any, axis: int, hard: bool) -> tuple[Any, Any, Any]:
    """The generic sample as one computation: the same operations in the same order.

    ``g = -log(clip(E))`` (:func:`gumbel_from_exponential`) from :func:`exponential` (as
    ``JaxSource`` draws it), then :func:`_sample_from_noise`.
    """
    return _sample_from_noise(
        x, gumbel_from_exponential(jnp, exponential(key, x.shape, x.dtype)), tau, axis, hard
    )


def _sample_from_noise(x: Any, g: Any, tau: Any, axis: int, hard: bool) -> tuple[Any, Any, Any]:
    """The generic sample from the noise ``g``: the same operations in the same order.

    ``s = x + g``, the row maximum, then ``softmax((s - m) / tau)`` or, for ``hard``, the
    one-hot of the first maximum. Only eager calls outside any transformation get here, so
    nothing can differentiate the result: as the generic path does when no gradient is
    needed, the hard sample leaves out the soft sample (its straight-through bracket adds
    exactly 0). Returns ``(y, m, all(isfinite(m)))``: the caller diagnoses rows that are not
    finite, as the generic path does.
    """
    s = x + g
    m = jnp.max(s, axis=axis, keepdims=True)
    if hard:
        index = jnp.argmax(s, axis=axis, keepdims=True)
        shape = [1] * s.ndim
        shape[axis] = s.shape[axis]
        positions = jnp.reshape(jnp.arange(s.shape[axis], dtype=index.dtype), tuple(shape))
        return (positions == index).astype(x.dtype), m, jnp.all(jnp.isfinite(m))
    e = jnp.exp((s - m) / tau)
    return e / jnp.sum(e, axis=axis, keepdims=True), m, jnp.all(jnp.isfinite(m))


# Eagerly, a call would compile and dispatch each primitive on its own for every new shape;
# as one jitted computation it is compiled once per shape and runs as one.
_fused_jit = jax.jit(_fused, static_argnums=(3, 4))
_from_noise_jit = jax.jit(_sample_from_noise, static_argnums=(3, 4))


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def reinmax_rule(x: Any, hot: Any, pi0: Any, pi1: Any, axis: int) -> Any:
    """ReinMax registered with JAX: ``hot`` forward, tangent ``2 J(pi1) dx - 0.5 J(pi0) dx``.

    A JVP rule, linear in ``dx``: JAX transposes it for ``grad``, and it serves ``jvp``,
    ``jacfwd``, ``vmap`` and ``jit`` as well. ``hot``, ``pi0`` and ``pi1`` carry no gradient.
    """
    return hot


@reinmax_rule.defjvp
def _reinmax_rule_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    _, hot, pi0, pi1 = primals
    return hot, reinmax_jvp(jnp, pi0, pi1, tangents[0], axis)


class JaxBackend(Backend):
    name = "jax"
    rng_libraries = ("jax",)
    rng_hint = "a JAX PRNG key (jax.random.key(seed)) or an int seed"

    def __init__(self) -> None:
        super().__init__(jnp)
        self._compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}

    def philox_words(self) -> str:
        """64-bit words only where x64 is enabled; otherwise 32-bit words in 16-bit halves."""
        return "uint64" if jax.config.read("jax_enable_x64") else "uint32"

    def philox_source(self, key: Any, device: Any, axis: int) -> NoiseSource:
        # A sharding describes the logits' layout, not a place for small key arrays: the
        # noise is computed where JAX puts it and combines with the sharded logits.
        if not isinstance(device, jax.Device):
            device = None
        return JaxPhiloxSource(self, key, device, axis)

    def device(self, x: Any) -> Any:
        if isinstance(x, jax.core.Tracer):
            return None  # placement is decided by the enclosing transformation
        return x.sharding if len(x.devices()) > 1 else next(iter(x.devices()))

    def same_device(self, a: Any, b: Any) -> bool:
        return a is None or b is None or a == b

    def positions(self, n: int, axis: int, ndim: int, dtype: Any, device: Any) -> Any:
        if not isinstance(device, jax.Device):
            device = None  # a sharding of the logits does not fit a 1-d arange; JAX places it
        return super().positions(n, axis, ndim, dtype, device)

    def errstate(self) -> Any:
        return contextlib.nullcontext()

    def values_readable(self, x: Any) -> bool:
        if isinstance(x, jax.core.Tracer):
            return False
        # A concrete array captured by a jitted function (a constant tau, say) is not a
        # tracer, but every operation on it inside the trace gives one: nothing can be
        # read while any transformation is tracing.
        if _trace_state_clean is not None and not _trace_state_clean():
            return False
        return all(d.platform == "cpu" for d in x.devices())

    def compiled(
        self, fn: Callable[..., Any], static_argnums: tuple[int, ...]
    ) -> Callable[..., Any]:
        # Eagerly, every primitive of a function is compiled and dispatched on its own, per
        # new shape; jit makes that one computation. Inside an enclosing jit it is inlined.
        key = (fn, static_argnums)
        if key not in self._compiled:
            self._compiled[key] = jax.jit(fn, static_argnums=static_argnums)
        return self._compiled[key]

    def stop_gradient(self, x: Any) -> Any:
        return jax.lax.stop_gradient(x)

    def tracks_gradients(self, x: Any) -> bool:
        return True  # cannot be known before jax.grad traces through us

    def default_source(self, device: Any) -> NoiseSource:
        raise TypeError(_NEEDS_KEY + ", or pass noise=.")

    def seeded_source(self, seed: int, device: Any) -> NoiseSource:
        return JaxSource(seed_key(seed), device)

    def wrap_generator(self, rng: Any, device: Any) -> NoiseSource:
        if not is_key(rng):
            raise TypeError(
                f"rng is {with_article(type(rng).__name__)} of dtype "
                f"{getattr(rng, 'dtype', '?')} and shape {getattr(rng, 'shape', '?')}, not a "
                f"PRNG key. " + _NEEDS_KEY + "."
            )
        if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key) and rng.shape != ():
            raise TypeError(
                f"rng holds {rng.shape} keys; pass one key (use jax.vmap to map over keys)."
            )
        return JaxSource(typed_key(rng), device)

    # -- kernels ---------------------------------------------------------------------
    def fused_sample(self, p: Prepared, source: NoiseSource | None, noise: Any, hard: bool) -> Any:
        """Eager calls on one CPU device: the generic sample as one jitted computation.

        Declined under a transformation (``jit``, ``grad``, ``vmap``: the generic path is
        traced into it anyway), for an array ``tau``, sharded arrays and accelerators
        (where this was not measured). Explicit ``noise`` (validated by the caller) takes
        the sample's computation without the draw.
        """
        x, given = p.x, noise is not None
        if (
            type(p.tau) is not float
            or (noise is None and not isinstance(source, (JaxSource, JaxPhiloxSource)))
            or isinstance(x, jax.core.Tracer)
            or isinstance(noise, jax.core.Tracer)
            or (_trace_state_clean is not None and not _trace_state_clean())
            or not isinstance(p.device, jax.Device)
            or p.device.platform != "cpu"
        ):
            return None
        if noise is None and isinstance(source, JaxPhiloxSource):
            noise = source.standard_gumbel(tuple(x.shape), x.dtype)  # jitted per key shape
        if noise is not None:
            y, m, finite = _from_noise_jit(x, noise, p.tau, p.axis % x.ndim, hard)
        else:
            assert isinstance(source, JaxSource)
            key = jax.random.fold_in(source.key, source.count)  # as JaxSource draws
            source.count += 1
            y, m, finite = _fused_jit(x, key, p.tau, p.axis % x.ndim, hard)
        if not bool(finite):
            p.check_rows(m, given)  # raises with the diagnosis
        return y

    # -- estimators ------------------------------------------------------------------
    def reinmax(self, x: Any, hot: Any, pi0: Any, pi1: Any, axis: int) -> Any:
        return reinmax_rule(x, hot, pi0, pi1, axis)
