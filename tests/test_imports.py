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


def test_torch_distributions_import_torch_only():
    # relaxcat.torch answers Pyro's calls, but imports Pyro only when Pyro asks.
    pytest.importorskip("torch")
    loaded = run("""
        import sys, torch, relaxcat.torch as rt
        d = rt.RelaxedOneHotCategorical(0.5, logits=torch.zeros(3))
        d.log_prob(d.rsample())
        rt.gumbel_softmax(torch.zeros(2, 3), 0.5, True)
        print([m for m in ("pyro", "jax", "numpyro", "cupy", "dask") if m in sys.modules])
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


# -- the import graph -------------------------------------------------------------------

PACKAGE = ROOT / "relaxcat"
#: adapter modules and the library each needs; skipped, with the reason, where it is absent
NEEDS = {
    "relaxcat._backends._torch": "torch",
    "relaxcat._backends._torch_cpu": "torch",
    "relaxcat._backends._jax": "jax",
    "relaxcat._backends._dask": "dask",
    "relaxcat._backends._cupy": "cupy",
    "relaxcat._backends._cuda": "cupy",
    "relaxcat.torch": "torch",
    "relaxcat.numpyro": "numpyro",
}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _library_reason(module: str) -> str | None:
    import importlib.util

    library = NEEDS.get(module)
    if library is not None and importlib.util.find_spec(library) is None:
        return f"{module} needs {library}, which is not installed"
    return None


@pytest.mark.parametrize("module", module_names())
def test_each_module_imports_alone(module):
    # A fresh interpreter per module: no import order set up by an earlier import can
    # hide a cycle that breaks this one.
    reason = _library_reason(module)
    if reason is not None:
        pytest.skip(reason)
    assert run(f"import {module}; print('ok')") == "ok"


def _runtime_imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """relaxcat modules that ``module`` imports when it runs (not under TYPE_CHECKING)."""
    import ast

    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit_statement(other)
                continue
            visit_statement(child)

    def visit_statement(child: ast.AST) -> None:
        if isinstance(child, ast.ImportFrom):
            if child.level:
                base = package.split(".")
                base = base[: len(base) - (child.level - 1)]
                target = ".".join(base + ([child.module] if child.module else []))
            else:
                target = child.module or ""
            if target.startswith("relaxcat"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in child.names)
        elif isinstance(child, ast.Import):
            found.update(a.name for a in child.names if a.name.startswith("relaxcat"))
        if top_level_only and isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
        ):
            return
        visit(child)

    visit(tree)
    modules = set(module_names())
    return {name for name in found if name in modules and name != module}


def _import_graph(top_level_only: bool) -> dict[str, set[str]]:
    graph = {}
    for name in module_names():
        parts = name.split(".")
        path = ROOT.joinpath(*parts)
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        graph[name] = _runtime_imports(path, name, top_level_only)
    return graph


def test_module_level_imports_have_no_cycle():
    graph = _import_graph(top_level_only=True)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], node, nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                walk(nxt, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [])


def test_adapters_never_import_the_layers_above_them():
    # The adapters serve the core; they receive validated inputs and import nothing from
    # it at run time, not even inside a function (only under TYPE_CHECKING, for types).
    above = {
        "relaxcat",
        "relaxcat._core",
        "relaxcat._validation",
        "relaxcat._distributions",
        "relaxcat._estimators",
        "relaxcat._anneal",
        "relaxcat.__main__",
    }
    graph = _import_graph(top_level_only=False)
    for name, imports in graph.items():
        if name.startswith("relaxcat._backends"):
            assert not imports & above, f"{name} imports {sorted(imports & above)}"


def test_every_framework_module_is_kept_from_doctest_collection():
    # pytest imports every module of the package to collect its doctests; a module that
    # imports a framework at the top must be listed in the root conftest.py, or the cells
    # without that framework fail at collection.
    import ast
    import importlib.util as util

    spec = util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    assert spec is not None and spec.loader is not None
    conftest = util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    frameworks = {"torch", "jax", "jaxlib", "cupy", "dask", "numpyro", "pyro"}
    for path in sorted((ROOT / "relaxcat").rglob("*.py")):
        tree = ast.parse(path.read_text())
        tops = set()
        for node in tree.body:  # module level only: imports inside functions are lazy
            if isinstance(node, ast.Import):
                tops |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.partition(".")[0])
        needed = tops & frameworks
        if needed:
            listed = conftest._ADAPTER_LIBRARIES.get(path.name)
            assert listed in needed, f"{path.name} imports {sorted(needed)}: list it in conftest.py"
