"""SIMPLE (Ahmed et al., ICLR 2023): exact k-subsets with the gradient of their marginals.

The distribution is that of independent Bernoulli(sigmoid(logits)) variables conditioned on
exactly ``k`` ones: ``P(S) ∝ exp(sum_{i in S} logits_i)`` over subsets of size ``k``. Its
normaliser is the elementary symmetric polynomial ``e_k(exp(logits))``, computed by a
log-space dynamic program on a binary tree over the items (padded to a power of two with
excluded items). A node's table ``I[j] = log e_j(exp(logits of its leaves))``, ``j <= k``,
is the log-space convolution of its children's::

    I[j] = logsumexp_t (I_left[t] + I_right[j - t])

so each of the ``log2 n`` levels is a handful of array operations on arrays of shape
``(*batch, groups, m, m')``, ``O(nk)`` work in all. The same tree, walked down, gives the
outside tables ``O[j] = log e_{k-j}(exp(logits outside the node))`` and the conditional
marginals ``mu_i = exp(logits_i + O_i[1] - I_root[k])``, written with array operations, so
they are differentiable on torch and JAX. The sample walks down the same inside tables:
a node with ``c`` items to choose sends ``t`` of them to its left child with probability
``∝ exp(I_left[t] + I_right[c - t])``, drawn by Gumbel-max.

A tree rather than a loop over the items: the number of operations is ``O(log n)``, so
``jax.jit`` compiles it in seconds (an unrolled loop over 100 items took minutes), and a
Dask graph stays small (children are taken with index arrays, never concatenated or
reshaped, so the chunks do not multiply level by level).

Everything is written once on the array-API namespace, like ``_distributions``: no
data-dependent control flow, value checks only where the adapter says values can be read,
and the randomness through the adapter's noise source.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._backends import Array, Backend
from ._core import Prepared, straight_through
from ._validation import NO_TAU, check_enough_unmasked, check_k, check_logits_rows

__all__ = ["ksubset_marginals", "simple_ksubset"]

INF = math.inf


def _lse(backend: Backend, a: Array, axis: int) -> Array:
    """``logsumexp`` along ``axis`` (dropped), 0-gradient where all entries are ``-inf``.

    The tables hold ``-inf`` for every count a node cannot reach; a plain logsumexp would
    differentiate an all ``-inf`` slice into NaN.
    """
    xp = backend.xp
    m = backend.stop_gradient(xp.max(a, axis=axis, keepdims=True))
    empty = m == -INF
    m = xp.where(empty, 0.0, m)
    s = xp.sum(xp.exp(a - m), axis=axis, keepdims=True)
    r = xp.where(empty, -INF, m + xp.log(xp.where(empty, 1.0, s)))
    return xp.squeeze(r, axis=axis)


def _sizes(n: int, k: int) -> list[int]:
    """Table lengths ``m`` per level, leaves first: ``min(items below, k) + 1``."""
    sizes = [2]
    while (1 << (len(sizes) - 1)) < n:
        sizes.append(min(2 * (sizes[-1] - 1), k) + 1)
    return sizes


def _pairs(xp: Any, v: Array) -> tuple[Array, Array]:
    """The two children of each node of a level: the first and second halves of ``v``.

    ``v`` is ``(*batch, G, m)``; node ``g`` of the next level joins ``g`` and ``g + G/2``.
    Any pairing gives the same tables; halves need only slices and a concatenation, no
    reshape (which on Dask split the items into one chunk each).
    """
    half = v.shape[-2] // 2
    return v[..., :half, :], v[..., half:, :]


def _to_children(backend: Backend, v: Array, device: Any) -> tuple[Array, Array]:
    """Parent rows and sibling rows for each child of a level.

    ``v`` is ``(*batch, G, m)``; returns the index arrays that take, for child ``g``, its
    parent ``g mod G/2`` and its sibling ``(g + G/2) mod G``. Taken rather than
    concatenated: on Dask each concatenation doubled the chunks, one per item at the end.
    """
    xp = backend.xp
    g = v.shape[-2]
    half = np.arange(g) % (g // 2)
    parent = xp.asarray(half, device=device)
    sibling = xp.asarray((np.arange(g) + g // 2) % g, device=device)
    return parent, sibling


def _spread(backend: Backend, v: Array, rows: int, cols: int, offset: int, device: Any) -> Array:
    """``out[..., t, j] = v[..., j + offset * t]`` where that index is in range, else -inf.

    ``offset = -1``: ``v[j - t]`` (a convolution); ``offset = +1``: ``v[t + j]``.
    """
    xp = backend.xp
    m = v.shape[-1]
    t, j = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    index = j + offset * t
    valid = (index >= 0) & (index < m)
    flat = xp.asarray(np.clip(index, 0, m - 1).reshape(-1), device=device)
    taken = xp.take(v, flat, axis=v.ndim - 1)
    taken = xp.reshape(taken, (*tuple(v.shape[:-1]), rows, cols))
    return xp.where(xp.asarray(valid, device=device), taken, -INF)


def _inside(backend: Backend, k: int, x: Array, device: Any) -> list[Array]:
    """Inside tables per level, leaves first; ``x`` is padded to a power of two."""
    xp = backend.xp
    leaves = xp.concat([xp.zeros_like(x)[..., None], x[..., None]], axis=-1)  # e_0, e_1
    tables = [leaves]
    for m in _sizes(x.shape[-1], k)[1:]:
        left, right = _pairs(xp, tables[-1])
        r = _spread(backend, right, left.shape[-1], m, -1, device)
        tables.append(_lse(backend, left[..., :, None] + r, -2))
    return tables


def _padded(backend: Backend, x: Array) -> Array:
    xp = backend.xp
    n = x.shape[-1]
    size = 1 << max(0, (n - 1).bit_length())
    if size == n:
        return x
    pad = xp.full((*tuple(x.shape[:-1]), size - n), -INF, dtype=x.dtype, device=_dev(x))
    return xp.concat([x, pad], axis=-1)


def _dev(x: Array) -> Any:
    from array_api_compat import device

    return device(x)


def _marginals(backend: Backend, k: int, x: Array, tables: list[Array] | None = None) -> Array:
    """``P(item i chosen | k chosen)`` along the last axis of ``x`` (``tables``: x's inside)."""
    xp = backend.xp
    n = x.shape[-1]
    device = _dev(x)
    if tables is None:
        tables = _inside(backend, k, _padded(backend, x), device)
    root = tables[-1]  # (*batch, 1, k + 1)
    log_z = root[..., k : k + 1]
    top = xp.asarray(np.where(np.arange(k + 1) == k, 0.0, -INF), dtype=x.dtype, device=device)
    outside = xp.zeros_like(root) + top
    for level in range(len(tables) - 2, -1, -1):
        inside = tables[level]
        m = inside.shape[-1]
        parent, sibling = _to_children(backend, inside, device)
        above = xp.take(outside, parent, axis=inside.ndim - 2)
        beside = xp.take(inside, sibling, axis=inside.ndim - 2)
        spread = _spread(backend, above, m, m, 1, device)  # O_parent[t + u]
        outside = _lse(backend, spread + beside[..., None, :], -1)
    xs = _padded(backend, x)
    log_mu = xs[..., :, None] + outside[..., 1:2] - log_z
    log_mu = xp.where(xs[..., :, None] == -INF, -INF, log_mu)
    return xp.exp(log_mu[..., :n, 0])


def _noise_shapes(n: int, k: int) -> list[tuple[int, int]]:
    """``(groups, width)`` of each level's noise, leaves first, for ``n`` items (a power of 2).

    Level ``l`` has ``n / 2**(l + 1)`` nodes that split a count between two children,
    each choosing among ``min(items below a child, k) + 1`` counts.
    """
    sizes = _sizes(n, k)
    return [(n >> (level + 1), sizes[level]) for level in range(len(sizes) - 1)]


def _sample(
    backend: Backend, k: int, x: Array, noise: Array, tables: list[Array] | None = None
) -> Array:
    """An exact k-hot draw (items on the last axis), walking down the inside tables.

    ``noise`` is standard Gumbel noise of shape ``(*batch, N)``: level ``l`` (leaves at 0)
    takes the next ``G * m`` entries of each row, laid out ``(G, m)``, for the
    ``(G, m) = _noise_shapes(...)[l]`` of its nodes; a node with ``c`` items to choose
    sends ``argmax_t(I_left[t] + I_right[c - t] + g_t)`` of them to its left child.
    ``tables``: the inside tables of ``x`` without a gradient, if already computed.
    """
    xp = backend.xp
    n = x.shape[-1]
    device = _dev(x)
    if tables is None:
        tables = _inside(backend, k, _padded(backend, backend.stop_gradient(x)), device)
    levels, start = [], 0
    for groups, width in _noise_shapes(tables[0].shape[-2], k):
        part = noise[..., start : start + groups * width]
        levels.append(xp.reshape(part, (*tuple(part.shape[:-1]), groups, width)))
        start += groups * width
    count = xp.full_like(tables[-1][..., 0], float(k))  # (*batch, 1)
    for level in range(len(tables) - 2, -1, -1):
        left, right = _pairs(xp, tables[level])
        m, m_parent = left.shape[-1], tables[level + 1].shape[-1]
        spread = _spread(backend, right, m, m_parent, -1, device)  # I_right[j - t]
        j = xp.asarray(np.arange(m_parent), dtype=x.dtype, device=device)
        chosen = j == count[..., None, None]
        scores = left + xp.sum(xp.where(chosen, spread, 0.0), axis=-1)
        t = xp.astype(xp.argmax(scores + levels[level], axis=-1), x.dtype)
        parent, _ = _to_children(backend, tables[level], device)
        is_left = xp.asarray(np.arange(2 * t.shape[-1]) < t.shape[-1], device=device)
        axis = t.ndim - 1
        count = xp.where(
            is_left, xp.take(t, parent, axis=axis), xp.take(count - t, parent, axis=axis)
        )
    return count[..., :n]


def _prepare(logits: Any, k: Any, axis: int) -> tuple[Prepared, int]:
    p = Prepared(logits, NO_TAU, axis)
    k = check_k(k, logits.shape[p.axis], p.axis)
    check_logits_rows(p.backend, p.x, p.axis)
    check_enough_unmasked(p.backend, p.x, k, p.axis)
    return p, k


def ksubset_marginals(logits: Array, k: int, /, *, axis: int = -1) -> Array:
    r"""Exact inclusion probabilities of the k-subset distribution (conditional marginals).

    For independent :math:`z_i \sim \mathrm{Bernoulli}(\sigma(\ell_i))` conditioned on
    :math:`\sum_i z_i = k`, returns :math:`\mu_i = P(z_i = 1 \mid \sum_j z_j = k)`, i.e.
    :math:`\partial \log e_k(e^{\ell}) / \partial \ell_i` for the elementary symmetric
    polynomial :math:`e_k` (equivalently :math:`\sigma(\ell_i) + \partial \log
    P(\sum_j z_j = k) / \partial \ell_i`). Computed by a log-space dynamic program of cost
    :math:`O(nk)` (see :func:`simple_ksubset`); differentiable on torch and JAX.

    Parameters
    ----------
    logits : array
        Log-odds, real floating, items along ``axis``; ``-inf`` excludes an item. No NaN
        or ``+inf``, and at least ``k`` finite entries per row (checked where values can
        be read).
    k : int
        Subset size, ``1 <= k <= n``.
    axis : int, default -1
        The item axis.

    Returns
    -------
    array
        :math:`\mu`, with the type, shape, dtype and device of ``logits``; each row sums
        to ``k`` (up to rounding), and excluded items have 0. The tables are logarithms
        of size about :math:`|\log e_k|`, so in float32 the marginals carry a relative
        error of a few ``eps * |log e_k|`` (about 1e-4 for ``n = 1000``, ``k = 100`` and
        logits of a few units); use float64 where that matters.

    Raises
    ------
    TypeError
        For a non-integer ``k`` or non-floating logits.
    ValueError
        For ``k`` outside ``1..n``, NaN or ``+inf`` logits, or a row with fewer than ``k``
        finite logits (where values can be read).

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> mu = relaxcat.ksubset_marginals(np.array([0.0, 1.0, -1.0, 2.0]), 2)
    >>> np.round(mu, 4), round(float(mu.sum()), 6)
    (array([0.3056, 0.6944, 0.1192, 0.8808]), 2.0)

    """
    p, k = _prepare(logits, k, axis)
    backend, xp = p.backend, p.xp
    x = xp.moveaxis(p.x, p.axis, -1)
    with backend.errstate():
        mu = backend.compiled(_marginals, (0, 1))(backend, k, x)
    return p.out(xp.moveaxis(mu, -1, p.axis))


def simple_ksubset(logits: Array, k: int, /, *, axis: int = -1, rng: Any = None) -> Array:
    r"""Draw an exact k-hot sample with SIMPLE's gradient (Ahmed et al., ICLR 2023).

    The forward value is an exact sample of independent
    :math:`z_i \sim \mathrm{Bernoulli}(\sigma(\ell_i))` conditioned on exactly ``k`` ones,
    i.e. :math:`P(S) \propto \exp(\sum_{i \in S} \ell_i)` over the subsets of size ``k``.
    Its gradient is that of the exact conditional marginals
    :math:`\mu = ` :func:`ksubset_marginals`: the output is
    :math:`z + \mu - \mathrm{stop\_gradient}(\mu)`, exactly :math:`z` in floating point.

    Both come from one log-space dynamic program for the elementary symmetric polynomials
    :math:`e_j(e^{\ell})`, :math:`j \le k`, on a binary tree over the items: a node's
    table :math:`I[j] = \log e_j` of its leaves is the log-space convolution of its
    children's, :math:`I[j] = \mathrm{logsumexp}_t(I_{left}[t] + I_{right}[j - t])`.
    That is :math:`O(nk)` work, no overflow for any finite logits, and exact (not
    relaxed). The sample walks down the tree: a node with :math:`c` items to choose gives
    :math:`t` of them to its left child with probability
    :math:`\propto \exp(I_{left}[t] + I_{right}[c - t])` (a Gumbel-max draw).

    Parameters
    ----------
    logits : array
        Log-odds, real floating, items along ``axis``; ``-inf`` excludes an item. No NaN
        or ``+inf``, and at least ``k`` finite entries per row (checked where values can
        be read; otherwise such a row gets fewer than ``k`` ones).
    k : int
        Subset size, ``1 <= k <= n``.
    axis : int, default -1
        The item axis.
    rng : None, int, or generator, optional
        Source of randomness, as in :func:`gumbel_softmax` (JAX needs a key).

    Returns
    -------
    array
        Exactly ``k`` ones per row, zeros elsewhere, with the type, shape, dtype and
        device of ``logits``; on torch and JAX its gradient is that of the marginals.

    Raises
    ------
    TypeError, ValueError
        As :func:`ksubset_marginals`, and for a bad ``rng`` as :func:`gumbel_softmax`.

    Notes
    -----
    The program runs on a binary tree over the items, ``log2 n`` levels of a few array
    operations each (inside tables up, a Gumbel-max split of the count down; the
    marginals add an outside pass), so it works under ``jax.jit``, ``jax.grad`` and in a
    lazy Dask graph. JAX compiles it once per shape (eager calls too), then takes
    milliseconds per call.
    The noise is one standard-Gumbel draw from ``rng`` of shape ``(*batch, N)``: for each
    level, leaves first, the next ``groups * (min(items below, k) + 1)`` entries of a row.

    Examples
    --------
    >>> import numpy as np
    >>> import relaxcat
    >>> logits = np.array([[0.0, 1.0, -1.0, 2.0, 0.5]])
    >>> z = relaxcat.simple_ksubset(logits, 2, rng=0)
    >>> z.sum(axis=-1)
    array([2.])
    >>> draws = relaxcat.simple_ksubset(np.broadcast_to(logits, (20_000, 5)), 2, rng=1)
    >>> mu = relaxcat.ksubset_marginals(logits, 2)  # the conditional marginals
    >>> np.round(mu, 2)
    array([[0.23, 0.53, 0.09, 0.8 , 0.36]])
    >>> bool(np.abs(draws.mean(axis=0) - mu).max() < 0.02)  # standard errors: <= 0.0035
    True

    """
    p, k = _prepare(logits, k, axis)
    backend, xp = p.backend, p.xp
    x = xp.moveaxis(p.x, p.axis, -1)
    batch = tuple(x.shape[:-1])
    size = 1 << max(0, (x.shape[-1] - 1).bit_length())
    source = p.backend.noise_source(rng, p.device, -1)  # the items are last in x
    # One draw for every level: one noise computation per shape (eager JAX compiles each).
    total = sum(groups * width for groups, width in _noise_shapes(size, k))
    noise = p.draw(source, (*batch, total))
    with backend.errstate():
        if p.gradient_needed():
            hot = backend.compiled(_sample_with_gradient, (0, 1))(backend, k, x, noise)
        else:
            hot = backend.compiled(_sample, (0, 1))(backend, k, x, noise)
    return p.out(xp.moveaxis(hot, -1, p.axis))


def _sample_with_gradient(backend: Backend, k: int, x: Array, noise: Array) -> Array:
    """The k-hot draw with the marginals' gradient: one computation for ``compiled``.

    The inside tables are computed once for both (the draw walks them without a gradient).
    On JAX one compilation instead of two, which took a third longer (figures in
    ``docs/distributions.md``).
    """
    tables = _inside(backend, k, _padded(backend, x), _dev(x))
    hot = _sample(backend, k, x, noise, [backend.stop_gradient(t) for t in tables])
    return straight_through(backend, hot, _marginals(backend, k, x, tables))
