"""The Gumbel-softmax, written once against the array-API standard.

Every function here takes the namespace ``xp`` from the array's adapter
(``relaxcat._backends``) and uses only standard calls on it; what the standard lacks
(random numbers, ``stop_gradient``, device checks) is asked of the adapter.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal

import numpy as np

from ._backends import Array, Backend, NoiseSource, backend_of
from ._backends._base import with_article
from ._noise import gumbel_from_exponential
from ._validation import (
    NO_TAU,
    check_categories,
    check_estimator,
    check_finite_rows,
    check_noise,
    check_tau,
    compute_dtype,
    normalize_axis,
)

__all__ = ["gumbel_noise", "gumbel_softmax"]


# -- building blocks (shared by every sampler in relaxcat) ------------------------------


def source_gumbel(source: Any, xp: Any, shape: tuple[int, ...], dtype: Any) -> Array:
    """One draw of standard Gumbel noise from ``source`` (its native form if it has one)."""
    native = getattr(source, "standard_gumbel", None)
    if native is not None:
        return native(shape, dtype)
    return gumbel_from_exponential(xp, source.standard_exponential(shape, dtype))


def draw_gumbel(
    backend: Backend, rng: object, shape: tuple[int, ...], dtype: Any, device: Any, axis: int = -1
) -> Array:
    """Standard Gumbel noise in ``dtype`` (float32 or float64) through the adapter's RNG."""
    return source_gumbel(backend.noise_source(rng, device, axis), backend.xp, shape, dtype)


def divide_by_tau(xp: Any, d: Array, tau: Any) -> Array:
    """``d / tau``, where ``d`` may hold ``-inf`` (masked) or ``+inf``, safe for autodiff.

    ``-inf / tau`` is ``-inf``, but its derivative in ``tau``, ``-d / tau**2``, is ``+inf``,
    and autodiff multiplies it by the zero that follows (``exp(-inf)``): NaN. An array
    ``tau`` therefore divides only the finite entries and passes the infinite ones through
    (same values). A Python ``tau`` carries no gradient and takes the plain division.
    """
    if isinstance(tau, float):
        return d / tau
    finite = xp.isfinite(d)
    return xp.where(finite, xp.where(finite, d, 0.0) / tau, d)


def scaled_softmax(xp: Any, s: Array, row_max: Array, tau: Any, axis: int) -> Array:
    """``softmax(s / tau)`` along ``axis``, given ``row_max = max(s, axis, keepdims=True)``.

    The maximum is subtracted *before* dividing by ``tau``: ``(s - max) / tau`` is <= 0, so
    the exponential cannot overflow for any finite logits and any ``tau > 0`` (dividing
    first overflows for |logits| ~ 1e30 and tau ~ 1e-9). Masked (-inf) entries give
    exp(-inf) = 0 exactly, and the row's maximum gives exp(0) = 1, so the sum is >= 1.
    """
    e = xp.exp(divide_by_tau(xp, s - row_max, tau))
    return e / xp.sum(e, axis=axis, keepdims=True)


def one_hot_argmax(backend: Backend, s: Array, axis: int, dtype: Any, device: Any) -> Array:
    """Exact one-hot of ``argmax(s)`` along ``axis``; ties go to the first index."""
    xp = backend.xp
    index = xp.argmax(s, axis=axis, keepdims=True)
    positions = backend.positions(s.shape[axis], axis, s.ndim, index.dtype, device)
    return xp.astype(positions == index, dtype)


def straight_through(backend: Backend, hard: Array, soft: Array) -> Array:
    """``hard`` in the forward pass, the gradient of ``soft`` in the backward pass.

    ``hard + (soft - stop_gradient(soft))`` is exactly ``hard`` in floating point, because
    the bracket is exactly zero, whatever the values. (``hard - stop_gradient(soft) + soft``
    also happens to round back exactly for entries in [0, 1] under round-to-nearest, but
    ``(soft + hard) - stop_gradient(soft)`` does not; the bracket form needs no such luck.)
    """
    return hard + (soft - backend.stop_gradient(soft))


