"""Importing relaxcat, and using it with NumPy, imports no array framework."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "jax", "cupy", "dask")


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return out.stdout.strip()


def test_import_relaxcat_imports_no_framework():
    loaded = run(f"""
        import sys, relaxcat
        print([m for m in {FRAMEWORKS!r} if m in sys.modules])
    """)
    assert loaded == "[]"


def test_numpy_call_imports_no_other_framework():
    loaded = run(f"""
        import sys, numpy as np, relaxcat
        x = np.zeros((4, 3), dtype=np.float32)
        relaxcat.gumbel_softmax(x, 0.5, rng=0)
        relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=np.random.default_rng(0))
        relaxcat.gumbel_noise(x, rng=0)
        print([m for m in {FRAMEWORKS!r} if m in sys.modules])
    """)
    assert loaded == "[]"


def test_strict_call_imports_no_other_framework():
    pytest.importorskip("array_api_strict")
    loaded = run(f"""
        import sys, array_api_strict as xp, relaxcat
        relaxcat.gumbel_softmax(xp.zeros((4, 3)), 0.5, hard=True, rng=0)
        print([m for m in {FRAMEWORKS!r} if m in sys.modules])
    """)
    assert loaded == "[]"


def test_torch_call_imports_neither_jax_nor_cupy():
    pytest.importorskip("torch")
    loaded = run("""
        import sys, torch, relaxcat
        relaxcat.gumbel_softmax(torch.zeros(4, 3), 0.5, hard=True, rng=0)
        print([m for m in ("jax", "cupy", "dask") if m in sys.modules])
    """)
    assert loaded == "[]"


def test_distribution_functions_import_no_other_framework():
    loaded = run(f"""
        import sys, numpy as np, relaxcat as r
        x = np.log(np.full((4, 3), 1 / 3, dtype=np.float32))
        y = np.full((4, 3), 1 / 3, dtype=np.float32)
        r.log_gumbel_softmax(x, 0.5, rng=0)
        r.concrete_log_prob(y, x, 0.5)
        r.exp_concrete_log_prob(np.log(y), x, 0.5)
        r.relaxed_bernoulli(x, 0.5, hard=True, rng=0)
        r.relaxed_bernoulli_log_prob(y, x, 0.5)
        r.sample_categorical(x, rng=0)
        r.gumbel_topk(x, 2, rng=0)
        r.relaxed_topk(x, 2, 0.5, hard=True, rng=0)
        r.relaxed_topk(x, 2, 0.5, method="max", rng=0)
        r.categorical_kl(x, np.zeros_like(x))
        print([m for m in {FRAMEWORKS!r} if m in sys.modules])
    """)
    assert loaded == "[]"


def test_distribution_functions_on_strict_import_no_other_framework():
    pytest.importorskip("array_api_strict")
    loaded = run(f"""
        import sys, array_api_strict as xp, relaxcat as r
        x = xp.zeros((4, 3))
        r.log_gumbel_softmax(x, 0.5, rng=0)
        r.concrete_log_prob(xp.full((4, 3), 1 / 3), x, 0.5)
        r.relaxed_bernoulli(x, 0.5, rng=0)
        r.gumbel_topk(x, 2, rng=0)
        r.relaxed_topk(x, 2, 0.5, method="max", hard=True, rng=0)
        r.categorical_kl(x, x)
        print([m for m in {FRAMEWORKS!r} if m in sys.modules])
    """)
    assert loaded == "[]"


def test_dask_call_imports_no_other_framework():
    pytest.importorskip("dask", reason="dask is not installed")
    loaded = run("""
        import sys, dask.array as da, relaxcat
        x = da.zeros((4, 6), chunks=(2, 3))
        relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=0).compute()
        relaxcat.relaxed_topk(x, 2, 0.5, rng=0).compute()
        print([m for m in ("torch", "jax", "cupy") if m in sys.modules])
    """)
    assert loaded == "[]"


def test_unlisted_library_does_not_import_the_cupy_adapter():
    pytest.importorskip("array_api_strict")
    out = run("""
        import sys, numpy as np, array_api_strict as xp, relaxcat
        from relaxcat._backends import _adapter_class, backend_of

        class Sub(type(xp.zeros(1))):  # defined in __main__: a library relaxcat does not list
            pass

        x = xp.zeros((4, 3))
        sub = Sub._new(np.zeros((4, 3)), device=x.device)
        relaxcat.gumbel_softmax(sub, 0.5, hard=True, rng=0)
        tau = Sub._new(np.full((4, 1), 0.5), device=x.device)
        relaxcat.gumbel_softmax(x, tau, noise=relaxcat.gumbel_noise(sub, rng=0))
        print(backend_of(sub) is backend_of(x))
        try:
            _adapter_class("notalibrary")
        except LookupError as exc:
            print("LookupError", "notalibrary" in str(exc))
        print("relaxcat._backends._cupy" in sys.modules, "cupy" in sys.modules)
    """)
    assert out.splitlines() == ["True", "LookupError True", "False False"]
