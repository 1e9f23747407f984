"""The test matrix: one session per backend, an agreement session, lint, docs, GPU, benchmarks.

Each ``tests`` cell installs relaxcat plus what ``backends/<name>.txt`` lists and runs the
whole suite with ``RELAXCAT_BACKENDS=<name>``. Run everything on the CPU with ``nox``.

The cells share two virtualenvs instead of making one each, so that torch and JAX are
installed once (``.nox/shared-*``; the default run then needs about 2.5 GB, not 7):

* ``base``: relaxcat's test dependencies with NumPy, array-api-strict and Dask and no other
  framework: the ``numpy``, ``array_api_strict`` and ``dask`` cells and ``sdist``;
* ``frameworks``: that plus PyTorch (CPU) and JAX (CPU) and the pinned linters: the
  ``torch`` and ``jax`` cells, ``agreement``, ``lint`` and the benchmarks.

A shared virtualenv is rebuilt when what it installs changes (the requirement lines, the
``backends/`` files or ``pyproject.toml``), and reused otherwise; relaxcat itself is
reinstalled from the working tree by every session.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import nox
from filelock import FileLock

ROOT = Path(__file__).parent
BACKENDS = ROOT / "backends"
CPU_BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask"]
#: The cells in the order they start: the longest first.
CELLS = ["jax", "numpy", "torch", "dask", "array_api_strict"]
GPU_BACKENDS = ["cupy", "torch", "jax"]
#: Pinned: a new release of a linter must not turn CI red by itself; bump them on purpose.
LINTERS = ["ruff==0.17.6", "mypy==2.4.1"]
SHARED = {
    "base": [".[test]", "build", "hatchling", "numpy", "array_api_strict", "dask"],
    "frameworks": [
        ".[test]",
        "hatchling",
        *LINTERS,
        "numpy",
        "array_api_strict",
        "dask",
        "torch",
        "jax",
    ],
}
CELL_ENV = {"numpy": "base", "array_api_strict": "base", "dask": "base"}  # others: frameworks

nox.options.default_venv_backend = "virtualenv"  # pip inside: it sees the local torch wheel
nox.options.error_on_missing_interpreters = True
# Sessions marked parallel run two at a time (more on a bigger machine): the JAX cell spends
# most of its time in single-threaded compilation, beside which the other sessions run.
# ``nox -j 1`` runs them one after another, and so does an older nox without ``--parallel``
# (the sessions are the same).
PARALLEL = "allow_parallel" in inspect.signature(nox.session).parameters
if PARALLEL:
    nox.options.parallel = max(2, min(4, (os.cpu_count() or 1) // 2))


def parallel_session(**kwargs: Any) -> Any:
    """``nox.session`` for a session that may run beside others."""
    return nox.session(**kwargs, allow_parallel=True) if PARALLEL else nox.session(**kwargs)


def requirements(*names: str) -> list[str]:
    args = []
    for name in names:
        args += ["-r", str(BACKENDS / f"{name}.txt")]
    return args


class SharedEnv:
    """A virtualenv under ``.nox/shared-<name>`` that several sessions run in."""

    def __init__(self, session: nox.Session, name: str) -> None:
        self.session = session
        self.path = ROOT / ".nox" / f"shared-{name}"
        self.bin = self.path / ("Scripts" if os.name == "nt" else "bin")
        spec = []
        for item in SHARED[name]:
            if (BACKENDS / f"{item}.txt").exists():
                spec += requirements(item)
            else:
                spec.append(item)
        digest = hashlib.sha256("\n".join(spec).encode())
        for item in [ROOT / "pyproject.toml", *sorted(BACKENDS.glob("*.txt"))]:
            digest.update(item.read_bytes())
        stamp = self.path / "relaxcat-requirements.sha256"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Sessions run in parallel: the first one to get here builds the environment, the
        # others wait for it. filelock comes with virtualenv, which nox needs.
        with FileLock(str(self.path) + ".lock"):
            if not stamp.exists() or stamp.read_text() != digest.hexdigest():
                shutil.rmtree(self.path, ignore_errors=True)
                venv = [sys.executable, "-m", "virtualenv", "-q", str(self.path)]
                session.run(*venv, external=True)
                self.run("python", "-m", "pip", "install", "-q", *spec)
                stamp.write_text(digest.hexdigest())
            else:
                session.log(f"Reusing {self.path.relative_to(ROOT)}")
            # relaxcat from the working tree, every time (pip always rebuilds a local
            # folder); hatchling is installed, so pip makes no build environment for it.
            pip = ["python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
            self.run(*pip, ".")

    def run(self, program: str, *args: str, env: dict[str, str] | None = None) -> None:
        path = os.pathsep.join([str(self.bin), os.environ.get("PATH", "")])
        full = {"VIRTUAL_ENV": str(self.path), "PATH": path, **(env or {})}
        self.session.run(str(self.bin / program), *args, env=full, external=True)


@parallel_session(venv_backend="none")
@nox.parametrize("backend", CELLS, ids=CELLS)
def tests(session: nox.Session, backend: str) -> None:
    """The whole suite on one backend; tests that take no backend run in the numpy cell."""
    env = SharedEnv(session, CELL_ENV.get(backend, "frameworks"))
    env.run("pytest", *session.posargs, env={"RELAXCAT_BACKENDS": backend})


@parallel_session(venv_backend="none")
def agreement(session: nox.Session) -> None:
    """Identical noise through every CPU backend; results must match NumPy's."""
    env = SharedEnv(session, "frameworks")
    backends = ",".join(CPU_BACKENDS)
    env.run(
        "pytest", "tests/test_agreement.py", *session.posargs, env={"RELAXCAT_BACKENDS": backends}
    )


