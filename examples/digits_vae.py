"""A categorical VAE on scikit-learn's digits, trained with five gradient estimators.

Jang et al. (2017) trained a VAE with categorical latent variables on binarised MNIST and
found the Gumbel-softmax (GS) better than the straight-through Gumbel-softmax (ST-GS), and
both better than the score-function estimator. This example repeats that comparison on
the 8x8 digits that ship with scikit-learn (no download), binarised, and adds ReinMax and
Gumbel-Rao. Every estimator trains the same model from the same initial parameters, on
the same batches, for the same number of steps; the script then reports each one's
negative ELBO on held-out digits.

The model is written once, with array-API calls, and runs on PyTorch and on JAX
(``--backend``). Every sample is drawn by relaxcat; what differs per library is only how a
gradient is taken (``torch.autograd.grad`` or ``jax.value_and_grad`` under ``jax.jit``)
and how random numbers are passed (a ``torch.Generator`` or a JAX key), in ``Runtime``.

Run ``python examples/digits_vae.py --quick`` (about a minute on two CPU cores), or
``python examples/digits_vae.py --backend jax --json results.json`` for the full run that
``docs/vae.md`` reports. Needs relaxcat, scikit-learn, and torch or jax.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import relaxcat

ESTIMATORS = ("gs", "st", "reinmax", "gumbel_rao", "reinforce")
LABELS = {
    "gs": "GS (soft)",
    "st": "ST-GS",
    "reinmax": "ReinMax",
    "gumbel_rao": "Gumbel-Rao",
    "reinforce": "score function",
}

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run, so that the JSON output can be reproduced."""

    latents: int = 8  # categorical latent variables
    categories: int = 10  # categories per latent variable
    hidden: int = 128  # units in the hidden layer of the encoder and of the decoder
    batch: int = 100
    steps: int = 10_000
    lr: float = 1e-3
    tau0: float = 1.0  # the annealed temperature: max(tau_min, tau0 * exp(-rate * step))
    tau_min: float = 0.5
    anneal_rate: float = 3e-4
    reinmax_tau: float = 1.0  # ReinMax's authors recommend tau >= 1; it is not annealed
    rao_samples: int = 10  # conditional draws averaged by Gumbel-Rao
    eval_every: int = 500
    eval_samples: int = 10  # latent samples per test digit during training
    final_samples: int = 100  # ... for the reported number (a multiple of eval_samples)
    test_fraction: float = 0.2
    data_seed: int = 0  # the train/test split


# -- data --------------------------------------------------------------------------------


