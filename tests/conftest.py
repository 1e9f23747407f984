"""One test suite for every backend.

The backends under test are the known ones that are installed, narrowed by the
environment variable ``RELAXCAT_BACKENDS`` (comma-separated, e.g. ``numpy,torch``). A
selected backend that is absent is skipped with the reason in the summary. Tests ask for
the ``bk`` fixture, a :class:`Harness` that makes arrays of its library on the test device
(``RELAXCAT_TEST_DEVICE=cuda`` runs torch and JAX on the GPU; CuPy is always on the GPU).

Dask arrays are made with every axis of two or more elements split into two chunks, so
the category axis is split in every test. While a Dask test runs, Dask's scheduler is one
that raises: relaxcat must not compute anything during a call. Only the harness reads
results (``to_numpy``), with the synchronous scheduler named explicitly.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

import numpy as np
import pytest

KNOWN = ("numpy", "array_api_strict", "torch", "jax", "cupy", "dask")
AUTODIFF = ("torch", "jax")
#: Backends with each half-precision dtype (for ``backends(...)`` marks on parameters).
HALF = {"float16": ("numpy", "torch", "jax", "cupy", "dask"), "bfloat16": ("torch", "jax")}
#: Backends whose values relaxcat never reads (lazy graphs), beside arrays on a GPU.
LAZY = ("dask",)


def selected_backends() -> tuple[str, ...]:
    raw = os.environ.get("RELAXCAT_BACKENDS", "").strip()
    if not raw:
        return KNOWN
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = sorted(set(names) - set(KNOWN))
    if unknown:
        raise pytest.UsageError(
            f"RELAXCAT_BACKENDS names unknown backends {unknown}; known: {KNOWN}"
        )
    return names


def test_device() -> str:
    return os.environ.get("RELAXCAT_TEST_DEVICE", "cpu")


def absent_reason(name: str) -> str | None:
    """Why backend ``name`` cannot be tested here, or None if it can."""
    if importlib.util.find_spec(name) is None:
        return f"{name} is not installed"
    if name == "cupy":
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() == 0:
                return "cupy is installed but there is no CUDA GPU"
        except Exception as exc:  # CUDA driver missing, etc.
            return f"cupy is installed but cannot use a GPU ({type(exc).__name__}: {exc})"
    if test_device() == "cuda" and name == "torch":
        import torch

        if not torch.cuda.is_available():
            return "RELAXCAT_TEST_DEVICE=cuda but torch sees no CUDA device"
    if test_device() == "cuda" and name == "jax":
        import jax

        try:
            jax.devices("gpu")
        except RuntimeError:
            return "RELAXCAT_TEST_DEVICE=cuda but JAX sees no GPU"
    return None


class Harness:
    """Makes and reads arrays of one library, so tests are written once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.has_autodiff = name in AUTODIFF
        self.on_gpu = name == "cupy" or (test_device() == "cuda" and name in ("torch", "jax"))
        if name == "jax":
            import jax

            jax.config.update("jax_enable_x64", True)
            self.jax = jax
            self.device = jax.devices("gpu")[0] if self.on_gpu else jax.devices("cpu")[0]
            self.lib: Any = jax.numpy
        elif name == "torch":
            import torch

            self.device = torch.device("cuda" if self.on_gpu else "cpu")
            self.lib = torch
        elif name == "cupy":
            import cupy

            self.device = cupy.cuda.Device(0)
            self.lib = cupy
        elif name == "dask":
            import dask.array

            self.device = None
            self.lib = dask.array
        else:
            self.lib = importlib.import_module(name)
            self.device = None

    def __repr__(self) -> str:
        return f"Harness({self.name})"

    def dtype(self, name: str) -> Any:
        return getattr(self.lib, name)

    def asarray(self, a: Any, dtype: str | None = "float64") -> Any:
        a = np.asarray(a)
        if self.name == "torch":
            t = self.lib.as_tensor(np.array(a), device=self.device)  # a writable copy
            return t if dtype is None else t.to(self.dtype(dtype))
        if self.name == "jax":
            arr = self.jax.device_put(a, self.device)
            return arr if dtype is None else arr.astype(self.dtype(dtype))
        if self.name == "cupy":
            arr = self.lib.asarray(a)
            return arr if dtype is None else arr.astype(self.dtype(dtype))
        if self.name == "array_api_strict":
            return self.lib.asarray(a, dtype=None if dtype is None else self.dtype(dtype))
        if self.name == "dask":
            a = a if dtype is None else a.astype(dtype)
            return self.lib.from_array(a, chunks=self.halves(a.shape))
        return a if dtype is None else a.astype(dtype)

    @staticmethod
    def halves(shape: tuple[int, ...]) -> tuple[int, ...]:
        """Dask chunk sizes that split every axis of two or more elements in two."""
        return tuple(max(1, -(-d // 2)) for d in shape)

    def to_numpy(self, x: Any) -> np.ndarray:
        if self.name == "torch":
            x = x.detach().cpu()
            if x.dtype == self.lib.bfloat16:
                x = x.float()
            return x.numpy()
        if self.name == "cupy":
            return self.lib.asnumpy(x)
        if self.name == "dask":
            # The synchronous scheduler runs the tasks here, inside the errstate that
            # relaxcat's other backends apply during a call (see relaxcat/_backends/_dask.py).
            with np.errstate(over="ignore", under="ignore"):
                return np.asarray(x.compute(scheduler="sync"))
        if self.name == "jax" and x.dtype == self.lib.bfloat16:
            x = x.astype(self.lib.float32)
        return np.asarray(x)

    def rng(self, seed: int) -> Any:
        """The library's own generator object for ``seed``."""
        if self.name == "torch":
            return self.lib.Generator(device=self.device).manual_seed(seed)
        if self.name == "jax":
            return self.jax.random.key(seed)
        if self.name in ("cupy", "dask"):
            return self.lib.random.default_rng(seed)
        return np.random.default_rng(seed)

    def device_of(self, x: Any) -> Any:
        from array_api_compat import device

        return device(x)

    def assert_like(self, y: Any, like: Any) -> None:
        """Same array type, dtype, shape and device as ``like``."""
        assert type(y) is type(like), (type(y), type(like))
        assert y.dtype == like.dtype, (y.dtype, like.dtype)
        assert tuple(y.shape) == tuple(like.shape)
        assert self.device_of(y) == self.device_of(like)
        if self.name == "dask":
            assert y.chunks == like.chunks, (y.chunks, like.chunks)


def grad_of_tau(bk: Harness, f: Any, w: np.ndarray, tau: float = 0.7) -> np.ndarray:
    """Gradient of ``sum(w * f(tau))`` for a (1, 1) ``tau``, the only tracked input, as NumPy."""
    weights = bk.asarray(w)
    if bk.name == "torch":
        t = bk.lib.tensor([[tau]], dtype=bk.lib.float64, requires_grad=True)
        (f(t) * weights).sum().backward()
        return bk.to_numpy(t.grad)
    return bk.to_numpy(bk.jax.grad(lambda t: (f(t) * weights).sum())(bk.asarray([[tau]])))


def result_of_forked_child(target: Any) -> Any:
    """Run ``target(queue)`` in a forked child; assert it exits within 60 s; return its put.

    What the child puts must be small: a child does not exit before its queue's data has
    gone through the pipe (64 KiB), and the parent reads only after the exit.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(queue,))
    proc.start()
    proc.join(timeout=60)
    if proc.exitcode is None:
        proc.kill()
    assert proc.exitcode == 0, "the forked child hung (a stale thread pool) or failed"
    return queue.get(timeout=5)


def _params() -> list[Any]:
    params = []
    for name in KNOWN:
        reason = absent_reason(name) if name in selected_backends() else None
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture(params=_params(), scope="session")
def bk(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


def _computing_is_forbidden(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(
        "a Dask graph was computed during a relaxcat call; calls on Dask arrays must stay lazy"
    )


@pytest.fixture(autouse=True)
def _dask_stays_lazy(request: pytest.FixtureRequest) -> Any:
    """For Dask variants: any compute not asked for by the harness fails the test."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("bk") != "dask":
        yield
        return
    import dask

    with dask.config.set(scheduler=_computing_is_forbidden):
        yield


def _on_gpu(name: str) -> bool:
    return name == "cupy" or (test_device() == "cuda" and name in ("torch", "jax"))


def _values_unreadable(name: str) -> bool:
    return _on_gpu(name) or name in LAZY


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run only on these backends (others are deselected)"
    )
    config.addinivalue_line(
        "markers",
        "host_values: needs values relaxcat can read (not run on a GPU, nor on Dask)",
    )
    config.addinivalue_line(
        "markers", "cuda_kernels: exercises the fused CUDA kernels (runs only on a GPU)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) backend variants that do not apply.

    A variant is dropped when its backend is not selected by ``RELAXCAT_BACKENDS``, when a
    ``backends(...)`` marker excludes it (a torch-only test has no NumPy variant), or when
    it needs host-readable values and the backend's arrays live on a GPU or in a lazy Dask
    graph. Skips are kept for one case only: a selected backend that is not installed.

    A test that takes no backend (the demo, the docs' examples, import checks, doctests,
    pure-Python helpers) checks the installation as a whole, whatever the backend: it runs
    where NumPy is selected (the numpy cell, the agreement session, which has every CPU
    library installed, and a plain ``pytest``), not again in every cell.
    """
    selected = set(selected_backends())
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("bk") if callspec is not None else None
        applies = (
            ("numpy" in selected)
            if name is None
            else (
                name in selected
                and all(name in m.args for m in item.iter_markers("backends"))
                and not (
                    _values_unreadable(name) and any(True for _ in item.iter_markers("host_values"))
                )
                and (_on_gpu(name) or not any(True for _ in item.iter_markers("cuda_kernels")))
            )
        )
        (keep if applies else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
