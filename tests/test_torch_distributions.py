"""relaxcat.torch: the distribution classes and the drop-in gumbel_softmax.

Written from the behaviour of torch's ``test_distributions`` (shapes, support, expand,
validation), TFP's density and broadcasting cases, and the issue's NaN repro. Runs in the
torch cell (the ``bk`` fixture, torch only).
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="relaxcat.torch needs torch, which is not installed")
from scipy import integrate, stats  # noqa: E402
from torch import distributions as D  # noqa: E402

import relaxcat  # noqa: E402
from relaxcat.torch import (  # noqa: E402
    ExpRelaxedCategorical,
    HardConcrete,
    LogitRelaxedBernoulli,
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
    gumbel_softmax,
)

pytestmark = pytest.mark.backends("torch")

CATEGORICAL = (RelaxedOneHotCategorical, ExpRelaxedCategorical)
BINARY = (RelaxedBernoulli, LogitRelaxedBernoulli, HardConcrete)
ALL = CATEGORICAL + BINARY


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def make(cls, tau=0.5, batch=(2, 3), n=4, dtype=torch.float64, **kw):
    shape = (*batch, n) if cls in CATEGORICAL else batch
    logits = torch.randn(shape, generator=gen(1), dtype=dtype)
    return cls(tau, logits=logits, **kw)


# -- shapes, support, expand (torch's test_distributions cases) ------------------------


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("sample_shape", [(), (5,), (2, 1)])
def test_shapes_and_support(bk, cls, sample_shape):
    d = make(cls)
    event = (4,) if cls in CATEGORICAL else ()
    assert d.batch_shape == (2, 3) and d.event_shape == event
    x = d.rsample(torch.Size(sample_shape))
    assert x.shape == (*sample_shape, 2, 3, *event)
    assert x.dtype == torch.float64
    assert bool(d.support.check(x).all())
    assert d.log_prob(x).shape == (*sample_shape, 2, 3)
    assert d.sample().shape == (2, 3, *event)
    assert d.has_rsample and not d.sample().requires_grad


@pytest.mark.parametrize("cls", ALL)
def test_expand(bk, cls):
    d = make(cls, batch=(3,))
    e = d.expand(torch.Size([5, 3]))
    assert type(e) is cls and e.batch_shape == (5, 3) and e.event_shape == d.event_shape
    assert e.temperature == d.temperature
    x = e.rsample()
    assert x.shape == (5, 3, *d.event_shape)
    torch.testing.assert_close(e.log_prob(x)[0], d.log_prob(x[0]))
    if cls in (RelaxedOneHotCategorical, RelaxedBernoulli):
        h = make(cls, batch=(3,), hard=True).expand(torch.Size([2, 3]))
        z = h.rsample()
        assert h.hard and bool(((z == 0) | (z == 1)).all())
    if cls is HardConcrete:
        h = make(cls, batch=(3,), limits=(-0.2, 1.3)).expand(torch.Size([2, 3]))
        assert h.limits == (-0.2, 1.3)
    with pytest.raises(RuntimeError):
        d.expand(torch.Size([4]))


@pytest.mark.parametrize("cls", ALL)
def test_probs_and_logits_agree(bk, cls):
    if cls in CATEGORICAL:
        probs = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=torch.float64)
        a, b = cls(0.5, probs=probs), cls(0.5, logits=probs.log() + 3.0)
        torch.testing.assert_close(a.logits, b.logits)
        torch.testing.assert_close(b.probs, probs)
    else:
        probs = torch.tensor([0.2, 0.7], dtype=torch.float64)
        a, b = cls(0.5, probs=probs), cls(0.5, logits=torch.logit(probs))
        torch.testing.assert_close(a.logits, b.logits)
        torch.testing.assert_close(b.probs, probs)
    x = b.rsample(torch.Size([3]))
    torch.testing.assert_close(a.log_prob(x), b.log_prob(x))


@pytest.mark.parametrize("cls", ALL)
def test_parameter_errors(bk, cls):
    with pytest.raises(ValueError, match="Either `probs` or `logits`"):
        cls(0.5)
    with pytest.raises(ValueError, match="Either `probs` or `logits`"):
        cls(0.5, probs=torch.ones(2) / 2, logits=torch.zeros(2))
    bad = torch.tensor([[0.5, -0.1, 0.6]]) if cls in CATEGORICAL else torch.tensor([1.5])
    with pytest.raises(ValueError, match="probs"):
        cls(0.5, probs=bad, validate_args=True)


@pytest.mark.parametrize("cls", ALL)
def test_validation_rejects_values_outside_the_support(bk, cls):
    d = make(cls, validate_args=True)
    if cls is LogitRelaxedBernoulli:
        outside = torch.full((2, 3), math.nan, dtype=torch.float64)
    elif cls is ExpRelaxedCategorical:
        outside = torch.full((2, 3, 4), math.nan, dtype=torch.float64)
    elif cls is RelaxedOneHotCategorical:
        outside = torch.full((2, 3, 4), 0.5, dtype=torch.float64)  # does not sum to 1
    else:
        outside = torch.full((2, 3), 1.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(outside)


def test_categorical_parameters_need_a_dimension(bk):
    with pytest.raises(ValueError, match="at least one-dimensional"):
        RelaxedOneHotCategorical(0.5, logits=torch.tensor(0.0))


def test_hard_concrete_limits_are_checked(bk):
    with pytest.raises(ValueError, match="low < 0 and high > 1"):
        HardConcrete(0.5, logits=torch.zeros(2), limits=(0.1, 1.1))


# -- samples equal the functional API ---------------------------------------------------


@pytest.mark.parametrize("n", [3, 5000])
def test_samples_equal_the_functional_api(bk, n):
    logits = torch.randn(n, 4, generator=gen(2))
    for hard in (False, True):
        y = RelaxedOneHotCategorical(0.3, logits=logits, hard=hard).rsample(generator=gen(7))
        ref = relaxcat.gumbel_softmax(logits, 0.3, hard=hard, rng=gen(7))
        if hard or n > 1000:  # below relaxcat's tiny-kernel size: rounding of exp differs
            assert torch.equal(y, ref)
        torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-7)
    pairs = [
        (ExpRelaxedCategorical(0.3, logits=logits), relaxcat.log_gumbel_softmax),
        (RelaxedBernoulli(0.3, logits=logits), relaxcat.relaxed_bernoulli),
        (LogitRelaxedBernoulli(0.3, logits=logits), relaxcat.logit_relaxed_bernoulli),
        (HardConcrete(0.3, logits=logits), relaxcat.hard_concrete),
    ]
    for d, f in pairs:
        assert torch.equal(d.rsample(generator=gen(7)), f(logits, 0.3, rng=gen(7)))
    hard_b = RelaxedBernoulli(0.3, logits=logits, hard=True).rsample(generator=gen(7))
    assert torch.equal(hard_b, relaxcat.relaxed_bernoulli(logits, 0.3, hard=True, rng=gen(7)))


def test_default_generator_follows_manual_seed(bk):
    d = RelaxedOneHotCategorical(0.5, logits=torch.zeros(3, 4))
    torch.manual_seed(3)
    a = d.rsample()
    torch.manual_seed(3)
    assert torch.equal(a, d.rsample())


def test_estimators_pass_through(bk):
    logits = torch.randn(64, 5, generator=gen(4), requires_grad=True)
    for estimator, samples in [("reinmax", 1), ("gumbel_rao", 4)]:
        d = RelaxedOneHotCategorical(
            0.5, logits=logits, hard=True, estimator=estimator, samples=samples
        )
        y = d.rsample(generator=gen(8))
        ref = relaxcat.gumbel_softmax(
            logits, 0.5, hard=True, rng=gen(8), estimator=estimator, samples=samples
        )
        assert torch.equal(y, ref)
        w = torch.randn(64, 5, generator=gen(9))
        (ga,) = torch.autograd.grad((y * w).sum(), logits)
        (gb,) = torch.autograd.grad((ref * w).sum(), logits)
        torch.testing.assert_close(ga, gb)


# -- log_prob of own samples: the NaN repro --------------------------------------------


def test_repro_concrete_density_of_underflowed_samples_is_infinite(bk):
    # The repro: at tau 0.1 with 4 categories, a few soft float32 samples in 10^4
    # have an entry that underflows to 0, where the density from y alone is +inf.
    logits = torch.zeros(100_000, 4)
    y = relaxcat.gumbel_softmax(logits, 0.1, rng=gen(0))
    assert bool((y == 0).any(dim=-1).any())
    assert bool(torch.isinf(relaxcat.concrete_log_prob(y, logits, 0.1)).any())


@pytest.mark.parametrize("tau", [0.1, 0.01])
@pytest.mark.parametrize(
    ("cls", "kw"),
    [
        (RelaxedOneHotCategorical, {}),
        (RelaxedOneHotCategorical, {"hard": True}),
        (ExpRelaxedCategorical, {}),
        (RelaxedBernoulli, {}),
        (RelaxedBernoulli, {"hard": True}),
        (LogitRelaxedBernoulli, {}),
        (HardConcrete, {}),
    ],
)
def test_log_prob_of_own_rsample_is_finite_in_float32(bk, cls, kw, tau):
    shape = (4,) if cls in CATEGORICAL else ()
    d = cls(tau, logits=torch.randn(shape, generator=gen(5)), **kw)
    x = d.rsample(torch.Size([20_000]), generator=gen(6))
    assert x.dtype == torch.float32
    lp = d.log_prob(x)
    assert lp.shape == (20_000,)
    assert bool(torch.isfinite(lp).all())


def test_companion_is_the_density_at_the_soft_point(bk):
    # Where the soft sample is representable, the companion changes nothing (float64).
    logits = torch.randn(200, 5, dtype=torch.float64, generator=gen(3))
    d = RelaxedOneHotCategorical(0.7, logits=logits)
    y = d.rsample()
    plain = y.detach().clone()  # no companion
    torch.testing.assert_close(d.log_prob(y), d.log_prob(plain), rtol=1e-9, atol=1e-9)
    b = RelaxedBernoulli(0.7, logits=logits)
    yb = b.rsample()
    torch.testing.assert_close(
        b.log_prob(yb), b.log_prob(yb.detach().clone()), rtol=1e-9, atol=1e-9
    )
    # hard: the density at the soft companion, which the one-hot alone does not carry
    h = RelaxedOneHotCategorical(0.7, logits=logits, hard=True)
    z = h.rsample(generator=gen(4))
    soft = relaxcat.gumbel_softmax(logits, 0.7, rng=gen(4))
    torch.testing.assert_close(h.log_prob(z), d.log_prob(soft.clone()), rtol=1e-9, atol=1e-9)


def test_companion_survives_another_distribution_of_the_family(bk):
    # Pyro evaluates the prior at the guide's sample: another object, the same tensor.
    guide = RelaxedOneHotCategorical(0.05, logits=torch.randn(4, generator=gen(1)), hard=True)
    prior = RelaxedOneHotCategorical(0.05, logits=torch.zeros(4))
    z = guide.rsample(torch.Size([10_000]), generator=gen(2))
    assert bool(torch.isfinite(prior.log_prob(z)).all())
    zb = RelaxedBernoulli(0.05, logits=torch.tensor(1.0), hard=True).rsample(torch.Size([10_000]))
    assert bool(torch.isfinite(RelaxedBernoulli(0.05, probs=torch.tensor(0.5)).log_prob(zb)).all())


@pytest.mark.parametrize("tau", [0.3, 1.0, 2.5])
def test_densities_match_torch_distributions(bk, tau):
    logits = torch.randn(3, 5, dtype=torch.float64, generator=gen(0))
    y = torch.distributions.Dirichlet(torch.full((3, 5), 2.0, dtype=torch.float64)).sample()
    ours, theirs = (
        RelaxedOneHotCategorical(tau, logits=logits),
        D.RelaxedOneHotCategorical(torch.tensor(tau, dtype=torch.float64), logits=logits),
    )
    torch.testing.assert_close(ours.log_prob(y), theirs.log_prob(y))
    x = y.log()
    torch.testing.assert_close(
        ExpRelaxedCategorical(tau, logits=logits).log_prob(x),
        D.relaxed_categorical.ExpRelaxedCategorical(
            torch.tensor(tau, dtype=torch.float64), logits=logits
        ).log_prob(x),
    )
    lb = torch.randn(7, dtype=torch.float64, generator=gen(2))
    u = torch.rand(7, dtype=torch.float64, generator=gen(3)) * 0.9 + 0.05
    t = torch.tensor(tau, dtype=torch.float64)
    torch.testing.assert_close(
        RelaxedBernoulli(tau, logits=lb).log_prob(u), D.RelaxedBernoulli(t, logits=lb).log_prob(u)
    )
    z = torch.logit(u) * 3
    torch.testing.assert_close(
        LogitRelaxedBernoulli(tau, logits=lb).log_prob(z),
        D.relaxed_bernoulli.LogitRelaxedBernoulli(t, logits=lb).log_prob(z),
    )


def test_density_broadcasting(bk):
    # TFP-style broadcasting: samples (S, 1, n) against logits (B, n); temperatures per row.
    logits = torch.randn(3, 4, dtype=torch.float64, generator=gen(0))
    d = RelaxedOneHotCategorical(0.5, logits=logits)
    y = d.rsample(torch.Size([6]))[:, :1]  # (6, 1, 4)
    assert d.log_prob(y).shape == (6, 3)
    b = RelaxedBernoulli(torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64), logits=torch.zeros(3))
    assert b.rsample(torch.Size([5])).shape == (5, 3)
    assert b.log_prob(torch.full((5, 3), 0.3)).shape == (5, 3)


# -- closed forms ---------------------------------------------------------------------


def test_logit_relaxed_bernoulli_closed_forms(bk):
    logits = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    tau = 0.4
    d = LogitRelaxedBernoulli(tau, logits=logits)
    ref = stats.logistic(loc=logits.numpy() / tau, scale=1 / tau)
    np.testing.assert_allclose(d.mean.numpy(), ref.mean())
    np.testing.assert_allclose(d.variance.numpy(), ref.var())
    np.testing.assert_allclose(d.entropy().numpy(), ref.entropy())
    x = torch.tensor([-3.0, 0.1, 9.0], dtype=torch.float64)
    np.testing.assert_allclose(d.cdf(x).numpy(), ref.cdf(x.numpy()))
    q = torch.tensor([0.1, 0.5, 0.97], dtype=torch.float64)
    np.testing.assert_allclose(d.icdf(q).numpy(), ref.ppf(q.numpy()))


def test_relaxed_bernoulli_cdf_and_icdf(bk):
    # NumPyro's test_cdf_and_icdf: icdf(cdf(x)) == x and the CDF's derivative is the density.
    logits = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    d = RelaxedBernoulli(0.6, logits=logits)
    y = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    c = d.cdf(y)
    torch.testing.assert_close(d.icdf(c), y)
    (dc,) = torch.autograd.grad(c.sum(), y)
    torch.testing.assert_close(dc, d.log_prob(y).exp())
    q = torch.rand(100, 3, dtype=torch.float64, generator=gen(0))
    torch.testing.assert_close(d.cdf(d.icdf(q)), q)


def test_hard_concrete_cdf_and_atoms(bk):
    d = HardConcrete(2 / 3, logits=torch.tensor([-1.0, 0.0, 1.5], dtype=torch.float64))
    p0 = d.log_prob(torch.zeros(3, dtype=torch.float64)).exp()
    torch.testing.assert_close(d.cdf(torch.zeros(3, dtype=torch.float64)), p0)
    torch.testing.assert_close(d.expected_l0(), 1 - p0)
    p1 = d.log_prob(torch.ones(3, dtype=torch.float64)).exp()
    below_one = d.cdf(torch.full((3,), 1 - 1e-9, dtype=torch.float64))
    torch.testing.assert_close(below_one, 1 - p1, atol=1e-6, rtol=0)
    assert bool((d.cdf(torch.ones(3, dtype=torch.float64)) == 1).all())
    assert bool((d.cdf(torch.full((3,), -0.5, dtype=torch.float64)) == 0).all())


def test_kl_of_equal_temperatures_is_the_integral(bk):
    tau = 0.7
    for lp, lq in [(0.3, 0.31), (0.0, 2.0), (-1.0, 4.0), (1.0, -0.2)]:
        p = LogitRelaxedBernoulli(tau, logits=torch.tensor([lp], dtype=torch.float64))
        q = LogitRelaxedBernoulli(tau, logits=torch.tensor([lq], dtype=torch.float64))
        a = stats.logistic(loc=lp / tau, scale=1 / tau)
        b = stats.logistic(loc=lq / tau, scale=1 / tau)
        exact = integrate.quad(lambda x, a=a, b=b: a.pdf(x) * (a.logpdf(x) - b.logpdf(x)), -80, 80)[
            0
        ]
        kl = D.kl_divergence(p, q)
        assert float(kl) == pytest.approx(exact, rel=1e-7, abs=1e-12)
        rp = RelaxedBernoulli(tau, logits=p.logits)
        rq = RelaxedBernoulli(tau, logits=q.logits)
        torch.testing.assert_close(D.kl_divergence(rp, rq), kl)


def test_kl_float32_small_differences_do_not_cancel(bk):
    p = LogitRelaxedBernoulli(0.5, logits=torch.tensor([0.0]))
    q = LogitRelaxedBernoulli(0.5, logits=torch.tensor([1e-3]))
    assert float(D.kl_divergence(p, q)) == pytest.approx(1e-6 / 6, rel=1e-5)


def test_kl_of_different_temperatures_is_not_claimed(bk):
    p = LogitRelaxedBernoulli(0.5, logits=torch.zeros(2))
    q = LogitRelaxedBernoulli(0.6, logits=torch.zeros(2))
    with pytest.raises(NotImplementedError, match="equal temperatures"):
        D.kl_divergence(p, q)
    a = RelaxedOneHotCategorical(0.5, logits=torch.zeros(3))
    with pytest.raises(NotImplementedError):
        D.kl_divergence(a, a)


# -- gradients and transforms -----------------------------------------------------------


def test_hard_sample_carries_the_soft_gradient(bk):
    logits = torch.randn(50, 4, dtype=torch.float64, generator=gen(0), requires_grad=True)
    w = torch.randn(50, 4, dtype=torch.float64, generator=gen(1))
    hard = RelaxedOneHotCategorical(0.5, logits=logits, hard=True).rsample(generator=gen(2))
    soft = RelaxedOneHotCategorical(0.5, logits=logits).rsample(generator=gen(2))
    assert bool(((hard == 0) | (hard == 1)).all()) and bool((hard.sum(-1) == 1).all())
    (gh,) = torch.autograd.grad((hard * w).sum(), logits)
    (gs,) = torch.autograd.grad((soft * w).sum(), logits)
    torch.testing.assert_close(gh, gs)


def test_hard_concrete_gradient_flows_to_logits_and_temperature(bk):
    logits = torch.zeros(1000, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    d = HardConcrete(tau, logits=logits)
    (d.rsample().sum() + d.expected_l0().sum()).backward()
    assert logits.grad is not None and tau.grad is not None
    assert bool(torch.isfinite(logits.grad).all()) and bool(torch.isfinite(tau.grad))


def test_torch_func_vmap(bk):
    from torch.func import vmap

    def draw(logits):
        d = RelaxedOneHotCategorical(0.5, logits=logits, validate_args=False)
        y = d.rsample()
        return y, d.log_prob(y)

    logits = torch.randn(6, 4, generator=gen(0))
    y, lp = vmap(draw, randomness="different")(logits)
    assert y.shape == (6, 4) and lp.shape == (6,)
    torch.testing.assert_close(lp, RelaxedOneHotCategorical(0.5, logits=logits).log_prob(y.clone()))

    def gate(logits):
        d = HardConcrete(2 / 3, logits=logits, validate_args=False)
        z = d.rsample()
        return z, d.log_prob(z), d.expected_l0()

    z, lpz, l0 = vmap(gate, randomness="different")(torch.zeros(5, 3))
    assert z.shape == (5, 3) and bool(torch.isfinite(lpz).all()) and l0.shape == (5, 3)


# -- the drop-in ----------------------------------------------------------------------


def test_drop_in_signature_is_torchs(bk):
    ours = inspect.signature(gumbel_softmax).parameters
    theirs = inspect.signature(torch.nn.functional.gumbel_softmax).parameters
    names = list(theirs)
    assert list(ours)[: len(names)] == names
    for name in names:
        assert ours[name].default == theirs[name].default
        assert ours[name].kind == theirs[name].kind


def test_drop_in_positional_forms_equal_relaxcat(bk):
    x = torch.randn(8, 5, dtype=torch.float64, generator=gen(0), requires_grad=True)
    w = torch.randn(8, 5, dtype=torch.float64, generator=gen(1))
    forms = [
        (lambda g: gumbel_softmax(x, 0.5, generator=g), {"tau": 0.5}),
        (lambda g: gumbel_softmax(x, 0.5, True, generator=g), {"tau": 0.5, "hard": True}),
        (
            lambda g: gumbel_softmax(x, tau=0.3, hard=True, dim=0, generator=g),
            {"tau": 0.3, "hard": True, "axis": 0},
        ),
    ]
    for call, kw in forms:
        y = call(gen(5))
        tau = kw.pop("tau")
        ref = relaxcat.gumbel_softmax(x, tau, rng=gen(5), **kw)
        assert torch.equal(y, ref)
        (gy,) = torch.autograd.grad((y * w).sum(), x)
        (gr,) = torch.autograd.grad((ref * w).sum(), x)
        torch.testing.assert_close(gy, gr)


def test_drop_in_behaves_like_torchs(bk):
    x = torch.randn(1000, 3, generator=gen(0))
    torch.manual_seed(0)
    y = gumbel_softmax(x, 1.0, True)
    assert bool((y.sum(-1) == 1).all()) and y.dtype == x.dtype and y.shape == x.shape
    # Frequencies of the hard samples: the categorical's (chi-square, level 1e-4).
    x = torch.log(torch.tensor([0.2, 0.3, 0.5])).expand(50_000, 3)
    counts = gumbel_softmax(x, 0.5, True).sum(0).numpy()
    assert stats.chisquare(counts, 50_000 * np.array([0.2, 0.3, 0.5])).pvalue > 1e-4
    assert stats.chisquare(counts, 50_000 * np.array([0.21, 0.3, 0.49])).pvalue < 1e-4


def test_drop_in_eps_warns_with_torchs_text(bk):
    x = torch.zeros(2, 3)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        torch.nn.functional.gumbel_softmax(x, eps=1e-5)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        gumbel_softmax(x, eps=1e-5)
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert len(ours) == 1 and ours[0].filename == __file__  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gumbel_softmax(x, 1, False, 1e-10, -1)


def test_module_exports(bk):
    import relaxcat.torch as rt

    assert sorted(rt.__all__) == sorted(
        [
            "ExpRelaxedCategorical",
            "HardConcrete",
            "LogitRelaxedBernoulli",
            "RelaxedBernoulli",
            "RelaxedOneHotCategorical",
            "gumbel_softmax",
        ]
    )
    assert all(issubclass(c, D.Distribution) for c in ALL)


@pytest.mark.parametrize(("page", "count"), [("ppl.md", 2), ("hard-concrete.md", 1)])
def test_docs_torch_examples_run(bk, capsys, page, count):
    # The torch examples of docs/ppl.md (torch.distributions, the drop-in) and of
    # docs/hard-concrete.md (the pruning loss) run as written.
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / page).read_text()
    blocks = re.findall(r"^```python\n(import torch\n.*?)^```", text, re.M | re.S)
    assert len(blocks) == count
    for i, code in enumerate(blocks):
        exec(compile(code, f"<docs/{page} torch example {i}>", "exec"), {})


def test_pruning_script_runs(bk, tmp_path, capsys):
    # docs/scripts/hard_concrete_pruning.py end to end, on a tiny budget.
    import importlib.util
    import json
    from pathlib import Path

    pytest.importorskip("sklearn", reason="the pruning example needs scikit-learn")
    pytest.importorskip("matplotlib", reason="the pruning example draws with matplotlib")
    path = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "hard_concrete_pruning.py"
    spec = importlib.util.spec_from_file_location("hard_concrete_pruning", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, png = tmp_path / "runs.json", tmp_path / "fig.png"
    module.main(["--steps", "20", "--seeds", "1", "--json", str(out), "--png", str(png)])
    runs = json.loads(out.read_text())["runs"]
    assert len(runs) == len(module.LAMBDAS) and png.stat().st_size > 0
    assert all(0 <= r["kept"] <= 128 and 0 <= r["accuracy"] <= 1 for r in runs)
