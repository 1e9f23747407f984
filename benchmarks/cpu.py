"""CPU benchmark: relaxcat against the anchors, side by side, in one process.

Run with ``nox -s bench`` (or ``python benchmarks/cpu.py`` where torch, jax and numpy are
installed). Each row times relaxcat and its anchor alternately (A, B, A, B, ...) on the same
input and reports the medians and the ratio ``anchor / relaxcat`` (>= 1: relaxcat faster).
Memory rows run each candidate in a fresh subprocess and report the growth of the peak
resident set during one forward call (Linux ``VmHWM``, reset just before the call), divided
by the size of the logits: the output counts, the logits themselves do not.

``--markdown FILE`` also writes the table as Markdown (used for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import relaxcat

SHAPES = [(4096, 1024), (64, 50257)]
TAU = 0.5


@dataclass
class Row:
    name: str
    shape: str
    anchor: str
    ours: float
    theirs: float
    unit: str = "ms"
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.theirs / self.ours


def interleaved(
    fns: dict[str, Callable[[], Any]], reps: int, sync: Callable[[Any], Any]
) -> dict[str, float]:
    """Median seconds per call for each function, timed alternately after a warm-up."""
    for fn in fns.values():
        sync(fn())
        sync(fn())
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            start = time.perf_counter()
            sync(fn())
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def per_call_us(
    fns: dict[str, Callable[[], Any]], number: int = 2000, repeat: int = 15
) -> dict[str, float]:
    """Best-of-``repeat`` mean microseconds per call, interleaved."""
    best: dict[str, float] = {k: float("inf") for k in fns}
    for fn in fns.values():
        for _ in range(200):
            fn()
    for _ in range(repeat):
        for k, fn in fns.items():
            best[k] = min(best[k], timeit.timeit(fn, number=number) / number * 1e6)
    return best


# -- anchors ---------------------------------------------------------------------------


def numpy_floor(
    x: np.ndarray, tau: float, rng: np.random.Generator, hard: bool = False
) -> np.ndarray:
    """A careful hand-written NumPy Gumbel-softmax: in place, ziggurat, zero-guarded."""
    buf = rng.standard_exponential(size=x.shape, dtype=x.dtype)
    np.maximum(buf, np.finfo(x.dtype).smallest_normal, out=buf)
    np.log(buf, out=buf)
    np.subtract(x, buf, out=buf)
    if hard:
        out = np.zeros_like(x)
        np.put_along_axis(out, buf.argmax(-1)[:, None], 1.0, -1)
        return out
    buf -= buf.max(-1, keepdims=True)
    buf /= tau
    np.exp(buf, out=buf)
    buf /= buf.sum(-1, keepdims=True)
    return buf


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# -- rows -------------------------------------------------------------------------------


def torch_rows(reps: int) -> list[Row]:
    import torch
    import torch.nn.functional as F

    rows = []
    for shape in SHAPES:
        label = "x".join(map(str, shape))
        x = torch.randn(*shape)
        xg = x.clone().requires_grad_(True)
        w = torch.randn(*shape)

        def fwd_bwd(f: Callable[[], Any]) -> Callable[[], None]:
            def run() -> None:
                f().backward(w)
                xg.grad = None

            return run

        cases = [
            (
                "torch soft forward",
                lambda: relaxcat.gumbel_softmax(x, TAU),
                lambda: F.gumbel_softmax(x, TAU),
                "F.gumbel_softmax",
                ">= 4x",
                4.0,
            ),
            (
                "torch hard forward",
                lambda: relaxcat.gumbel_softmax(x, TAU, hard=True),
                lambda: F.gumbel_softmax(x, TAU, hard=True),
                "F.gumbel_softmax(hard)",
                "",
                None,
            ),
            (
                "torch soft forward+backward",
                fwd_bwd(lambda: relaxcat.gumbel_softmax(xg, TAU)),
                fwd_bwd(lambda: F.gumbel_softmax(xg, TAU)),
                "F.gumbel_softmax",
                "",
                None,
            ),
            (
                "torch hard forward+backward",
                fwd_bwd(lambda: relaxcat.gumbel_softmax(xg, TAU, hard=True)),
                fwd_bwd(lambda: F.gumbel_softmax(xg, TAU, hard=True)),
                "F.gumbel_softmax(hard)",
                ">= 3x",
                3.0,
            ),
            (
                "torch rsample",
                lambda: relaxcat.gumbel_softmax(x, TAU),
                # validate_args=False: torch's Simplex check rejects softmax(logits) of
                # 50257 float32 categories (the sum is off by more than its 1e-6 tolerance).
                lambda: torch.distributions.RelaxedOneHotCategorical(
                    torch.tensor(TAU), logits=x, validate_args=False
                ).rsample(),
                "RelaxedOneHotCategorical.rsample",
                "",
                None,
            ),
        ]
        for name, ours, theirs, anchor, target, threshold in cases:
            t = interleaved({"ours": ours, "theirs": theirs}, reps, lambda y: y)
            row = Row(name, label, anchor, t["ours"] * 1e3, t["theirs"] * 1e3, target=target)
            if threshold is not None:
                row.met = row.ratio >= threshold
            rows.append(row)
    return rows


SMALL_SHAPES = [(1, 10), (32, 10), (8, 64)]


def small_torch_rows() -> list[Row]:
    """torch at the sizes of selector logits and small policies, per call (microseconds).

    relaxcat's Python-level cost (validation, dispatch) dominates here, not the arithmetic:
    forward, and forward plus backward of ``(y * w).sum()``, against ``F.gumbel_softmax``.
    """
    import torch
    import torch.nn.functional as F

    rows = []
    for shape in SMALL_SHAPES:
        label = "x".join(map(str, shape))
        x = torch.randn(*shape)
        xg = x.clone().requires_grad_(True)
        w = torch.randn(*shape)
        for hard in (False, True):
            kind = "hard" if hard else "soft"

            def fwd_bwd(f: Callable[..., Any], hard: bool = hard) -> Callable[[], None]:
                def run() -> None:
                    (f(xg, TAU, hard=hard) * w).sum().backward()
                    xg.grad = None

                return run

            forward = per_call_us(
                {
                    "ours": lambda hard=hard: relaxcat.gumbel_softmax(x, TAU, hard=hard),
                    "theirs": lambda hard=hard: F.gumbel_softmax(x, TAU, hard=hard),
                },
                number=500,
                repeat=9,
            )
            both = per_call_us(
                {"ours": fwd_bwd(relaxcat.gumbel_softmax), "theirs": fwd_bwd(F.gumbel_softmax)},
                number=300,
                repeat=9,
            )
            for name, t, limit in (
                (f"torch {kind} forward", forward, 1.0),
                (f"torch {kind} forward+backward", both, 1.1),
            ):
                row = Row(
                    name,
                    label,
                    f"F.gumbel_softmax{'(hard)' if hard else ''}",
                    t["ours"],
                    t["theirs"],
                    unit="us/call",
                    target=f"<= {limit:g}x anchor's time",
                )
                row.met = row.ours <= limit * row.theirs
                rows.append(row)
    return rows


JAX_FIRST_CALL_CHILD = r"""
import json, sys, time
import jax, jax.numpy as jnp
which, rows, cols, hard = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
key = jax.random.key(0)
if which == "ours":
    import relaxcat
    f = lambda x: relaxcat.gumbel_softmax(x, 0.5, hard=hard, rng=key)