@parallel_session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy on the package (with torch, jax and dask for their types)."""
    env = SharedEnv(session, "frameworks")
    env.run("ruff", "check", ".")
    env.run("ruff", "format", "--check", ".")
    env.run("mypy")


@parallel_session()
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors, into docs/_build/html."""
    session.install(".", "-r", "docs/requirements.txt")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@parallel_session(venv_backend="none")
def sdist(session: nox.Session) -> None:
    """Build the sdist, unpack it, collect every test and run the docs' and demo's tests there."""
    import tarfile

    env = SharedEnv(session, "base")
    tmp = ROOT / ".nox" / "sdist-check"
    shutil.rmtree(tmp, ignore_errors=True)
    env.run("python", "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp), ".")
    (archive,) = tmp.glob("relaxcat-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    source = tmp / archive.name.removesuffix(".tar.gz")
    env.run(
        "python", "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)
    )
    session.chdir(source)
    numpy_only = {"RELAXCAT_BACKENDS": "numpy"}
    # Every test module must import from the unpacked sdist (a missing file is a
    # collection error); then the tests that read the docs, the demo and the doctests run.
    # ``nox -s sdist -- <pytest args>`` runs what you pass instead, e.g. ``-- tests``.
    env.run("pytest", "-qq", "-p", "no:cacheprovider", "--collect-only", env=numpy_only)
    smoke = ["tests/test_docs_examples.py", "tests/test_demo.py", "tests/test_gumbel_softmax.py"]
    args = session.posargs or [*smoke, "relaxcat"]
    env.run("pytest", "-q", "-p", "no:cacheprovider", *args, env=numpy_only)
    session.chdir(ROOT)
    shutil.rmtree(tmp, ignore_errors=True)


@nox.session(default=False, venv_backend="none")
def vae(session: nox.Session) -> None:
    """The digits VAE on torch and JAX (5 seeds each, about an hour), then docs/vae.md.

    ``nox -s vae -- --steps 2000`` passes options to both runs.
    """
    env = SharedEnv(session, "frameworks")  # [test] holds the examples' extras
    for backend in ("torch", "jax"):
        out = f"docs/data/digits_vae_{backend}.json"
        args = ["--backend", backend, "--json", out, *session.posargs]
        env.run("python", "examples/digits_vae.py", *args)
    env.run("python", "docs/scripts/vae_report.py")


@nox.session(default=False, venv_backend="none")
def bench(session: nox.Session) -> None:
    """CPU benchmark against the anchors (not a test): ``nox -s bench -- --markdown FILE``."""
    SharedEnv(session, "frameworks").run("python", "benchmarks/cpu.py", *session.posargs)


@nox.session(default=False, venv_backend="none")
def gpu(session: nox.Session) -> None:
    """CuPy, torch CUDA and JAX GPU tests, then the GPU benchmark, in the current interpreter.

    Not in the default run: it needs an NVIDIA GPU with CuPy, CUDA torch and CUDA JAX
    installed beside relaxcat's dependencies (``backends/cupy.txt``). The benchmark table
    is written to ``$RELAXCAT_GPU_BENCH_MD`` (default ``gpu-benchmark.md``).
    """
    env = {
        "RELAXCAT_BACKENDS": ",".join(GPU_BACKENDS),
        "RELAXCAT_TEST_DEVICE": "cuda",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    session.run(
        "python", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs, env=env, external=True
    )
    markdown = os.environ.get("RELAXCAT_GPU_BENCH_MD", "gpu-benchmark.md")
    session.run("python", "benchmarks/gpu.py", "--markdown", markdown, env=env, external=True)


@nox.session(default=False, venv_backend="none")
def estimators(session: nox.Session) -> None:
    """Regenerate the estimator comparison: docs/estimators.md and docs/img/estimators.png.

    Bias and variance of every gradient estimator against an exact gradient, on PyTorch
    (CPU). Not in the default run: it takes minutes. Options go through, e.g.
    ``nox -s estimators -- --draws 20000``.
    """
    env = SharedEnv(session, "frameworks")
    env.run("python", "benchmarks/estimators.py", *session.posargs)


@nox.session(default=False, venv_backend="none")
def dask_bench(session: nox.Session) -> None:
    """Dask scaling benchmark: 200 million logits on a LocalCluster with 1, then 2 workers.

    Not in the default run: it takes minutes and most of the machine. Options go through,
    e.g. ``nox -s dask_bench -- --markdown dask-benchmark.md`` (see benchmarks/dask_scale.py).
    """
    SharedEnv(session, "base").run("python", "benchmarks/dask_scale.py", *session.posargs)