def load_digits_binarised(config: Config) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as 64 binary pixels (intensity >= 8 of 16), split train/test."""
    from sklearn.datasets import load_digits

    x = (load_digits().data >= 8).astype(np.float32)
    order = np.random.default_rng(config.data_seed).permutation(len(x))
    n_test = round(config.test_fraction * len(x))
    return x[order[n_test:]], x[order[:n_test]]


# -- the model, written once on the array-API namespace ----------------------------------


def init_params(config: Config, seed: int) -> dict[str, np.ndarray]:
    """Initial weights (NumPy, float32): the same on every backend for the same seed."""
    rng = np.random.default_rng(seed)
    latent = config.latents * config.categories
    shapes = {"enc1": (64, config.hidden), "enc2": (config.hidden, latent)}
    shapes |= {"dec1": (latent, config.hidden), "dec2": (config.hidden, 64)}
    params = {}
    for name, (fan_in, fan_out) in shapes.items():
        params[f"{name}.w"] = (rng.normal(size=(fan_in, fan_out)) / math.sqrt(fan_in)).astype(
            np.float32
        )
        params[f"{name}.b"] = np.zeros(fan_out, dtype=np.float32)
    return params


def encode(xp: Any, params: Params, x: Any, config: Config) -> Any:
    """Logits of q(z | x), shape (batch, latents, categories)."""
    h = xp.tanh(x @ params["enc1.w"] + params["enc1.b"])
    logits = h @ params["enc2.w"] + params["enc2.b"]
    return xp.reshape(logits, (x.shape[0], config.latents, config.categories))


def reconstruction_nll(xp: Any, params: Params, z: Any, x: Any) -> Any:
    """-log p(x | z) per example, Bernoulli pixels: sum of softplus(l) - x * l."""
    z = xp.reshape(z, (z.shape[0], z.shape[1] * z.shape[2]))
    h = xp.tanh(z @ params["dec1.w"] + params["dec1.b"])
    pixel_logits = h @ params["dec2.w"] + params["dec2.b"]
    softplus = xp.logaddexp(xp.zeros_like(pixel_logits), pixel_logits)
    return xp.sum(softplus - x * pixel_logits, axis=-1)


def kl_to_uniform(xp: Any, logits: Any) -> Any:
    """KL(q(z | x) || uniform prior) per example, summed over the latent variables.

    This is ``relaxcat.categorical_kl(logits, zeros)`` summed over the latent variables
    (a test holds the two equal), written out as the runs in ``docs/vae.md`` computed it.
    """
    log_q = log_softmax(xp, logits)
    kl = xp.sum(xp.exp(log_q) * log_q, axis=-1) + math.log(logits.shape[-1])
    return xp.sum(kl, axis=-1)


def log_softmax(xp: Any, logits: Any) -> Any:
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def training_loss(
    rt: Runtime, params: Params, x: Any, tau: Any, rng: Any, estimator: str, config: Config
) -> tuple[Any, Any]:
    """(the loss to differentiate, the batch's mean negative ELBO) for one estimator.

    For the pathwise estimators the loss *is* the negative ELBO of the sample (relaxed for
    GS, one-hot for the others) and relaxcat supplies the gradient through the sample. The
    score-function estimator samples a one-hot without a gradient and adds the surrogate
    ``(signal - baseline) * log q(z | x)``, where the signal is the reconstruction term and
    the baseline, for each digit, is the mean signal of the *other* digits in the batch
    (leave-one-out: it does not depend on the digit's own sample, so the estimator stays
    unbiased). The KL term is analytic in every case, with its exact gradient.
    """
    xp = rt.xp
    logits = encode(xp, params, x, config)
    kl = kl_to_uniform(xp, logits)
    if estimator == "gs":
        z = relaxcat.gumbel_softmax(logits, tau, rng=rng)
    elif estimator == "st":
        z = relaxcat.gumbel_softmax(logits, tau, hard=True, rng=rng)
    elif estimator == "reinmax":
        z = relaxcat.gumbel_softmax(
            logits, config.reinmax_tau, hard=True, estimator="reinmax", rng=rng
        )
    elif estimator == "gumbel_rao":
        z = relaxcat.gumbel_softmax(
            logits, tau, hard=True, estimator="gumbel_rao", samples=config.rao_samples, rng=rng
        )
    elif estimator == "reinforce":
        z = relaxcat.gumbel_softmax(rt.stop_gradient(logits), hard=True, rng=rng)
    else:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {ESTIMATORS}")
    nll = reconstruction_nll(xp, params, z, x)
    neg_elbo = xp.mean(nll + kl)
    if estimator != "reinforce":
        return neg_elbo, neg_elbo
    signal = rt.stop_gradient(nll)
    n = signal.shape[0]
    baseline = (xp.sum(signal) - signal) / (n - 1)
    log_q = xp.sum(z * log_softmax(xp, logits), axis=(-2, -1))
    surrogate = neg_elbo + xp.mean((signal - baseline) * log_q)
    return surrogate, neg_elbo


def heldout_negative_elbo(
    rt: Runtime, params: Params, x: Any, rng: Any, samples: int, config: Config, tau: Any = None
) -> Any:
    """Monte Carlo estimate of the mean -ELBO of the *discrete* model on ``x``.

    ``samples`` exact categorical samples z ~ q(z | x) per digit (relaxcat's one-hot
    Gumbel-max sample) and the analytic KL: the same quantity for every estimator, whatever
    surrogate it trained on. With ``tau``, the samples are relaxed ones at that temperature
    instead: the objective that GS trains on, which is not an ELBO of the discrete model.
    """
    xp = rt.xp
    logits = encode(xp, params, x, config)
    kl = kl_to_uniform(xp, logits)
    tiled = xp.concat([logits] * samples, axis=0)
    if tau is None:
        z = relaxcat.gumbel_softmax(tiled, hard=True, rng=rng)
    else:
        z = relaxcat.gumbel_softmax(tiled, tau, rng=rng)
    nll = reconstruction_nll(xp, params, z, xp.concat([x] * samples, axis=0))
    return xp.mean(nll) + xp.mean(kl)


def adam(
    xp: Any, params: Params, grads: Params, state: dict[str, Any], lr: float
) -> tuple[Params, dict[str, Any]]:
    """One Adam step (Kingma & Ba 2015, default betas), written on the array namespace."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = state["t"] + 1
    m = {k: b1 * state["m"][k] + (1 - b1) * g for k, g in grads.items()}
    v = {k: b2 * state["v"][k] + (1 - b2) * g * g for k, g in grads.items()}
    scale = lr * (1 - b2**t) ** 0.5 / (1 - b1**t)
    new = {k: p - scale * m[k] / (xp.sqrt(v[k]) + eps) for k, p in params.items()}
    return new, {"t": t, "m": m, "v": v}


# -- what differs per library: gradients and random numbers ------------------------------


class Runtime:
    """The per-library part: arrays, ``stop_gradient``, gradients, random numbers."""

    name: str
    xp: Any

    def asarray(self, a: np.ndarray) -> Any:
        raise NotImplementedError

    def stop_gradient(self, a: Any) -> Any:
        raise NotImplementedError

    def train_step(self, estimator: str, config: Config) -> Callable[..., tuple[Any, Any, Any]]:
        """``step(params, adam_state, x, tau, rng) -> (params, adam_state, -ELBO)``."""
        raise NotImplementedError

    def evaluator(self, samples: int, config: Config) -> Callable[..., Any]:
        """``evaluate(params, x, rng, tau=None)``: :func:`heldout_negative_elbo`."""
        raise NotImplementedError

    def rng(self, seed: int) -> Any:
        """The run's random state: a generator, or a JAX key."""
        raise NotImplementedError

    def rng_at(self, state: Any, step: int) -> Any:
        """What to pass as ``rng=`` at ``step``."""
        raise NotImplementedError


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self) -> None:
        import torch
        from array_api_compat import array_namespace

        self.torch = torch
        self.xp = array_namespace(torch.zeros(1))

    def asarray(self, a: np.ndarray) -> Any:
        return self.torch.as_tensor(a)

    def stop_gradient(self, a: Any) -> Any:
        return a.detach()

    def train_step(self, estimator: str, config: Config) -> Callable[..., tuple[Any, Any, Any]]:
        torch = self.torch

        def step(params: Params, state: dict[str, Any], x: Any, tau: Any, rng: Any) -> Any:
            params = {k: p.detach().requires_grad_() for k, p in params.items()}
            loss, neg_elbo = training_loss(self, params, x, tau, rng, estimator, config)
            grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
            with torch.no_grad():
                params, state = adam(self.xp, params, grads, state, config.lr)
            return params, state, neg_elbo.detach()

        return step

    def evaluator(self, samples: int, config: Config) -> Callable[..., Any]:
        def evaluate(params: Params, x: Any, rng: Any, tau: Any = None) -> Any:
            with self.torch.no_grad():
                return heldout_negative_elbo(self, params, x, rng, samples, config, tau)

        return evaluate

    def rng(self, seed: int) -> Any:
        return self.torch.Generator().manual_seed(seed)

    def rng_at(self, state: Any, step: int) -> Any:
        return state  # a torch.Generator advances by itself