else:
    def f(x):
        y = jax.nn.softmax((x + jax.random.gumbel(key, x.shape, x.dtype)) / 0.5, axis=-1)
        if hard:
            y = jax.nn.one_hot(jnp.argmax(y, axis=-1), x.shape[-1], dtype=x.dtype)
        return y
f(jnp.zeros((3, 7))).block_until_ready()  # start-up: backend, imports, first compilations
x = jnp.zeros((rows, cols))
start = time.perf_counter()
f(x).block_until_ready()
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def jax_first_call_rows(repeat: int = 3) -> list[Row]:
    """Eager JAX, the first call on a new shape (compilation included), fresh processes.

    Each candidate runs in its own process (so neither reuses the other's compiled
    primitives), warmed up on another shape; the median of ``repeat`` processes.
    """
    rows = []
    for shape in [(32, 10), (8, 64), (256, 1000)]:
        for hard in (False, True):
            res: dict[str, list[float]] = {"ours": [], "theirs": []}
            for _ in range(repeat):
                for which in res:
                    args = [which, str(shape[0]), str(shape[1]), "1" if hard else "0"]
                    out = subprocess.run(
                        [sys.executable, "-c", JAX_FIRST_CALL_CHILD, *args],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    res[which].append(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
            row = Row(
                f"jax eager first call, {'hard' if hard else 'soft'}",
                "x".join(map(str, shape)),
                "eager jax.random.gumbel + softmax",
                statistics.median(res["ours"]) * 1e3,
                statistics.median(res["theirs"]) * 1e3,
                target="<= 1.2x anchor's time",
            )
            row.met = row.ours <= 1.2 * row.theirs
            rows.append(row)
    return rows


def numpy_rows(reps: int) -> list[Row]:
    rows = []
    for shape in SHAPES:
        label = "x".join(map(str, shape))
        x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
        for hard in (False, True):
            t = interleaved(
                {
                    "ours": lambda hard=hard: relaxcat.gumbel_softmax(x, TAU, hard=hard, rng=g1),
                    "theirs": lambda hard=hard: numpy_floor(x, TAU, g2, hard),
                },
                reps,
                lambda y: y,
            )
            row = Row(
                f"numpy {'hard' if hard else 'soft'} forward",
                label,
                "hand-written NumPy floor",
                t["ours"] * 1e3,
                t["theirs"] * 1e3,
                target="within 1.15x",
            )
            row.met = row.ratio >= 1 / 1.15
            rows.append(row)
    return rows


def jax_rows(reps: int) -> list[Row]:
    import jax
    import jax.numpy as jnp

    rows = []
    key = jax.random.key(0)
    hand_soft = jax.jit(
        lambda x, k: jax.nn.softmax((x + jax.random.gumbel(k, x.shape, x.dtype)) / TAU, axis=-1)
    )
    hand_hard = jax.jit(
        lambda x, k: jax.nn.one_hot(
            jnp.argmax(x + jax.random.gumbel(k, x.shape, x.dtype), -1), x.shape[-1], dtype=x.dtype
        )
    )
    ours_soft = jax.jit(lambda x, k: relaxcat.gumbel_softmax(x, TAU, rng=k))
    ours_hard = jax.jit(lambda x, k: relaxcat.gumbel_softmax(x, TAU, hard=True, rng=k))
    for shape in SHAPES:
        label = "x".join(map(str, shape))
        x = jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
        for kind, ours, hand in (("soft", ours_soft, hand_soft), ("hard", ours_hard, hand_hard)):
            t = interleaved(
                {"ours": lambda o=ours: o(x, key), "theirs": lambda h=hand: h(x, key)},
                reps,
                lambda y: y.block_until_ready(),
            )
            row = Row(
                f"jax jit {kind}",
                label,
                "hand-written jit (jax.random.gumbel + softmax)",
                t["ours"] * 1e3,
                t["theirs"] * 1e3,
                target="within 1.1x",
            )
            row.met = row.ratio >= 1 / 1.1
            rows.append(row)
    return rows


def philox_rows(reps: int) -> list[Row]:
    """``rng=relaxcat.Philox(seed)`` against each library's own generator, 4096x1024 float32."""
    rows = []
    shape = (4096, 1024)
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    key = relaxcat.Philox(5)
    candidates: list[tuple[str, str, Callable[[], Any], Callable[[], Any], Any, float]] = []
    g = np.random.default_rng(5)
    candidates.append(
        (
            "numpy",
            "rng=numpy Generator",
            lambda: relaxcat.gumbel_softmax(x, TAU, rng=key),
            lambda: relaxcat.gumbel_softmax(x, TAU, rng=g),
            lambda y: y,
            2.0,
        )
    )
    if importlib.util.find_spec("torch"):
        import torch

        xt = torch.from_numpy(x)
        candidates.append(
            (
                "torch CPU",
                "rng=None (torch's generator)",
                lambda: relaxcat.gumbel_softmax(xt, TAU, rng=key),
                lambda: relaxcat.gumbel_softmax(xt, TAU),
                lambda y: y,
                2.0,
            )
        )
    if importlib.util.find_spec("jax"):
        import jax
        import jax.numpy as jnp

        xj = jnp.asarray(x)
        jkey = jax.random.key(5)
        ours = jax.jit(lambda v: relaxcat.gumbel_softmax(v, TAU, rng=key))
        theirs = jax.jit(lambda v, k: relaxcat.gumbel_softmax(v, TAU, rng=k))
        candidates.append(
            (
                "jax jit",
                "rng=jax.random.key",
                lambda: ours(xj),
                lambda: theirs(xj, jkey),
                lambda y: y.block_until_ready(),
                1.5,
            )
        )
    for name, anchor, ours_fn, theirs_fn, sync, limit in candidates:
        t = interleaved({"ours": ours_fn, "theirs": theirs_fn}, reps, sync)
        row = Row(
            f"{name} soft, Philox",
            "4096x1024",
            anchor,
            t["ours"] * 1e3,
            t["theirs"] * 1e3,
            target=f"at most {limit:g}x the time",
        )
        row.met = row.ratio >= 1 / limit
        rows.append(row)
    return rows


def philox_dask_rows(reps: int = 3) -> list[Row]:
    """Dask 200,000 x 1,000 float32 (chunks of 10,000 rows), soft sample summed, threads."""
    import dask
    import dask.array as da

    x = da.random.default_rng(0).standard_normal((200_000, 1_000), chunks=(10_000, 1_000))
    x = x.astype(np.float32)
    key = relaxcat.Philox(5)
    with dask.config.set(scheduler="threads"):
        t = interleaved(
            {
                "ours": lambda: relaxcat.gumbel_softmax(x, TAU, rng=key).sum().compute(),
                "theirs": lambda: relaxcat.gumbel_softmax(x, TAU, rng=5).sum().compute(),
            },
            reps,
            lambda y: y,
        )
    row = Row(
        "dask soft, Philox",
        "200000x1000",
        "rng=int seed (Dask's generator)",
        t["ours"] * 1e3,
        t["theirs"] * 1e3,
        target="within 1.3x",
    )
    row.met = row.ratio >= 1 / 1.3
    return [row]


def overhead_rows() -> list[Row]:
    """Per-call cost on 1x10 logits above the library's own softmax (microseconds)."""
    rows = []
    x = np.zeros((1, 10), np.float32)
    g = np.random.default_rng(0)
    t = per_call_us(
        {
            "ours": lambda: relaxcat.gumbel_softmax(x, TAU, rng=g),
            "softmax": lambda: numpy_softmax(x),
            "floor": lambda: numpy_floor(x, TAU, g),
        }
    )
    row = Row(
        "numpy call overhead",
        "1x10",
        "NumPy softmax (hand-written)",
        t["ours"],
        t["softmax"],
        unit="us",
        target="<= 10 us above softmax",
    )
    row.extra = {"overhead_us": t["ours"] - t["softmax"], "floor_us": t["floor"]}
    row.met = row.extra["overhead_us"] <= 10
    rows.append(row)
    if importlib.util.find_spec("torch"):
        import torch
        import torch.nn.functional as F

        xt = torch.zeros(1, 10)
        t = per_call_us(
            {
                "ours": lambda: relaxcat.gumbel_softmax(xt, TAU),
                "softmax": lambda: torch.softmax(xt, -1),
                "F": lambda: F.gumbel_softmax(xt, TAU),
            }
        )
        row = Row(
            "torch call overhead",
            "1x10",
            "torch.softmax",
            t["ours"],
            t["softmax"],
            unit="us",
            target="<= 15 us above softmax",
        )
        row.extra = {"overhead_us": t["ours"] - t["softmax"], "F_us": t["F"]}
        row.met = row.extra["overhead_us"] <= 15
        rows.append(row)
    return rows


MEMORY_CHILD = r"""
import json, sys
import numpy as np
lib, which, hard = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
shape = (4096, 1024)
import relaxcat


def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(key)


if lib == "torch":
    import torch, torch.nn.functional as F
    x = torch.randn(*shape)
    f = (lambda v: relaxcat.gumbel_softmax(v, 0.5, hard=hard)) if which == "ours" else \
        (lambda v: F.gumbel_softmax(v, 0.5, hard=hard))
    nbytes = x.numel() * 4
else:
    sys.path.insert(0, sys.argv[4])
    from cpu import numpy_floor
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    g = np.random.default_rng(0)
    f = (lambda v: relaxcat.gumbel_softmax(v, 0.5, hard=hard, rng=g)) if which == "ours" else \
        (lambda v: numpy_floor(v, 0.5, g, hard))
    nbytes = x.nbytes
f(x)  # warm-up at full size: thread pools, caches, lazy imports
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak-RSS counter (VmHWM)
    fh.write("5")
before = status("VmRSS")
y = f(x)
peak = status("VmHWM")
print(json.dumps({"ratio": (peak - before) / nbytes}))
"""


def memory_rows() -> list[Row]:
    rows = []
    here = os.path.dirname(os.path.abspath(__file__))
    libs = ["numpy"] + (["torch"] if importlib.util.find_spec("torch") else [])
    for lib in libs:
        for hard in (False, True):
            res = {}
            for which in ("ours", "theirs"):
                out = subprocess.run(
                    [sys.executable, "-c", MEMORY_CHILD, lib, which, "1" if hard else "0", here],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                res[which] = json.loads(out.stdout.strip().splitlines()[-1])["ratio"]
            anchor = "F.gumbel_softmax" if lib == "torch" else "hand-written NumPy floor"
            row = Row(
                f"{lib} {'hard' if hard else 'soft'} forward peak memory",
                "4096x1024",
                anchor,
                res["ours"],
                res["theirs"],
                unit="x logits",
                target="<= 3x logits",
            )
            row.met = row.ours <= 3.0
            rows.append(row)
    return rows


START_LOAD = os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = [f"numpy {np.__version__}"]
    for name in ("torch", "jax"):
        if importlib.util.find_spec(name):
            versions.append(f"{name} {importlib.import_module(name).__version__}")
    # What moves the figures on a shared machine: its load, and whether torch's OpenMP
    # workers spin between operations (see benchmarks/torch_openmp_wait.py).
    # The load is read when the run starts (the benchmark itself adds about 1 to it).
    extra = [f"load average {START_LOAD:.2f} at the start"] if START_LOAD is not None else []
    if "OMP_WAIT_POLICY" in os.environ:
        extra.append(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
        + ", ".join(versions + extra)
    )


def fmt_row(r: Row) -> list[str]:
    if r.unit == "ms":
        values = [f"{r.ours:.2f} ms", f"{r.theirs:.2f} ms", f"{r.ratio:.2f}x"]
    elif r.unit == "us":
        values = [f"{r.ours:.1f} us", f"{r.theirs:.1f} us", f"+{r.extra['overhead_us']:.1f} us"]
    elif r.unit == "us/call":
        values = [f"{r.ours:.1f} us", f"{r.theirs:.1f} us", f"{r.ratio:.2f}x"]
    else:
        values = [f"{r.ours:.2f}x", f"{r.theirs:.2f}x", "-"]
    met = "" if r.met is None else ("yes" if r.met else "**no**")
    return [r.name, r.shape, r.anchor, *values, r.target, met]


HEADER = ["row", "shape", "anchor", "relaxcat", "anchor time", "ratio", "target", "met"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=31, help="timed repetitions per candidate")
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    parser.add_argument(
        "--only",
        choices=[
            "torch",
            "small",
            "numpy",
            "jax",
            "jax_first",
            "overhead",
            "memory",
            "philox",
            "philox_dask",
        ],
        action="append",
        help="run only these groups",
    )
    args = parser.parse_args(argv)
    groups = args.only or [
        "torch",
        "small",
        "numpy",
        "jax",
        "jax_first",
        "overhead",
        "memory",
        "philox",
        "philox_dask",
    ]
    rows: list[Row] = []
    if "torch" in groups and importlib.util.find_spec("torch"):
        rows += torch_rows(args.reps)
    if "small" in groups and importlib.util.find_spec("torch"):
        rows += small_torch_rows()
    if "numpy" in groups:
        rows += numpy_rows(args.reps)
    if "jax" in groups and importlib.util.find_spec("jax"):
        rows += jax_rows(args.reps)
    if "jax_first" in groups and importlib.util.find_spec("jax"):
        rows += jax_first_call_rows()
    if "overhead" in groups:
        rows += overhead_rows()
    if "memory" in groups:
        rows += memory_rows()
    if "philox" in groups:
        rows += philox_rows(args.reps)
    if "philox_dask" in groups and importlib.util.find_spec("dask"):
        rows += philox_dask_rows()

    notes = []
    for r in rows:
        if "floor_us" in r.extra:
            notes.append(f"NumPy 1x10: the hand-written floor takes {r.extra['floor_us']:.1f} us")
        if "F_us" in r.extra:
            notes.append(f"torch 1x10: F.gumbel_softmax takes {r.extra['F_us']:.1f} us")
    table = [HEADER, *[fmt_row(r) for r in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    print(f"\nmachine: {machine()}")
    for note in notes:
        print(note)
    print(
        "ratio = anchor time / relaxcat time (>= 1: relaxcat faster); memory: peak growth "
        "during one forward call / logits bytes; overhead: relaxcat minus softmax per call"
    )
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("| " + " | ".join(HEADER) + " |\n")
            fh.write("|" + "---|" * len(HEADER) + "\n")
            for line in table[1:]:
                fh.write("| " + " | ".join(line) + " |\n")
            fh.write(f"\nMachine: {machine()}.\n")
            for note in notes:
                fh.write(f"{note}.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
