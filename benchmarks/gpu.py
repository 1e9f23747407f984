"""GPU benchmark: the fused CuPy kernel, the torch CUDA path and JAX, against the anchors.

Run by ``nox -s gpu`` on a machine with an NVIDIA GPU, CuPy, CUDA torch and CUDA JAX. Each
row times relaxcat and its anchor alternately on the same input, with the device
synchronised around every timed batch, and reports medians and ratios. Effective bandwidth
counts 8 bytes per float32 element (read the logits, write the sample) and is compared with
a device-to-device copy of the same array measured in the same run (8 bytes per element).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with torch/CuPy

import numpy as np

import relaxcat

SHAPES = [(16384, 4096), (256, 131072)]
TAU = 0.5


def sync() -> None:
    import cupy

    cupy.cuda.runtime.deviceSynchronize()


def timed(fns: dict[str, Callable[[], Any]], inner: int = 10, reps: int = 9) -> dict[str, float]:
    """Median seconds per call; batches of ``inner`` calls, candidates interleaved."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    sync()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync()
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            out[k].append((time.perf_counter() - start) / inner)
    return {k: statistics.median(v) for k, v in out.items()}


def rows_for(shape: tuple[int, int]) -> list[list[str]]:
    import cupy
    import torch
    import torch.nn.functional as F

    n = shape[0] * shape[1]
    label = f"{shape[0]}x{shape[1]}"
    x = cupy.random.default_rng(0).standard_normal(shape, dtype=cupy.float32)
    dst = cupy.empty_like(x)
    xt = torch.randn(*shape, device="cuda")
    xg = xt.clone().requires_grad_(True)
    w = torch.randn(*shape, device="cuda")
    rows = []

    t = timed(
        {
            "copy": lambda: cupy.copyto(dst, x),
            "soft": lambda: relaxcat.gumbel_softmax(x, TAU),
            "hard": lambda: relaxcat.gumbel_softmax(x, TAU, hard=True),
            "torch_F": lambda: F.gumbel_softmax(xt, TAU),
        }
    )
    copy_bw = 8 * n / t["copy"]
    for kind in ("soft", "hard"):
        bw = 8 * n / t[kind]
        rows.append(
            [
                f"CuPy fused {kind} forward: effective bandwidth",
                label,
                f"{bw / 1e12:.2f} TB/s",
                f"copy {copy_bw / 1e12:.2f} TB/s",
                f"{bw / copy_bw:.0%}",
                ">= 70% of copy" if kind == "soft" else "",
                ("yes" if bw / copy_bw >= 0.7 else "**no**") if kind == "soft" else "",
            ]
        )
    ratio = t["torch_F"] / t["soft"]
    rows.append(
        [
            "CuPy fused soft forward vs torch F.gumbel_softmax",
            label,
            f"{t['soft'] * 1e3:.3f} ms",
            f"{t['torch_F'] * 1e3:.3f} ms",
            f"{ratio:.2f}x",
            ">= 3x",
            "yes" if ratio >= 3 else "**no**",
        ]
    )

    def fwd_bwd(f: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            f().backward(w)
            xg.grad = None

        return run

    t = timed(
        {
            "ours": fwd_bwd(lambda: relaxcat.gumbel_softmax(xg, TAU, hard=True)),
            "theirs": fwd_bwd(lambda: F.gumbel_softmax(xg, TAU, hard=True)),
            "ours_soft": lambda: relaxcat.gumbel_softmax(xt, TAU),
            "theirs_soft": lambda: F.gumbel_softmax(xt, TAU),
        }
    )
    ratio = t["theirs"] / t["ours"]
    rows.append(
        [
            "torch CUDA hard forward+backward vs F.gumbel_softmax",
            label,
            f"{t['ours'] * 1e3:.3f} ms",
            f"{t['theirs'] * 1e3:.3f} ms",
            f"{ratio:.2f}x",
            ">= 2x",
            "yes" if ratio >= 2 else "**no**",
        ]
    )
    ratio = t["theirs_soft"] / t["ours_soft"]
    rows.append(
        [
            "torch CUDA soft forward vs F.gumbel_softmax",
            label,
            f"{t['ours_soft'] * 1e3:.3f} ms",
            f"{t['theirs_soft'] * 1e3:.3f} ms",
            f"{ratio:.2f}x",
            "",
            "",
        ]
    )

    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return rows
    xj = jnp.asarray(np.asarray(x.get()))
    key = jax.random.key(0)
    ours = jax.jit(lambda v, k: relaxcat.gumbel_softmax(v, TAU, rng=k))
    hand = jax.jit(lambda v, k: jax.nn.softmax((v + jax.random.gumbel(k, v.shape, v.dtype)) / TAU))
    t = timed(
        {
            "ours": lambda: ours(xj, key).block_until_ready(),
            "hand": lambda: hand(xj, key).block_until_ready(),
        }
    )
    ratio = t["hand"] / t["ours"]
    rows.append(
        [
            "JAX GPU jit soft vs hand-written jit",
            label,
            f"{t['ours'] * 1e3:.3f} ms",
            f"{t['hand'] * 1e3:.3f} ms",
            f"{ratio:.2f}x",
            "",
            "",
        ]
    )
    return rows


HEADER = ["row", "shape", "relaxcat", "anchor", "ratio", "target", "met"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    import cupy
    import torch

    props = cupy.cuda.runtime.getDeviceProperties(0)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    rows: list[list[str]] = []
    for shape in SHAPES:
        rows += rows_for(shape)
    table = [HEADER, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    for r in table:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths, strict=True)))
    about = (
        f"{gpu}, {datetime.date.today().isoformat()}, CuPy {cupy.__version__}, "
        f"torch {torch.__version__}, float32, tau={TAU}"
    )
    print(f"\n{about}")
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER) + "\n")
            for r in rows:
                fh.write("| " + " | ".join(r) + " |\n")
            fh.write(f"\n{about}.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