class JaxRuntime(Runtime):
    name = "jax"

    def __init__(self) -> None:
        import jax

        self.jax = jax
        self.xp = jax.numpy
        self._evaluators: dict[tuple[int, Config], Any] = {}

    def asarray(self, a: np.ndarray) -> Any:
        return self.xp.asarray(a)

    def stop_gradient(self, a: Any) -> Any:
        return self.jax.lax.stop_gradient(a)

    def train_step(self, estimator: str, config: Config) -> Callable[..., tuple[Any, Any, Any]]:
        jax = self.jax

        def step(params: Params, state: dict[str, Any], x: Any, tau: Any, key: Any) -> Any:
            def loss(p: Params) -> tuple[Any, Any]:
                return training_loss(self, p, x, tau, key, estimator, config)

            (_, neg_elbo), grads = jax.value_and_grad(loss, has_aux=True)(params)
            params, state = adam(self.xp, params, grads, state, config.lr)
            return params, state, neg_elbo

        return jax.jit(step)

    def evaluator(self, samples: int, config: Config) -> Callable[..., Any]:
        # One compiled evaluator for every estimator's runs.
        if (samples, config) not in self._evaluators:
            self._evaluators[samples, config] = self.jax.jit(
                lambda p, x, key, tau=None: heldout_negative_elbo(
                    self, p, x, key, samples, config, tau
                )
            )
        return self._evaluators[samples, config]

    def rng(self, seed: int) -> Any:
        # The "rbg" generator: on a CPU, XLA compiles the default threefry generator's
        # bit mixing slowly (tens of seconds for the Gumbel-Rao step here, against about
        # one for "rbg"). relaxcat takes any typed key.
        return self.jax.random.key(seed, impl="rbg")

    def rng_at(self, state: Any, step: int) -> Any:
        return self.jax.random.fold_in(state, step)


