"""torch's OpenMP threads and relaxcat's block-fill threads on a CPU with few cores.

After each parallel torch operation, the OpenMP worker threads of torch's CPU wheels (GNU
libgomp) keep spinning for a few milliseconds before they sleep. relaxcat fills large CPU
draws in Python threads (``relaxcat/_backends/_torch_cpu.py``); on a 2-core machine a
spinning worker takes a core from them. ``OMP_WAIT_POLICY`` is read once, when libgomp
loads, so each policy runs in a fresh process:

    python benchmarks/torch_openmp_wait.py [--shape 4096x1024] [--reps 31]

Per policy, medians of ``--reps`` timed calls: the block fill alone (NumPy in the threads, no
torch operation between calls), the same fill right after a parallel ``torch.exp`` of the
same size (as in a training loop, where some torch operation always comes first), the
``torch.exp`` itself, the whole noise (the fill, then torch's ``log``: each call's fill
follows the previous call's ``log``), and relaxcat's soft sample against
``F.gumbel_softmax`` alternately in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, statistics, sys, time
import torch
import torch.nn.functional as F
import relaxcat
from relaxcat._backends import _torch_cpu

shape, reps = tuple(map(int, sys.argv[1].split("x"))), int(sys.argv[2])
x = torch.randn(*shape)
out = torch.empty_like(x)
fill = lambda: _torch_cpu._uniform_blocks(shape, torch.float32, 1)  # NumPy threads only
noise = lambda: _torch_cpu.exponential_blocks(shape, torch.float32, 1)  # + torch log
parallel_op = lambda: torch.exp(x, out=out)

def median_ms(f, before=None):
    times = []
    for _ in range(reps + 2):
        if before is not None:
            before()
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[2:])

result = {}
for _ in range(2):  # the second round is kept: both policies warmed up alike
    result = {
        "fill": median_ms(fill),
        "fill after torch.exp": median_ms(fill, parallel_op),
        "torch.exp": median_ms(parallel_op),
        "noise": median_ms(noise),
    }
    ours, theirs = [], []
    for _ in range(reps):
        for f, times in ((lambda: relaxcat.gumbel_softmax(x, 0.5), ours),
                         (lambda: F.gumbel_softmax(x, 0.5), theirs)):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
    result["relaxcat soft"] = 1e3 * statistics.median(ours)
    result["F.gumbel_softmax"] = 1e3 * statistics.median(theirs)
print(json.dumps(result))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="4096x1024")
    parser.add_argument("--reps", type=int, default=31)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the policies")
    args = parser.parse_args(argv)
    policies = {"unset (libgomp's default)": None, "OMP_WAIT_POLICY=PASSIVE": "PASSIVE"}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in policies}
    for _ in range(args.rounds):
        for name, policy in policies.items():
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if policy is not None:
                env["OMP_WAIT_POLICY"] = policy
            done = subprocess.run(
                [sys.executable, "-c", CHILD, args.shape, str(args.reps)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            rows[name].append(json.loads(done.stdout))
    print(f"shape {args.shape}, medians of {args.reps} calls (ms), one line per process")
    for name, results in rows.items():
        for r in results:
            ratio = r["F.gumbel_softmax"] / r["relaxcat soft"]
            print(
                f"{name:27s} fill {r['fill']:6.2f}  fill after torch.exp "
                f"{r['fill after torch.exp']:6.2f}  torch.exp {r['torch.exp']:5.2f}  "
                f"noise {r['noise']:6.2f}  "
                f"relaxcat soft {r['relaxcat soft']:6.2f}  F.gumbel_softmax "
                f"{r['F.gumbel_softmax']:7.2f}  ratio {ratio:.2f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
