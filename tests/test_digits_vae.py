"""``examples/digits_vae.py`` trains with every estimator on torch and JAX (a few steps)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the digits example needs scikit-learn")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits_vae.py"

pytestmark = pytest.mark.backends("torch", "jax")


@pytest.fixture(scope="module")
def vae() -> ModuleType:
    spec = importlib.util.spec_from_file_location("digits_vae", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["digits_vae"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def small_config(vae: ModuleType, **changes: object) -> object:
    base = dict(steps=40, batch=32, lr=3e-3, eval_every=20, eval_samples=2, final_samples=4)
    return dataclasses.replace(vae.Config(), **(base | changes))


def test_data_is_binary_and_split(vae):
    train, test = vae.load_digits_binarised(vae.Config())
    assert train.shape == (1438, 64) and test.shape == (359, 64)
    assert set(np.unique(train)) == {0.0, 1.0}
    again = vae.load_digits_binarised(vae.Config())
    np.testing.assert_array_equal(again[1], test)  # a fixed split


@pytest.mark.parametrize("estimator", ["gs", "st", "reinmax", "gumbel_rao", "reinforce"])
def test_every_estimator_trains(vae, bk, estimator):
    config = small_config(vae)
    rt = vae.make_runtime(bk.name)
    data = vae.load_digits_binarised(config)
    x_test = rt.asarray(data[1])
    start = {k: rt.asarray(v) for k, v in vae.init_params(config, 0).items()}
    evaluate = rt.evaluator(config.final_samples, config)
    before = float(evaluate(start, x_test, rt.rng(7)))

    run = vae.train(rt, estimator, 0, config, data)

    assert run["estimator"] == estimator
    assert run["curve"]["step"] == [20, 40]
    values = [run["test_neg_elbo"], *run["curve"]["train_neg_elbo"], *run["curve"]["test_neg_elbo"]]
    assert all(math.isfinite(v) for v in values)
    # 40 steps of Adam from a random decoder: every estimator lowers the held-out -ELBO
    # (about 46 nats at the start) by several nats
    assert before > 40
    assert run["test_neg_elbo"] < before - 3, (before, run["test_neg_elbo"])
    if estimator == "gs":
        assert math.isfinite(run["test_relaxed_objective"])


def test_same_start_and_batches_for_every_estimator(vae, bk):
    """A fair comparison: for a seed, the estimators differ only in their gradient."""
    config = small_config(vae, steps=1, lr=0.0)
    rt = vae.make_runtime(bk.name)
    data = vae.load_digits_binarised(config)
    first = {e: vae.train(rt, e, 3, config, data) for e in ("st", "reinmax")}
    # with lr = 0 nothing moves, and ST and ReinMax share their one-hot sample and so
    # the -ELBO of the first batch
    assert first["st"]["curve"]["train_neg_elbo"] == pytest.approx(
        first["reinmax"]["curve"]["train_neg_elbo"], rel=1e-6
    )


def test_heldout_elbo_is_the_discrete_models(vae, bk):
    """The reported number uses one-hot samples: the decoder's -log p(x|z) plus the KL."""
    config = small_config(vae)
    rt = vae.make_runtime(bk.name)
    params = {k: rt.asarray(v) for k, v in vae.init_params(config, 1).items()}
    x = rt.asarray(vae.load_digits_binarised(config)[1][:5])
    xp = rt.xp
    # an encoder whose q(z | x) puts all but 1e-21 of its mass on one code, the same for
    # every digit: category (3 * j) % 10 for latent variable j
    codes = [(3 * j) % config.categories for j in range(config.latents)]
    mode = np.eye(config.categories, dtype=np.float32)[codes]
    bias = (50.0 * mode).reshape(-1)
    sharp = {**params, "enc2.w": params["enc2.w"] * 0, "enc2.b": rt.asarray(bias)}
    got = float(vae.heldout_negative_elbo(rt, sharp, x, rt.rng(0), 3, config))
    logits = np.broadcast_to(50.0 * mode, (5, *mode.shape)).astype(np.float64)
    mode = np.array(np.broadcast_to(mode, (5, *mode.shape)))
    nll = bk.to_numpy(vae.reconstruction_nll(xp, params, rt.asarray(mode), x))
    log_q = logits - logits.max(-1, keepdims=True)
    log_q = log_q - np.log(np.exp(log_q).sum(-1, keepdims=True))
    kl = (np.exp(log_q) * (log_q + np.log(config.categories))).sum((-2, -1))
    assert got == pytest.approx(float(np.mean(nll + kl)), rel=1e-4)


def test_command_line_writes_results(bk, tmp_path):
    out = tmp_path / "runs.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    args = ["--backend", bk.name, "--steps", "30", "--seeds", "0", "--estimators", "st"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ST-GS" in proc.stdout
    result = json.loads(out.read_text())
    assert result["backend"] == bk.name
    assert result["config"]["steps"] == 30
    assert [r["estimator"] for r in result["runs"]] == ["st"]
    assert math.isfinite(result["runs"][0]["test_neg_elbo"])


def test_kl_term_is_relaxcats_categorical_kl(vae, bk):
    import relaxcat

    rt = vae.make_runtime(bk.name)
    logits = np.random.default_rng(0).normal(size=(4, 8, 10)).astype(np.float32) * 3
    x = rt.asarray(logits)
    expected = relaxcat.categorical_kl(x, rt.xp.zeros_like(x))
    got = vae.kl_to_uniform(rt.xp, x)
    np.testing.assert_allclose(
        bk.to_numpy(got), bk.to_numpy(expected).sum(-1), rtol=1e-5, atol=1e-5
    )