def make_runtime(name: str) -> Runtime:
    if name == "torch":
        return TorchRuntime()
    if name == "jax":
        return JaxRuntime()
    raise ValueError(f"unknown backend {name!r}; choose torch or jax")


# -- training ----------------------------------------------------------------------------


def train(
    rt: Runtime,
    estimator: str,
    seed: int,
    config: Config,
    data: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Train one model; return its training curve and its final test -ELBO.

    For a given seed every estimator starts from the same parameters and sees the same
    batches in the same order. The estimators' random numbers come from the library's
    generator (torch) or key (JAX) seeded with ``seed``.
    """
    x_train, x_test = data
    params = {k: rt.asarray(v) for k, v in init_params(config, seed).items()}
    zeros = {k: rt.xp.zeros_like(v) for k, v in params.items()}
    state: dict[str, Any] = {"t": rt.xp.asarray(0), "m": zeros, "v": dict(zeros)}
    step_fn = rt.train_step(estimator, config)
    evaluate = rt.evaluator(config.eval_samples, config)
    x_test_arr = rt.asarray(x_test)
    batches = np.random.default_rng([seed, 1])
    sample_rng = rt.rng(seed)
    eval_rng = rt.rng(10_000 + seed)
    curve: list[tuple[int, float, float]] = []
    running: list[float] = []
    order = batches.permutation(len(x_train))
    position = 0
    start = time.perf_counter()
    for step in range(config.steps):
        if position + config.batch > len(order):
            order, position = batches.permutation(len(x_train)), 0
        x = rt.asarray(x_train[order[position : position + config.batch]])
        position += config.batch
        tau = relaxcat.anneal_tau(
            step, tau0=config.tau0, rate=config.anneal_rate, tau_min=config.tau_min
        )
        params, state, neg_elbo = step_fn(
            params, state, x, rt.xp.asarray(tau, dtype=rt.xp.float32), rt.rng_at(sample_rng, step)
        )
        running.append(float(neg_elbo))
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            test = float(evaluate(params, x_test_arr, rt.rng_at(eval_rng, step)))
            curve.append((step + 1, float(np.mean(running)), test))
            running = []
    seconds = time.perf_counter() - start
    final_rng = rt.rng(20_000 + seed)
    repeats = max(1, config.final_samples // config.eval_samples)
    final = float(
        np.mean([evaluate(params, x_test_arr, rt.rng_at(final_rng, i)) for i in range(repeats)])
    )
    result: dict[str, Any] = {"estimator": estimator, "seed": seed, "test_neg_elbo": final}
    if estimator == "gs":  # what GS trained on: relaxed samples at the final temperature
        tau = rt.xp.asarray(final_tau(config), dtype=rt.xp.float32)
        relaxed = [
            evaluate(params, x_test_arr, rt.rng_at(final_rng, i), tau) for i in range(repeats)
        ]
        result["test_relaxed_objective"] = float(np.mean(relaxed))
    return result | {
        "seconds": seconds,
        "curve": {
            "step": [c[0] for c in curve],
            "train_neg_elbo": [c[1] for c in curve],
            "test_neg_elbo": [c[2] for c in curve],
        },
    }


def final_tau(config: Config) -> float:
    """The temperature of the last training step."""
    return relaxcat.anneal_tau(
        config.steps - 1, tau0=config.tau0, rate=config.anneal_rate, tau_min=config.tau_min
    )


def at_step(run: dict[str, Any], step: int) -> float:
    """The test -ELBO recorded at ``step`` (the final, larger estimate at the last step)."""
    curve = run["curve"]
    if step == curve["step"][-1]:
        return float(run["test_neg_elbo"])
    return float(curve["test_neg_elbo"][curve["step"].index(step)])


def checkpoints(config: Config) -> list[int]:
    """The steps that the summary reports: 1000 and 3000 where recorded, and the last."""
    early = [s for s in (1000, 3000) if s < config.steps and s % config.eval_every == 0]
    return [*early, config.steps]


def summarise(runs: list[dict[str, Any]], estimators: tuple[str, ...], config: Config) -> list[str]:
    """A text table of the test -ELBO: mean (and standard deviation over seeds) per step."""
    steps = checkpoints(config)
    lines = [f"{'test -ELBO, nats':<16}" + "".join(f"{f'step {s}':>17}" for s in steps)]
    for est in estimators:
        mine = [r for r in runs if r["estimator"] == est]
        cells = []
        for s in steps:
            values = [at_step(r, s) for r in mine]
            spread = f" +- {np.std(values, ddof=1):.2f}" if len(values) > 1 else ""
            cells.append(f"{f'{np.mean(values):.2f}{spread}':>17}")
        lines.append(f"{LABELS[est]:<16}" + "".join(cells))
    relaxed = [r["test_relaxed_objective"] for r in runs if "test_relaxed_objective" in r]
    if relaxed:
        lines.append(
            f"(GS's own relaxed objective on the test digits at tau = {final_tau(config):.2g}: "
            f"{np.mean(relaxed):.2f}; not an ELBO of the discrete model)"
        )
    return lines


def environment(backend: str) -> dict[str, str]:
    import sklearn

    lib = sys.modules[backend]
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        backend: lib.__version__,
        "scikit-learn": sklearn.__version__,
        "relaxcat": relaxcat.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("torch", "jax"), default="torch")
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 1500 steps: about a minute on 2 CPU cores"
    )
    parser.add_argument("--steps", type=int, help="training steps per run (default 10000)")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2 3 4)")
    parser.add_argument(
        "--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS), metavar="EST"
    )
    parser.add_argument("--json", metavar="PATH", help="write every run's curve and result")
    args = parser.parse_args(argv)

    config = Config()
    seeds = [0, 1, 2, 3, 4]
    if args.quick:
        config = dataclasses.replace(config, steps=1500, eval_every=250)
        seeds = [0]
    if args.steps is not None:
        config = dataclasses.replace(config, steps=args.steps)
    if args.seeds is not None:
        seeds = args.seeds
    estimators = tuple(args.estimators)

    try:
        rt = make_runtime(args.backend)
        data = load_digits_binarised(config)
    except ImportError as exc:
        print(
            f"digits_vae.py --backend {args.backend} needs {exc.name}: "
            f"pip install scikit-learn {args.backend}",
            file=sys.stderr,
        )
        return 2
    if isinstance(rt, TorchRuntime):
        # The matrices are small: one thread per process is faster than two contending.
        rt.torch.set_num_threads(1)
    print(
        f"digits VAE on {args.backend}: {len(data[0])} training and {len(data[1])} test digits, "
        f"{config.latents} latent variables x {config.categories} categories, "
        f"{config.steps} steps of {config.batch}, seeds {seeds}"
    )
    started = time.perf_counter()
    runs = []
    for seed in seeds:
        for est in estimators:
            run = train(rt, est, seed, config, data)
            runs.append(run)
            print(
                f"  seed {seed} {LABELS[est]:<15} test -ELBO {run['test_neg_elbo']:7.2f} nats "
                f"({run['seconds']:.1f} s)",
                flush=True,
            )
    print()
    print("\n".join(summarise(runs, estimators, config)))
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f} s")
    if args.json:
        out = {
            "backend": args.backend,
            "command": " ".join(["python examples/digits_vae.py", *(argv or sys.argv[1:])]),
            "config": dataclasses.asdict(config),
            "seeds": seeds,
            "environment": environment(args.backend),
            "wall_seconds": total,
            "runs": runs,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