class Prepared:
    """Validated inputs of a sampler: adapter, namespace, axis, compute dtype, logits, tau.

    With ``elementwise=True`` (the relaxed Bernoulli) there is no category axis: ``axis``
    is ignored, the logits may be 0-d, and an array ``tau`` need only broadcast. Samplers
    without a temperature pass ``tau=NO_TAU`` (``self.tau`` is then None); a ``tau`` of
    None is the user's and is refused by ``check_tau``.

    An array ``tau`` may add batch dimensions (logits ``(n,)``, ``tau`` of shape ``(B, 1)``):
    ``logits`` and ``x`` are then the logits broadcast to the shape of the result, and
    ``axis`` is an axis of that shape.
    """

    __slots__ = ("axis", "backend", "device", "dtype", "logits", "tau", "x", "xp")

    def __init__(self, logits: Any, tau: Any, axis: object, *, elementwise: bool = False) -> None:
        backend = backend_of(logits, "logits")
        self.backend = backend
        self.xp = xp = backend.xp
        no_dims = type(tau) is float or tau is NO_TAU or tau is None
        extra = 0 if no_dims else _extra_dims(tau, logits.ndim)
        if elementwise:
            self.axis = -1
            tau_axis = None
        else:
            # Counted in the broadcast shape: the logits are broadcast first.
            argname = "logits" if extra == 0 else "the broadcast of logits and tau"
            self.axis = normalize_axis(axis, logits.ndim + extra, argname)
            tau_axis = self.axis - extra
            if tau_axis < 0:
                raise ValueError(
                    f"axis={axis} is a dimension that tau of shape {tuple(tau.shape)} adds in "
                    f"front of logits of shape {tuple(logits.shape)}; the category axis must "
                    f"be an axis of the logits (axis is counted in the broadcast shape). Use "
                    f"a negative axis, e.g. axis=-1."
                )
            check_categories(logits.shape[tau_axis], "logits", self.axis)
        self.dtype = compute_dtype(backend, logits.dtype)
        #: a Python float, an array, or None for samplers without a temperature
        self.tau: Any = (
            None if tau is NO_TAU else check_tau(tau, backend, logits, self.dtype, tau_axis)
        )
        if self.tau is not None and not isinstance(self.tau, float):
            shape = tuple(logits.shape)
            full = np.broadcast_shapes(shape, tuple(self.tau.shape))
            if full != shape:  # tau adds batch dimensions: the result has the broadcast shape
                logits = xp.broadcast_to(logits, full)
        self.logits = logits
        self.x = logits if self.dtype == logits.dtype else xp.astype(logits, self.dtype)
        self.device = backend.device(logits)

    def gradient_needed(self) -> bool:
        """Whether a gradient may flow back to the logits ``x`` or to an array ``tau``.

        The one rule every sampler and kernel asks before it builds the soft sample or an
        estimator's surrogate: without it a ``hard=True`` sample is the bare one-hot. A
        Python ``tau`` (and ``tau=None``) never carries a gradient.
        """
        backend, tau = self.backend, self.tau
        if backend.tracks_gradients(self.x):
            return True
        return tau is not None and not isinstance(tau, float) and backend.tracks_gradients(tau)

    # Noise: the one place every sampler gets its Gumbel noise, explicit or drawn.
    def noise(self, rng: object, noise: object, shape: tuple[int, ...] | None = None) -> Array:
        """Explicit ``noise`` (validated, in the compute dtype) or a fresh draw from ``rng``.

        ``shape`` defaults to the logits' shape (the broadcast shape where ``tau`` adds
        dimensions); samplers that draw several arrays at once pass ``(m, *shape)``.
        """
        given = self.given_noise(noise, shape)
        return given if given is not None else self.draw(self.source(rng), shape)

    def logistic_noise(self, rng: object, noise: object) -> Array:
        """Explicit standard logistic ``noise`` (checked as Gumbel noise is), or ``g0 - g1``.

        The two Gumbel draws are one draw of shape ``(2, *shape)``; their difference is one
        computation (eager JAX would compile the two slices and the subtraction apart).
        """
        logistic = self.given_noise(noise)
        if logistic is None:
            g = self.noise(rng, None, (2, *tuple(self.logits.shape)))
            logistic = self.backend.compiled(_difference, (0,))(self.backend, g)
        return logistic

    def given_noise(self, noise: object, shape: tuple[int, ...] | None = None) -> Array | None:
        """The user's ``noise`` checked (library, shape, dtype, device) and cast; None if none."""
        if noise is None:
            return None
        return check_noise(noise, self.backend, self.logits, self.dtype, shape)

    def source(self, rng: object) -> NoiseSource:
        """The adapter's noise source for the user's ``rng`` on the logits' device.

        The category axis is passed counted from the end, so that draws of shape
        ``(m, *shape)`` keep it (per-row :class:`relaxcat.Philox` seeds use it).
        """
        axis = self.axis if self.axis < 0 else self.axis - self.x.ndim
        return self.backend.noise_source(rng, self.device, axis)

    def draw(self, source: NoiseSource, shape: tuple[int, ...] | None = None) -> Array:
        """Standard Gumbel noise of ``shape`` (default: the logits') from ``source``."""
        shape = tuple(self.logits.shape) if shape is None else shape
        return source_gumbel(source, self.xp, shape, self.dtype)

    def check_rows(self, row_max: Array, noise_given: bool) -> None:
        check_finite_rows(self.backend, row_max, self.logits, self.axis, noise_given)

    def out(self, y: Array) -> Array:
        """``y`` in the logits' dtype and layout.

        Half precision is computed in float32 and cast back here; a Dask result is
        rechunked to the logits' chunks if a step changed them (an argsort along a split
        category axis gathers that axis into one chunk).
        """
        if y.dtype != self.logits.dtype:
            with self.backend.errstate():  # beyond float16's range: +-inf, the right value
                y = self.xp.astype(y, self.logits.dtype)
        return self.backend.align(y, self.device)


