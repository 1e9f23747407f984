"""A pytest plugin: how many XLA compilations the JAX cell makes, what they are, what they cost.

The JAX cell's time is mostly compilation (eager JAX compiles every new operation and shape
on its own). This plugin listens to JAX's monitoring events during each test's call and
prints, at the end of the run, the totals (test-call time, XLA backend compilation,
lowering to MLIR, tracing) and the functions that took the most compilation time.

Run::

    PYTHONPATH=benchmarks RELAXCAT_BACKENDS=jax python -m pytest -p jax_compile_stats -q

(``jit(add)``, ``jit(log)`` and the like are single operations compiled eagerly;
``jit(sample_from_sum)`` and other relaxcat names are its compiled functions.)
"""

from __future__ import annotations

import collections
import time
from typing import Any

import pytest

_EVENTS: collections.Counter[str] = collections.Counter()
_COUNTS: collections.Counter[str] = collections.Counter()
_BY_NAME: collections.Counter[str] = collections.Counter()
_CALLS: collections.Counter[str] = collections.Counter()
_IN_TEST = [False]


def _listener(event: str, duration: float, **kwargs: Any) -> None:
    if not _IN_TEST[0] or not event.startswith("/jax/core/compile/"):
        return
    name = event.rsplit("/", 1)[-1]
    _EVENTS[name] += duration
    _COUNTS[name] += 1
    if name == "backend_compile_duration":
        fun = str(kwargs.get("fun_name"))
        _BY_NAME[fun] += duration
        _CALLS[fun] += 1


def pytest_configure(config: pytest.Config) -> None:
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(_listener)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    _IN_TEST[0] = True
    start = time.perf_counter()
    yield
    _EVENTS["test calls"] += time.perf_counter() - start
    _IN_TEST[0] = False


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    write("")
    write(f"test calls: {_EVENTS['test calls']:.1f} s")
    for name in ("backend_compile_duration", "jaxpr_to_mlir_module_duration"):
        write(f"{name}: {_COUNTS[name]} events, {_EVENTS[name]:.1f} s")
    write(f"jaxpr_trace_duration: {_EVENTS['jaxpr_trace_duration']:.1f} s")
    write("most compilation time (s, count, function):")
    for fun, seconds in _BY_NAME.most_common(25):
        write(f"  {seconds:7.2f} {_CALLS[fun]:5d}  {fun}")
