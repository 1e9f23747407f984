"""Rankings and permutations: the Plackett-Luce density and the Gumbel-Sinkhorn sampler.

``plackett_luce_log_prob`` is the exact law of the order that :func:`relaxcat.gumbel_topk`
returns; ``gumbel_sinkhorn`` (Mena et al., 2018) relaxes a random permutation matrix to a
doubly-stochastic one, and with ``hard=True`` returns the exact permutation that maximises
the perturbed scores, found by a small exact assignment solver (``_assignment``) that runs
in NumPy on the host. Everything else is written once on the array-API namespace.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ._backends import Array, Backend, backend_of
from ._core import Prepared, divide_by_tau, straight_through
from ._ksubset import _lse
from ._validation import check_logits_rows, compute_dtype, normalize_axis

__all__ = ["gumbel_sinkhorn", "plackett_luce_log_prob"]

INF = math.inf


# -- Plackett-Luce -------------------------------------------------------------------------


def plackett_luce_log_prob(ranking: Array, logits: Array, /, *, axis: int = -1) -> Array:
    r"""Exact log-probability of an ordered ranking under the Plackett-Luce model.

    For a ranking :math:`r_1, \ldots, r_k` of :math:`k \le n` distinct items,

    .. math::

        \log p(r) = \sum_{j=1}^{k} \Bigl(\ell_{r_j}
            - \log \sum_{i \notin \{r_1, \ldots, r_{j-1}\}} e^{\ell_i}\Bigr),

    the probability that the first :math:`k` items drawn one by one without replacement
    from :math:`\mathrm{softmax}(\ell)` come in this order: the law of the indices that
    :func:`gumbel_topk` returns (for :math:`k = n`, a full ranking). Each log-normaliser
    is a logsumexp over the items not yet ranked, so nothing overflows; it is
    differentiable in the logits on torch and JAX.

    Parameters
    ----------
    ranking : array
        Integer item indices of shape ``(*batch, k)``, the ``k`` axis last (as
        :func:`gumbel_topk` returns them), best first; distinct within a row, in
        ``0..n-1``. Its batch shape broadcasts against the logits' shape without ``axis``.
    logits : array
        Unnormalised log-probabilities (scores), real floating, items along ``axis``, same
        library and device as ``ranking``. ``-inf`` masks an item: a ranking that
        contains it has log-probability ``-inf``, and it never enters a normaliser.
    axis : int, default -1
        The item axis of ``logits``.

    Returns
    -------
    array
        The log-probabilities, of the broadcast batch shape, in the logits' dtype.

    Raises
    ------
    TypeError
        For a non-integer ``ranking``, non-floating ``logits``, or arrays of two libraries.
    ValueError
        For a ranking longer than ``n`` or of zero length, batch shapes that do not
        broadcast, and (where values can be read) an index out of range or repeated
        within a row, or logits with NaN or ``+inf``.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.log(np.array([0.5, 0.3, 0.2]))
    >>> float(np.exp(relaxcat.plackett_luce_log_prob(np.array([0, 2]), logits)))  # .5*.2/.5
    0.2
    >>> rankings = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    >>> round(float(np.exp(relaxcat.plackett_luce_log_prob(rankings, logits)).sum()), 12)
    1.0

    """
    backend = backend_of(logits, "logits")
    xp = backend.xp
    other = backend_of(ranking, "ranking")
    if type(other) is not type(backend):
        raise TypeError(
            f"ranking is {other.name} array but logits is {backend.name} array; pass arrays "
            f"of one library."
        )
    if not xp.isdtype(ranking.dtype, "integral"):
        raise TypeError(
            f"ranking must hold integer item indices (e.g. from gumbel_topk); got dtype "
            f"{ranking.dtype}. Cast it with astype(int64) if the values are whole numbers."
        )
    dtype = compute_dtype(backend, logits.dtype)
    ax = normalize_axis(axis, logits.ndim)
    n = logits.shape[ax]
    if ranking.ndim < 1 or ranking.shape[-1] < 1:
        raise ValueError(
            f"ranking of shape {tuple(ranking.shape)} has no items; it needs a last axis of "
            f"length 1..n (n={n})."
        )
    k = ranking.shape[-1]
    if k > n:
        raise ValueError(
            f"ranking ranks k={k} items but logits have only n={n} along axis {ax}; a "
            f"ranking lists k <= n distinct items."
        )
    x = xp.moveaxis(logits, ax, -1)
    x = x if x.dtype == dtype else xp.astype(x, dtype)
    try:
        batch = np.broadcast_shapes(tuple(ranking.shape[:-1]), tuple(x.shape[:-1]))
    except ValueError:
        raise ValueError(
            f"ranking of shape {tuple(ranking.shape)} (batch {tuple(ranking.shape[:-1])}) "
            f"and logits of batch shape {tuple(x.shape[:-1])} (shape without axis {ax}) do "
            f"not broadcast."
        ) from None
    check_logits_rows(backend, x, -1)
    _check_ranking(backend, ranking, n)
    with backend.errstate():
        r = backend.compiled(_pl_log_prob, (0,))(backend, ranking, x)
    r = xp.broadcast_to(r, batch)
    return r if r.dtype == logits.dtype else xp.astype(r, logits.dtype)


def _check_ranking(backend: Backend, ranking: Array, n: int) -> None:
    """Out-of-range and repeated indices, where values can be read."""
    if not backend.values_readable(ranking) or math.prod(tuple(ranking.shape)) == 0:
        return
    xp = backend.xp
    lo, hi = int(xp.min(ranking)), int(xp.max(ranking))
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"ranking holds the index {bad}, out of range for n={n} items (indices are "
            f"0..{n - 1}; negative indices are not accepted)."
        )
    srt = xp.sort(ranking, axis=-1)
    if ranking.shape[-1] > 1 and bool(xp.any(srt[..., 1:] == srt[..., :-1])):
        raise ValueError(
            "ranking repeats an item within a row; a ranking lists distinct items (drawn "
            "without replacement, as gumbel_topk returns them)."
        )


def _pl_log_prob(backend: Backend, ranking: Array, x: Array) -> Array:
    xp = backend.xp
    n = x.shape[-1]
    items = xp.arange(n, dtype=ranking.dtype, device=_device(ranking))
    hot = ranking[..., :, None] == items  # (*batch, k, n)
    chosen = xp.sum(xp.where(hot, x[..., None, :], 0.0), axis=-1)  # (*batch, k)
    counts = xp.cumulative_sum(xp.astype(hot, x.dtype), axis=hot.ndim - 2)
    ranked_before = (counts - xp.astype(hot, x.dtype)) > 0
    norm = _lse(backend, xp.where(ranked_before, -INF, x[..., None, :]), -1)
    # A masked item ranked: -inf. Its normaliser may be -inf too (nothing else left), so
    # both sides are made finite before the difference, which would be NaN.
    impossible = chosen == -INF
    norm = xp.where(norm == -INF, 0.0, norm)  # only where the ranked item is masked
    terms = xp.where(impossible, -INF, xp.where(impossible, 0.0, chosen) - norm)
    return xp.sum(terms, axis=-1)


def _device(x: Array) -> Any:
    from array_api_compat import device

    return device(x)


# -- Gumbel-Sinkhorn -------------------------------------------------------------------------


def gumbel_sinkhorn(
    log_alpha: Array,
    /,
    tau: float = 1.0,
    *,
    n_iter: int = 20,
    hard: bool = False,
    rng: Any = None,
    noise: Array | None = None,
) -> Array:
    r"""Gumbel-Sinkhorn (Mena et al., 2018): a relaxed random permutation matrix.

    Adds standard Gumbel noise :math:`g` to the ``n x n`` scores and normalises
    :math:`z = (\log\alpha + g)/\tau` in log space, ``n_iter`` times over rows then
    columns (:math:`z \leftarrow z - \mathrm{logsumexp}_{\text{row}}(z)`, then the same
    over columns), and returns :math:`\exp(z)`: a doubly-stochastic matrix (columns sum
    to 1 exactly, rows up to the convergence of the iterations). As :math:`\tau \to 0`
    and ``n_iter`` grows it tends to the permutation matrix that maximises
    :math:`\sum_i (\log\alpha + g)_{i, \sigma(i)}`.

    ``hard=True`` returns that permutation matrix exactly (0s and 1s), found by an exact
    linear assignment solver (a shortest-augmenting-path Hungarian method, in NumPy on
    the host; torch and CuPy arrays are copied there and back), with the gradient of the
    soft matrix (straight-through: ``hard + soft - stop_gradient(soft)``). Never an
    approximation: ties between assignments go to one of the optimal ones.

    Parameters
    ----------
    log_alpha : array
        Scores of shape ``(*batch, n, n)``, real floating: row ``i``, column ``j`` is the
        score of sending item ``i`` to position ``j``. ``-inf`` forbids a pair (every row
        and column must keep an allowed assignment; for ``hard=True`` a full one).
    tau : float, default 1.0
        Temperature > 0.
    n_iter : int, default 20
        Number of Sinkhorn iterations (row then column normalisation), >= 1.
    hard : bool, default False
        If True, return the exact permutation matrix of the perturbed scores, with the
        straight-through gradient.
    rng : None, int, or generator, optional
        Source of randomness, as in :func:`gumbel_softmax`.
    noise : array, optional
        Explicit standard-Gumbel noise of ``log_alpha``'s shape; it overrides ``rng``.

    Returns
    -------
    array
        The ``(*batch, n, n)`` matrix, with the type, dtype and device of ``log_alpha``.

    Notes
    -----
    The iterations are a Python loop: eager calls run them op by op, and under
    ``jax.jit`` they are unrolled, so the compile time grows with ``n_iter``.

    Raises
    ------
    TypeError, ValueError
        For non-floating scores, a non-square last pair of axes, a bad ``tau``, ``n_iter``
        or ``noise``, and as :func:`gumbel_softmax`. With ``hard=True``: a ``ValueError``
        under ``jax.jit`` or another trace (the assignment is solved on the host: call it
        outside ``jit``, or pass ``hard=False`` there), for a Dask array whose last two
        axes are split into several chunks (rechunk them to one), and where no full
        assignment avoids the ``-inf`` scores.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> scores = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 3.0, 0.0]])
    >>> soft = relaxcat.gumbel_sinkhorn(scores, tau=0.5, rng=0)
    >>> np.round(soft.sum(axis=-2), 6)  # columns
    array([1., 1., 1.])
    >>> np.round(soft.sum(axis=-1), 2)  # rows: 1 as the iterations converge
    array([1.02, 0.98, 1.  ])
    >>> relaxcat.gumbel_sinkhorn(scores, tau=0.5, hard=True, noise=np.zeros((3, 3)))
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]])

    """
    if not isinstance(n_iter, numbers.Integral) or isinstance(n_iter, (bool, np.bool_)):
        raise TypeError(
            f"n_iter must be an int (Sinkhorn iterations); got {type(n_iter).__name__}."
        )
    if n_iter < 1:
        raise ValueError(f"n_iter={n_iter}: it must be >= 1.")
    if getattr(log_alpha, "ndim", 0) < 2 or log_alpha.shape[-1] != log_alpha.shape[-2]:
        shape = tuple(getattr(log_alpha, "shape", ()))
        raise ValueError(
            f"log_alpha must have shape (*batch, n, n), a square matrix on its last two "
            f"axes; got shape {shape}."
        )
    if not isinstance(tau, (int, float)) or isinstance(tau, bool):
        raise TypeError(
            f"tau must be a Python number for gumbel_sinkhorn; got {type(tau).__name__}."
        )
    p = Prepared(log_alpha, float(tau), -1)
    backend, xp = p.backend, p.xp
    check_logits_rows(backend, p.x, -1, "log_alpha")
    s = p.x + p.noise(rng, noise)
    soft_needed = not hard or p.gradient_needed()
    with backend.errstate():
        # Not backend.compiled: jit would unroll n_iter iterations into one computation,
        # and its compile time grows with n_iter (minutes for thousands).
        soft = _sinkhorn(backend, int(n_iter), s, p.tau) if soft_needed else None
        if not hard:
            return p.out(soft)
        perm = _hard_permutation(backend, backend.stop_gradient(s))
        perm = perm if perm.dtype == p.dtype else xp.astype(perm, p.dtype)
        y = perm if soft is None else straight_through(backend, perm, soft)
    return p.out(y)


def _sinkhorn(backend: Backend, n_iter: int, s: Array, tau: Any) -> Array:
    xp = backend.xp
    z = divide_by_tau(xp, s, tau)
    for _ in range(n_iter):
        z = z - _lse(backend, z, -1)[..., :, None]
        z = z - _lse(backend, z, -2)[..., None, :]
    return xp.exp(z)


def _hard_permutation(backend: Backend, s: Array) -> Array:
    """The exact arg-max permutation matrix of ``s`` (no gradient), solved on the host."""
    xp = backend.xp
    if hasattr(s, "map_blocks") and hasattr(s, "chunks"):  # Dask: one task per block
        if len(s.chunks[-1]) > 1 or len(s.chunks[-2]) > 1:
            raise ValueError(
                "gumbel_sinkhorn(hard=True) solves each n x n assignment in one task, so the "
                "last two axes of a Dask log_alpha must be one chunk each; rechunk it, e.g. "
                "log_alpha.rechunk({-2: -1, -1: -1})."
            )
        return s.map_blocks(_assignment_matrices, dtype=s.dtype)
    host = _to_host(s)
    perm = _assignment_matrices(host)
    return xp.asarray(perm, device=_device(s))


def _to_host(s: Array) -> np.ndarray:
    kind = type(s).__module__.split(".")[0]
    try:
        if kind == "torch":
            return s.detach().cpu().numpy()
        if kind == "cupy":
            return s.get()
        return np.asarray(s)
    except Exception as exc:  # a tracer (jax.jit, vmap), or an array that cannot be read
        raise ValueError(
            f"gumbel_sinkhorn(hard=True) solves the assignment exactly on the host, and the "
            f"scores cannot be read here ({type(exc).__name__}: it is being traced, e.g. "
            f"under jax.jit). Call it outside jit, or use hard=False inside and take the "
            f"permutation outside."
        ) from exc


def _assignment_matrices(s: np.ndarray) -> np.ndarray:
    """Permutation matrices maximising ``sum_i s[..., i, perm(i)]``, one per batch entry."""
    s = np.asarray(s)
    n = s.shape[-1]
    flat = s.reshape(-1, n, n)
    out = np.zeros(flat.shape, dtype=s.dtype)
    for b in range(flat.shape[0]):
        cols = _assignment(flat[b])
        out[b, np.arange(n), cols] = 1.0
    return out.reshape(s.shape)


def _assignment(score: np.ndarray) -> np.ndarray:
    """Exact maximum-score assignment: ``cols[i]`` for row ``i``.

    The shortest-augmenting-path Hungarian method (Kuhn-Munkres with potentials, as in
    Jonker and Volgenant), ``O(n^3)``, on the cost ``-score`` in float64. ``-inf`` scores
    are forbidden pairs; a ``ValueError`` says so if no full assignment avoids them.
    """
    score = np.asarray(score, dtype=np.float64)
    n = score.shape[0]
    allowed = np.isfinite(score)
    if not allowed.all():
        spread = np.ptp(score[allowed]) if allowed.any() else 0.0
        big = (spread + 1.0) * (n + 1)  # more than any difference of finite totals
        cost = np.where(allowed, -score, big + np.max(-score[allowed], initial=0.0))
    else:
        cost = -score
    u = np.zeros(n + 1)
    v = np.zeros(n + 1)
    match = np.zeros(n + 1, dtype=np.int64)  # match[j]: row (1-based) assigned to column j
    way = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, n + 1):
        match[0] = i
        j0 = 0
        minv = np.full(n + 1, np.inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = match[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[match[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if match[j0] == 0:
                break
        while j0:  # augment along the path
            j1 = way[j0]
            match[j0] = match[j1]
            j0 = j1
    cols = np.empty(n, dtype=np.int64)
    cols[match[1:] - 1] = np.arange(n)
    if not allowed[np.arange(n), cols].all():
        raise ValueError(
            "gumbel_sinkhorn(hard=True): every full assignment uses a -inf score of "
            "log_alpha; leave at least one permutation with finite scores."
        )
    return cols