def _difference(backend: Backend, g: Array) -> Array:
    return g[0, ...] - g[1, ...]


# -- public API ----------------------------------------------------------------------


def _extra_dims(tau: Any, ndim: int) -> int:
    """How many leading dimensions an array ``tau`` adds to ``ndim``-d logits (0 if none)."""
    shape = getattr(tau, "shape", None)
    return max(0, len(shape) - ndim) if isinstance(shape, tuple) else 0


def gumbel_noise(
    like: Array, /, *, shape: tuple[int, ...] | None = None, rng: Any = None, axis: int = -1
) -> Array:
    """Draw standard Gumbel noise shaped, typed and placed like an array.

    The noise is drawn through the same random-number shim as :func:`gumbel_softmax`, so
    ``gumbel_softmax(x, rng=seed)`` equals ``gumbel_softmax(x, noise=gumbel_noise(x, rng=seed))``.
    It is ``-log(E)`` with ``E ~ Exp(1)`` drawn at 53-bit resolution or finer and only then
    rounded to the dtype, so both tails are exact (the largest of ``n`` draws minus
    ``log n`` is standard Gumbel, for float32 as for float64) and the noise is always finite:
    it lies in [-4.2, 38.8]. (The fused CUDA kernels of CuPy and torch on a GPU still draw
    24-bit uniforms: there the noise stops at 16.6; see the GPU guide.)

    Parameters
    ----------
    like : array
        A real floating array of any supported library. The noise has its namespace,
        device and dtype (float16 and bfloat16 noise is drawn in float32 and cast). For a
        Dask array it has ``like``'s chunks, and so does noise of shape ``(m, *like.shape)``
        on its last axes; for a sharded JAX array, eagerly, ``like``'s sharding.
    shape : tuple of int, optional
        Shape of the noise. Defaults to ``like.shape``.
    rng : None, int, generator or Philox, optional
        Source of randomness, as in :func:`gumbel_softmax`.
    axis : int, default -1
        The category axis of ``shape``. Only a :class:`Philox` key with one seed per row
        reads it (the seeds are per row of this axis); pass the sampler's ``axis``, so that
        ``gumbel_softmax(x, axis=a, rng=key)`` equals
        ``gumbel_softmax(x, axis=a, noise=gumbel_noise(x, axis=a, rng=key))``.

    Returns
    -------
    array
        Standard Gumbel draws: location 0, scale 1, mean 0.5772 (Euler's constant).

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> g = relaxcat.gumbel_noise(np.zeros((2, 3), dtype=np.float32), rng=0)
    >>> g.shape, g.dtype
    ((2, 3), dtype('float32'))
    >>> bool(np.isfinite(g).all())
    True

    """
    backend = backend_of(like, "like")
    dtype = compute_dtype(backend, like.dtype, "like")
    if shape is None:
        shape = tuple(like.shape)
    else:
        try:
            dims = tuple(shape)
        except TypeError:
            raise TypeError(f"shape must be a tuple of ints; got {shape!r}.") from None
        for d in dims:  # int(2.5) would truncate silently; numpy integers are fine
            if not isinstance(d, numbers.Integral) or isinstance(d, (bool, np.bool_)):
                raise TypeError(
                    f"shape must be a tuple of ints; got {shape!r}, whose dimension {d!r} is "
                    f"{with_article(type(d).__name__)}."
                )
        shape = tuple(int(d) for d in dims)
        if any(d < 0 for d in shape):
            raise ValueError(f"shape={shape} has a negative dimension.")
    axis = normalize_axis(axis, len(shape), "shape") - len(shape) if shape else -1
    g = draw_gumbel(backend, rng, shape, dtype, backend.device(like), axis)
    return g if dtype == like.dtype else backend.xp.astype(g, like.dtype)


