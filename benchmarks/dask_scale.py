"""Dask benchmark: 200 million logits through ``gumbel_softmax(hard=True)`` on a LocalCluster.

Run with ``nox -s dask_bench`` (or ``python benchmarks/dask_scale.py`` where dask and
distributed are installed). For each number of workers (default 1, then 2; one thread
each, in their own processes) and each chunk size, a fresh ``distributed.LocalCluster``:

* makes the logits on the workers, lazily, from Dask's generator (``standard_normal``,
  float32), so no data travels from the client;
* draws the one-hot sample ``relaxcat.gumbel_softmax(x, 0.5, hard=True, rng=seed)``;
* reduces it to the count of each category (``y.sum(axis=0)``), the only thing sent back,
  and checks that the counts add up to the number of rows (one 1 per row).

Reported per configuration: the wall time of the compute (median over ``--repeats``), the
speed-up over one worker at the same chunk size, the CPU time the workers used (with other
work on the machine, wall time above CPU time per worker is time spent waiting for a core),
and each worker's peak resident memory (Linux ``VmHWM``, reset just before each compute)
next to the chunk size and the array size. ``--markdown FILE`` writes the table as Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import distributed
import numpy as np

import relaxcat

MB = 2**20
LOADS: list[float] = []  # the 1-minute load average after each timed run


def reset_peak() -> None:
    """Reset this process's peak resident set (``VmHWM``) to its current size."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def memory_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def category_counts(rows: int, cols: int, chunk_rows: int, seed: int) -> Any:
    """The lazy graph: logits made on the workers, the hard sample, counts per category."""
    logits = da.random.default_rng(seed).standard_normal(
        size=(rows, cols), dtype=np.float32, chunks=(chunk_rows, cols)
    )
    y = relaxcat.gumbel_softmax(logits, 0.5, hard=True, rng=seed + 1)
    assert y.chunks == logits.chunks
    return y.sum(axis=0, dtype=np.float64)


@dataclass
class Result:
    workers: int
    chunk_rows: int
    cols: int
    rows: int
    seconds: list[float]
    cpu_seconds: list[float]  # summed over the workers, per repeat
    build_seconds: float
    baseline: list[int]  # per worker, bytes, just before the compute
    peak: list[int]  # per worker, bytes, the highest VmHWM over the repeats

    @property
    def chunk_bytes(self) -> int:
        return self.chunk_rows * self.cols * 4

    @property
    def array_bytes(self) -> int:
        return self.rows * self.cols * 4

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def growth(self) -> int:
        """The largest rise of a worker's resident memory above its level before the call."""
        return max(p - b for p, b in zip(self.peak, self.baseline, strict=True))


def start_cluster(stack: contextlib.ExitStack, workers: int, memory_limit: str) -> Any:
    cluster = stack.enter_context(
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    )
    return stack.enter_context(distributed.Client(cluster, set_as_default=False))


def timed_compute(client: Any, graph: Any, rows: int) -> tuple[float, float, dict[str, Any]]:
    """Wall seconds, worker CPU seconds and per-worker memory of one compute of ``graph``."""
    client.run(reset_peak)
    before = client.run(memory_status)
    cpu_before = client.run(time.process_time)
    start = time.perf_counter()
    counts = client.compute(graph).result()
    seconds = time.perf_counter() - start
    cpu_after = client.run(time.process_time)
    after = client.run(memory_status)
    if counts.sum() != rows:
        raise AssertionError(f"not one category per row: {counts.sum()} != {rows}")
    cpu = sum(cpu_after[w] - cpu_before[w] for w in cpu_after)
    memory = {w: (before[w]["VmRSS"], after[w]["VmHWM"]) for w in after}
    return seconds, cpu, memory


