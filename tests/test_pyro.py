"""relaxcat.torch's distributions inside Pyro: pyro.sample, plates, to_event, mask, SVI.

The cases of Pyro's ``test_relaxed_straight_through`` (shapes and gradients of the
straight-through classes, their log-density at the soft sample, SVI usage), run through
``pyro.sample`` in float32 and float64, and an SVI model with a relaxed categorical and a
relaxed Bernoulli latent at temperature 0.1 in float32 that recovers known parameters.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch", reason="relaxcat.torch needs torch, which is not installed")
pyro = pytest.importorskip("pyro", reason="pyro-ppl is not installed (pip install relaxcat[pyro])")
import pyro.distributions as pdist  # noqa: E402
from pyro import poutine  # noqa: E402
from pyro.infer import SVI, Trace_ELBO  # noqa: E402
from torch.distributions import constraints  # noqa: E402

from relaxcat.torch import (  # noqa: E402
    ExpRelaxedCategorical,
    HardConcrete,
    LogitRelaxedBernoulli,
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
)

pytestmark = pytest.mark.backends("torch")

ONEHOT_PROBS = [
    [0.25, 0.75],
    [0.25, 0.5, 0.25],
    [[0.25, 0.75], [0.75, 0.25]],
    [[[0.25, 0.75]], [[0.75, 0.25]]],
    [0.1] * 10,
]
BERN_PROBS = [[0.25, 0.75], [[0.25, 0.75], [0.75, 0.25]]]
DTYPES = [torch.float32, torch.float64]


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("probs", ONEHOT_PROBS)
def test_onehot_shapes(bk, probs, dtype):
    probs = torch.tensor(probs, dtype=dtype, requires_grad=True)
    d = RelaxedOneHotCategorical(torch.tensor(0.5, dtype=dtype), probs=probs, hard=True)
    sample = pyro.sample("z", d)
    assert sample.shape == probs.shape and sample.dtype == dtype
    assert bool(((sample == 0) | (sample == 1)).all())
    log_prob = d.log_prob(sample)
    assert log_prob.shape == probs.shape[:-1] and bool(torch.isfinite(log_prob).all())
    (grad_probs,) = torch.autograd.grad(log_prob.sum(), [probs])
    assert grad_probs.shape == probs.shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("probs", BERN_PROBS)
def test_bernoulli_shapes(bk, probs, dtype):
    probs = torch.tensor(probs, dtype=dtype, requires_grad=True)
    d = RelaxedBernoulli(torch.tensor(0.5, dtype=dtype), probs=probs, hard=True)
    sample = pyro.sample("z", d)
    assert sample.shape == probs.shape and bool(((sample == 0) | (sample == 1)).all())
    (grad_probs,) = torch.autograd.grad(d.log_prob(sample).sum(), [probs])
    assert grad_probs.shape == probs.shape


@pytest.mark.parametrize("temp", [0.3, 0.5, 1.0])
def test_straight_through_log_prob_is_the_relaxed_one_at_the_soft_sample(bk, temp):
    # Pyro's test_onehot_entropy_grad compares the two in expectation over 2e6 draws; with
    # the same generator they are equal draw by draw, value and gradient.
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64, requires_grad=True)
    lps = []
    for hard in (False, True):
        d = RelaxedOneHotCategorical(temp, probs=q, hard=hard)
        z = d.rsample(torch.Size([20_000]), generator=torch.Generator().manual_seed(1))
        lps.append(d.log_prob(z))
    torch.testing.assert_close(lps[1], lps[0])
    grads = [torch.autograd.grad(lp.sum(), [q])[0] for lp in lps]
    torch.testing.assert_close(grads[1], grads[0])
    b = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64, requires_grad=True)
    blps = []
    for hard in (False, True):
        d = RelaxedBernoulli(temp, probs=b, hard=hard)
        z = d.rsample(torch.Size([20_000]), generator=torch.Generator().manual_seed(2))
        blps.append(d.log_prob(z))
    torch.testing.assert_close(blps[1], blps[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_onehot_svi_usage(bk, dtype):
    # Pyro's case: a uniform one-hot model, a straight-through guide at temperature 0.1,
    # from q = (0.1, 0.2, 0.3, 0.4). A plate of 64 draws per step (Pyro: 1 draw, 6000
    # steps) and the mean of the last 100 iterates keep it to 250 steps.
    def model():
        with pyro.plate("draws", 64):
            pyro.sample("z", pdist.OneHotCategorical(probs=torch.full((4,), 0.25, dtype=dtype)))

    def guide():
        q = pyro.param(
            "q", torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=dtype), constraint=constraints.simplex
        )
        with pyro.plate("draws", 64):
            pyro.sample(
                "z", RelaxedOneHotCategorical(torch.tensor(0.1, dtype=dtype), probs=q, hard=True)
            )

    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.01, "betas": (0.95, 0.999)}), Trace_ELBO())
    tail = []
    for step in range(250):
        loss = svi.step()
        assert math.isfinite(loss)
        if step >= 150:
            tail.append(pyro.param("q").detach().clone())
    q = torch.stack(tail).mean(0)
    assert q.dtype == dtype
    torch.testing.assert_close(q, torch.full((4,), 0.25, dtype=dtype), atol=0.015, rtol=0)


def test_plates_broadcast_and_expand(bk):
    def model():
        with pyro.plate("rows", 5):
            c = pyro.sample("c", RelaxedOneHotCategorical(0.5, logits=torch.zeros(3)))
            b = pyro.sample("b", RelaxedBernoulli(0.5, logits=torch.tensor(0.0)))
            g = pyro.sample("g", HardConcrete(2 / 3, logits=torch.tensor(1.0)))
        return c, b, g

    trace = poutine.trace(model).get_trace()
    assert trace.nodes["c"]["value"].shape == (5, 3)
    assert trace.nodes["b"]["value"].shape == (5,)
    assert trace.nodes["g"]["value"].shape == (5,)
    assert trace.nodes["c"]["fn"].batch_shape == (5,)
    trace.compute_log_prob()
    assert trace.nodes["c"]["log_prob"].shape == (5,)
    assert bool(torch.isfinite(trace.log_prob_sum()))


def test_to_event_mask_expand_by(bk):
    d = RelaxedBernoulli(0.5, logits=torch.zeros(2, 3))
    e = d.to_event(1)
    assert e.batch_shape == (2,) and e.event_shape == (3,)
    assert d.to_event().event_shape == (2, 3)
    x = pyro.sample("x", e)
    torch.testing.assert_close(e.log_prob(x), d.log_prob(x).sum(-1))
    mask = torch.tensor([[True, False, True], [False, False, True]])
    masked = d.mask(mask)
    torch.testing.assert_close(masked.log_prob(x), d.log_prob(x) * mask)
    assert d.expand_by([4]).batch_shape == (4, 2, 3)
    assert d.shape(torch.Size([7])) == (7, 2, 3)
    assert ExpRelaxedCategorical(0.5, logits=torch.zeros(2, 4)).event_dim == 1


def test_every_class_in_a_trace_elbo(bk):
    # Model and guide of every class; the ELBO is finite and differentiable.
    def model():
        pyro.sample("a", ExpRelaxedCategorical(0.05, logits=torch.zeros(4)))
        pyro.sample("b", LogitRelaxedBernoulli(0.05, logits=torch.zeros(3)).to_event(1))
        pyro.sample("c", HardConcrete(2 / 3, logits=torch.zeros(3)).to_event(1))

    w = torch.zeros(4, requires_grad=True)

    def guide():
        pyro.sample("a", ExpRelaxedCategorical(0.05, logits=w))
        pyro.sample("b", LogitRelaxedBernoulli(0.05, logits=w[:3]).to_event(1))
        pyro.sample("c", HardConcrete(2 / 3, logits=w[1:]).to_event(1))

    loss = Trace_ELBO().differentiable_loss(model, guide)
    assert bool(torch.isfinite(loss))
    (grad,) = torch.autograd.grad(loss, [w])
    assert bool(torch.isfinite(grad).all()) and bool((grad != 0).any())


def test_svi_recovers_a_relaxed_categorical_and_a_relaxed_bernoulli(bk, capsys):
    # The Pyro example of docs/ppl.md, run as written: float32 at temperature 0.1, where
    # torch's own RelaxedOneHotCategorical gives NaN densities to some of its samples. The
    # guide's family holds the prior, so the ELBO's optimum is q = prior; the example
    # asserts every loss is finite, and here the guide must have recovered PI and RHO (the
    # last iterate of Adam at lr 0.02 scatters by about 0.01 around the optimum).
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "ppl.md"
    blocks = re.findall(r"^```python\n(import pyro\n.*?)^```", page.read_text(), re.M | re.S)
    assert len(blocks) == 1
    scope: dict[str, object] = {}
    exec(compile(blocks[0], "<docs/ppl.md Pyro example>", "exec"), scope)
    q, r = pyro.param("q").detach(), pyro.param("r").detach()
    assert q.dtype == torch.float32
    torch.testing.assert_close(q, scope["PI"], atol=0.03, rtol=0)
    torch.testing.assert_close(r, scope["RHO"], atol=0.03, rtol=0)
