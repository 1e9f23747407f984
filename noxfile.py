"""The test matrix: one session per backend, an agreement session, lint, docs, GPU, benchmarks.

Each ``tests`` cell installs relaxcat plus what ``backends/<name>.txt`` lists and runs the
whole suite with ``RELAXCAT_BACKENDS=<name>``. Run everything on the CPU with ``nox``.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
BACKENDS = ROOT / "backends"
CPU_BACKENDS = ["numpy", "array_api_strict", "torch", "jax", "dask"]
GPU_BACKENDS = ["cupy", "torch", "jax"]

nox.options.default_venv_backend = "virtualenv"  # pip inside: it sees the local torch wheel
nox.options.error_on_missing_interpreters = True


def requirements(*names: str) -> list[str]:
    args = []
    for name in names:
        args += ["-r", str(BACKENDS / f"{name}.txt")]
    return args


@nox.session
@nox.parametrize("backend", CPU_BACKENDS, ids=CPU_BACKENDS)
def tests(session: nox.Session, backend: str) -> None:
    """The whole suite on one backend (doctests included)."""
    session.install(".[test]", *requirements(backend))
    session.run("pytest", *session.posargs, env={"RELAXCAT_BACKENDS": backend})


@nox.session
def agreement(session: nox.Session) -> None:
    """Identical noise through every CPU backend; results must match NumPy's."""
    session.install(".[test]", *requirements(*CPU_BACKENDS))
    session.run(
        "pytest",
        "tests/test_agreement.py",
        *session.posargs,
        env={"RELAXCAT_BACKENDS": ",".join(CPU_BACKENDS)},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy on the package (with torch, jax and dask for their types)."""
    # Pinned: a new release of a linter must not turn CI red by itself; bump them on purpose.
    session.install("ruff==0.17.6", "mypy==2.4.1", ".", *requirements("torch", "jax", "dask"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with warnings as errors, into docs/_build/html."""
    session.install(".", "-r", "docs/requirements.txt")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session(reuse_venv=True)  # its dependencies are the tests(numpy) cell's: install them once
def sdist(session: nox.Session) -> None:
    """Build the sdist, unpack it and run the NumPy suite there: it must hold what tests need."""
    import shutil
    import tarfile

    session.install("build", "hatchling")
    tmp = Path(session.create_tmp()) / "sdist"
    shutil.rmtree(tmp, ignore_errors=True)
    session.run("python", "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp), ".")
    (archive,) = tmp.glob("relaxcat-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    source = tmp / archive.name.removesuffix(".tar.gz")
    # pip reinstalls relaxcat from a folder every time and keeps dependencies it already has.
    session.install("--no-build-isolation", f"{source}[test]")
    session.chdir(source)
    env = {"RELAXCAT_BACKENDS": "numpy"}
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs, env=env)


@nox.session(default=False)
def vae(session: nox.Session) -> None:
    """The digits VAE on torch and JAX (5 seeds each, about an hour), then docs/vae.md.

    ``nox -s vae -- --steps 2000`` passes options to both runs.
    """
    session.install(".[examples]", *requirements("torch", "jax"))
    for backend in ("torch", "jax"):
        out = f"docs/data/digits_vae_{backend}.json"
        args = ["--backend", backend, "--json", out, *session.posargs]
        session.run("python", "examples/digits_vae.py", *args)
    session.run("python", "docs/scripts/vae_report.py")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """CPU benchmark against the anchors (not a test): ``nox -s bench -- --markdown FILE``."""
    session.install(".", *requirements("torch", "jax"))
    session.run("python", "benchmarks/cpu.py", *session.posargs)


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


@nox.session(default=False)
def estimators(session: nox.Session) -> None:
    """Regenerate the estimator comparison: docs/estimators.md and docs/img/estimators.png.

    Bias and variance of every gradient estimator against an exact gradient, on PyTorch
    (CPU). Not in the default run: it takes minutes. Options go through, e.g.
    ``nox -s estimators -- --draws 20000``.
    """
    session.install(".", *requirements("torch"), "matplotlib>=3.8")
    session.run("python", "benchmarks/estimators.py", *session.posargs)


@nox.session(default=False)
def dask_bench(session: nox.Session) -> None:
    """Dask scaling benchmark: 200 million logits on a LocalCluster with 1, then 2 workers.

    Not in the default run: it takes minutes and most of the machine. Options go through,
    e.g. ``nox -s dask_bench -- --markdown dask-benchmark.md`` (see benchmarks/dask_scale.py).
    """
    session.install(".", *requirements("dask"))
    session.run("python", "benchmarks/dask_scale.py", *session.posargs)