def run(
    worker_counts: list[int], rows: int, cols: int, chunk_rows: int, repeats: int, limit: str
) -> list[Result]:
    """All worker counts at one chunk size; their runs alternate, so that work done by other
    processes on the machine falls on all of them alike."""
    results = {
        w: Result(w, chunk_rows, cols, rows, [], [], 0.0, [0] * w, [0] * w) for w in worker_counts
    }
    with contextlib.ExitStack() as stack:
        clients = {w: start_cluster(stack, w, limit) for w in worker_counts}
        for client in clients.values():  # warm-up: the workers import NumPy and Dask
            small = max(1, chunk_rows // 100)
            client.gather(client.compute(category_counts(4 * small, cols, small, 0)))
        for repeat in range(repeats):
            for w, client in clients.items():
                r = results[w]
                start = time.perf_counter()
                graph = category_counts(rows, cols, chunk_rows, seed=10 + repeat)
                r.build_seconds = time.perf_counter() - start
                seconds, cpu, memory = timed_compute(client, graph, rows)
                r.seconds.append(seconds)
                r.cpu_seconds.append(cpu)
                for i, name in enumerate(sorted(memory)):
                    baseline, peak = memory[name]
                    if peak > r.peak[i]:
                        r.peak[i], r.baseline[i] = peak, baseline
                LOADS.append(os.getloadavg()[0])
                print(
                    f"  workers={w} chunk={chunk_rows}x{cols} repeat {repeat}: {seconds:.2f} s, "
                    f"worker CPU {cpu:.2f} s, load {LOADS[-1]:.1f}",
                    flush=True,
                )
    return list(results.values())


def markdown(results: list[Result], args: argparse.Namespace) -> str:
    one = {r.chunk_rows: r.median for r in results if r.workers == 1}
    lines = [
        f"`python benchmarks/dask_scale.py {' '.join(sys.argv[1:])}`".replace(" `", "`"),
        "",
        f"{args.rows} x {args.cols} float32 logits ({args.rows * args.cols / 1e6:.0f} million, "
        f"{args.rows * args.cols * 4 / MB:.0f} MiB), made on the workers; "
        f"`gumbel_softmax(x, 0.5, hard=True, rng=seed)`; counts per category sent back. "
        f"LocalCluster, worker processes with one thread each, memory limit "
        f"{args.memory_limit}. {os.cpu_count()} CPU cores; the machine's 1-minute load average "
        f"ranged over {min(LOADS):.1f}-{max(LOADS):.1f} during the runs (above "
        f"{os.cpu_count()}: other processes competed for the cores). "
        f"Python {platform.python_version()}, NumPy {np.__version__}, Dask "
        f"{dask.__version__}, distributed {distributed.__version__}.",
        "",
        "| workers | chunk (rows x cols, MiB) | wall time, median of "
        f"{args.repeats} (s) | speed-up | worker CPU time, all workers (s) | peak RSS per "
        "worker (MiB) | rise during the call (MiB) | rise / chunk |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        peak = ", ".join(f"{p / MB:.0f}" for p in r.peak)
        lines.append(
            f"| {r.workers} | {r.chunk_rows} x {r.cols} ({r.chunk_bytes / MB:.0f}) | "
            f"{r.median:.2f} | {one[r.chunk_rows] / r.median:.2f} | "
            f"{statistics.median(r.cpu_seconds):.2f} | {peak} | "
            f"{r.growth / MB:.0f} | {r.growth / r.chunk_bytes:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=1000)
    parser.add_argument("--chunk-rows", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-limit", default="4GiB", help="per worker")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)
    # Two clusters run side by side: the second one's HTTP server takes another port.
    warnings.filterwarnings("ignore", message="Port .* is already in use", category=UserWarning)

    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores", flush=True)
    results = []
    for chunk_rows in args.chunk_rows:
        runs = run(args.workers, args.rows, args.cols, chunk_rows, args.repeats, args.memory_limit)
        results += runs
        for r in runs:
            workers = r.workers
            print(
                f"workers={workers} chunk={chunk_rows}x{args.cols}: "
                f"{', '.join(f'{s:.2f}' for s in r.seconds)} s, worker CPU "
                f"{', '.join(f'{s:.2f}' for s in r.cpu_seconds)} s (graph built in "
                f"{r.build_seconds * 1e3:.0f} ms); peak RSS per worker "
                f"{[round(p / MB) for p in r.peak]} MiB, rise {r.growth / MB:.0f} MiB",
                flush=True,
            )
    table = markdown(results, args)
    print()
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