def gumbel_softmax(
    logits: Array,
    /,
    tau: float | Array = 1.0,
    *,
    hard: bool = False,
    axis: int = -1,
    rng: Any = None,
    noise: Array | None = None,
    estimator: Literal["st", "reinmax", "gumbel_rao"] = "st",
    samples: int = 1,
) -> Array:
    r"""Draw a Gumbel-softmax (Concrete) sample, relaxed or straight-through one-hot.

    Computes :math:`y = \mathrm{softmax}((\ell + g) / \tau)` along ``axis``, where
    :math:`g` is standard Gumbel noise. The sample is a differentiable function of the
    logits; as :math:`\tau \to 0` it approaches the one-hot Gumbel-max sample
    :math:`\mathrm{onehot}(\arg\max(\ell + g))`, which is an exact draw from
    :math:`\mathrm{Categorical}(\mathrm{softmax}(\ell))`.

    Works on NumPy, PyTorch (CPU or CUDA), JAX (also under ``jit``, ``vmap`` and
    ``grad``, and on sharded arrays), CuPy, Dask and any array-API library, and returns the
    same type, dtype and device as ``logits`` (for Dask: the same chunks; the call builds a
    graph and computes nothing). float16 and bfloat16 are computed in float32 and cast back.

    Parameters
    ----------
    logits : array
        Unnormalised log-probabilities, real floating, categories along ``axis``.
        ``-inf`` marks a masked category: it gets probability exactly 0 and is never
        chosen. ``logits`` must not contain NaN or ``+inf``, and every row must keep at
        least one unmasked category.
    tau : float or array, default 1.0
        Temperature > 0, within ``[tiny, 1 / tiny]`` for the compute dtype's smallest
        normal number ``tiny`` (float32, also for half precision: about
        ``[1.2e-38, 8.5e37]``; float64: ``[2.2e-308, 4.5e307]``); outside it ``ValueError``.
        An array must broadcast against ``logits`` with size 1 along ``axis``, e.g. per-row
        temperatures of shape ``(B, 1)``. It may add batch dimensions, as in
        ``torch.distributions``: logits ``(n,)`` with ``tau`` of shape ``(S, 1)`` give a
        result of shape ``(S, n)``, the logits broadcast against ``tau`` (the category axis
        keeps its place counted from the end; a non-negative ``axis`` is counted in the
        broadcast shape). Array values are checked where they can be read; inside
        ``jax.jit`` or ``torch.compile``, on a GPU, or in a Dask graph, they cannot, and a
        value out of range there gives NaN or inf rather than an error.
    hard : bool, default False
        If True, return the exact one-hot :math:`\mathrm{onehot}(\arg\max(\ell + g))`
        (every entry exactly 0.0 or 1.0, ties to the first index), a draw from
        :math:`\mathrm{Categorical}(\mathrm{softmax}(\ell))`, with the gradient that
        ``estimator`` chooses.
    axis : int, default -1
        The category axis.
    rng : None, int, generator or Philox, optional
        Source of randomness: a :class:`Philox` key (on every library: the same noise
        from the same key on NumPy, PyTorch, JAX, CuPy, Dask and array-API libraries,
        per-row seeds allowed; see the guide's "Reproducible sampling"), ``None``
        (NumPy/CuPy: a process-wide generator seeded from OS entropy; PyTorch: torch's
        default generator, so ``torch.manual_seed`` applies), an int seed, a
        ``numpy.random.Generator`` (NumPy and array-API libraries without their own RNG),
        a ``torch.Generator`` on the logits' device, a CuPy ``Generator`` or
        ``RandomState``, a JAX PRNG key, typed (``jax.random.key``) or raw
        (``jax.random.PRNGKey``), or for Dask arrays a ``dask.array.random.Generator`` or
        a ``numpy.random.Generator`` (Dask draws with the logits' chunks, one stream per
        chunk; ``None`` is fresh entropy). JAX has no hidden state, so ``rng=None`` raises
        ``TypeError`` for JAX arrays. The same seed gives the same sample (on Dask: for the
        same chunking; another chunking gives another sample; a :class:`Philox` key gives
        the same sample for every chunking).
    noise : array, optional
        Explicit standard-Gumbel noise of the logits' shape (the broadcast shape where
        ``tau`` adds dimensions), library and device (see
        :func:`gumbel_noise`). It overrides ``rng``. Use it under ``torch.compile``, to
        share noise between calls, or to compare libraries. It is cast to the compute
        dtype (float32 for half-precision logits). With ``estimator="gumbel_rao"`` it
        decides the sample; the conditional draws still come from ``rng``.
    estimator : {"st", "reinmax", "gumbel_rao"}, default "st"
        The gradient of the ``hard=True`` sample; the forward value is the same one-hot
        for all three. ``"st"``: straight-through Gumbel-softmax, the gradient of the soft
        sample. ``"reinmax"``: ReinMax (Liu et al. 2023), ``2 J(pi1) g - 0.5 J(pi0) g``
        for the upstream gradient ``g``, where ``D`` is the one-hot sample, ``pi0 =
        softmax(logits)``, ``pi1 = (D + softmax(logits / tau)) / 2`` and ``J(p) = diag(p)
        - p p^T``; any ``tau > 0`` is accepted (its authors recommend ``tau >= 1``), and an
        array ``tau`` gets no gradient from it. ``"gumbel_rao"``:
        Gumbel-Rao (Paulus et al. 2021), the straight-through gradient averaged over
        ``samples`` Gumbel draws conditioned on the sampled category; lower variance,
        same mean. Any other value raises ``ValueError``, and so does a value other than
        ``"st"`` with ``hard=False`` (the soft sample has its exact gradient).
    samples : int, default 1
        Number of conditional Gumbel draws that ``estimator="gumbel_rao"`` averages
        (``samples=1`` is straight-through in distribution). They are drawn from ``rng``
        after the sample's own noise, as ``samples`` arrays of the logits' shape; on JAX,
        ``rng`` is required even with ``noise=``. Other estimators take ``samples=1``.

    Returns
    -------
    array
        The sample, with the type, shape, dtype and device of ``logits`` (the shape: the
        broadcast of the logits' and ``tau``'s). It sums to 1 along ``axis``.

    Raises
    ------
    TypeError
        For integer, bool or complex logits; for an ``rng`` or ``noise`` from another
        library; for ``rng=None`` with JAX arrays; for a non-string ``estimator`` or a
        non-integer ``samples``.
    ValueError
        For ``tau`` <= 0, inf or NaN; a ``tau`` or ``noise`` of the wrong shape; logits
        with NaN, ``+inf`` or an entirely masked row (where values can be read); an
        unknown ``estimator``, or one other than ``"st"`` with ``hard=False``;
        ``samples < 1``, or ``samples != 1`` with an estimator other than ``"gumbel_rao"``.
    numpy.exceptions.AxisError
        For an out-of-range ``axis``.

    Notes
    -----
    NumPy, CuPy and array-API libraries without autodiff return the same forward values
    as PyTorch and JAX; no gradient is defined there. With ``hard=True`` and no gradient
    to carry, the soft sample and every estimator's surrogate are not computed at all.

    ReinMax's rule is registered with the autodiff system: on PyTorch as a
    ``torch.autograd.Function`` with ``setup_context`` (so ``torch.func.grad``, ``vmap``
    and, outside ``torch.compile``, ``jvp`` apply), on JAX as a ``jax.custom_jvp``. The
    other estimators are written with ``stop_gradient``. Every estimator runs under
    ``torch.compile(fullgraph=True)`` with ``noise=``, under ``jax.jit``, and under
    ``torch.func.vmap`` (``randomness="different"`` when it draws). Their bias and
    variance are compared in ``docs/estimators.md``. Forward-mode AD works through
    ``torch.func.jvp`` and through the dual tensors of ``torch.autograd.forward_ad`` (the
    logits or an array ``tau``; ``torch.no_grad`` does not stop it), for every estimator.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.log(np.array([[0.1, 0.6, 0.3]]))
    >>> y = relaxcat.gumbel_softmax(logits, tau=0.5, rng=0)
    >>> y.shape, float(y.sum())
    ((1, 3), 1.0)
    >>> relaxcat.gumbel_softmax(logits, tau=0.5, hard=True, rng=0)
    array([[0., 1., 0.]])

    Every estimator returns the same one-hot sample; only its gradient differs:

    >>> relaxcat.gumbel_softmax(logits, hard=True, rng=0, estimator="gumbel_rao", samples=8)
    array([[0., 1., 0.]])

    A masked category is never chosen:

    >>> masked = np.array([[0.0, -np.inf, 0.0]])
    >>> float(relaxcat.gumbel_softmax(masked, rng=1)[0, 1])
    0.0

    """
    method, samples = check_estimator(estimator, samples, hard)
    p = Prepared(logits, tau, axis)
    if method != "st":
        from ._estimators import estimator_sample

        return estimator_sample(p, method, samples, rng, noise)
    # Everything is validated here, the noise included, before any kernel runs.
    if noise is None:
        g, source = None, p.source(rng)
    else:
        g, source = p.given_noise(noise), None
    if FAST_PATHS:
        y = p.backend.fused_sample(p, source, g, hard)
        if y is not None:
            return p.out(y)
    return generic_gumbel_softmax(p, source, g, hard)


#: Whether adapters may compute the sample with a native kernel. Tests switch it off to hold
#: each kernel equal to the generic path.
FAST_PATHS = True


def generic_gumbel_softmax(
    p: Prepared, source: NoiseSource | None, noise: Array | None, hard: bool
) -> Array:
    """The reference implementation of :func:`gumbel_softmax` on the array-API namespace.

    ``noise`` is validated explicit noise (then ``source`` is None), or None and the noise
    is drawn from ``source``.
    """
    xp, backend = p.xp, p.backend
    noise_given = noise is not None
    if noise is None:
        assert source is not None
        noise = p.draw(source)
    s = p.x + noise
    soft_needed = not hard or p.gradient_needed()  # else no gradient to carry: one-hot only
    m = None
    with backend.errstate():
        if backend.values_readable(s):  # rows without a sample raise before any math runs
            m = xp.max(s, axis=p.axis, keepdims=True)
            p.check_rows(m, noise_given)
        y = compiled_sample(p, s, m, hard, soft_needed)
    return p.out(y)


def compiled_sample(p: Prepared, s: Array, m: Array | None, hard: bool, soft: bool) -> Array:
    """:func:`sample_from_sum` through ``Backend.compiled``: one computation on JAX.

    JAX compiles it once per shape, also under an eager ``jax.grad`` (op by op, each
    operation of the forward and the backward pass would be compiled on its own).
    """
    static = (p.backend, p.axis, hard, soft, p.device)
    tau = p.tau if soft else None
    return p.backend.compiled(sample_from_sum, (0, 1, 2, 3, 4))(*static, s, m, tau)


def sample_from_sum(
    backend: Backend, axis: int, hard: bool, soft: bool, device: Any, s: Array, m: Any, tau: Any
) -> Array:
    """The sample from ``s = logits + noise``: the one-hot and/or ``softmax(s / tau)``.

    ``m`` is the row maximum of ``s`` if the caller has it (else None); ``soft`` says
    whether the soft sample is needed (for ``hard``, its straight-through gradient).
    """
    xp = backend.xp
    hot = one_hot_argmax(backend, s, axis, s.dtype, device) if hard else None
    if not soft:
        return hot
    if m is None:
        m = xp.max(s, axis=axis, keepdims=True)
    y = scaled_softmax(xp, s, m, tau, axis)
    return y if hot is None else straight_through(backend, hot, y)
