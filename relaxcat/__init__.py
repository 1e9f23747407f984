"""relaxcat: the Gumbel-softmax (Concrete) distribution for every array library.

One implementation, written against the Python array-API standard, runs on NumPy,
PyTorch, JAX, CuPy and any array-API library; small adapters supply random numbers,
``stop_gradient`` and device handling. Importing relaxcat imports no array framework:
an adapter is loaded the first time an array of its library is seen.

>>> import numpy as np
>>> import relaxcat
>>> relaxcat.gumbel_softmax(np.zeros((2, 4)), tau=0.5, hard=True, rng=0).sum(axis=-1)
array([1., 1.])
"""

from ._anneal import anneal_tau
from ._core import gumbel_noise, gumbel_softmax
from ._distributions import (
    categorical_kl,
    concrete_log_prob,
    exp_concrete_log_prob,
    gumbel_topk,
    log_gumbel_softmax,
    relaxed_bernoulli,
    relaxed_bernoulli_log_prob,
    relaxed_topk,
    sample_categorical,
)
from ._gates import (
    hard_concrete,
    hard_concrete_l0,
    hard_concrete_log_prob,
    logit_relaxed_bernoulli,
    logit_relaxed_bernoulli_log_prob,
    relaxed_bernoulli_cdf,
)
from ._ksubset import ksubset_marginals, simple_ksubset
from ._permutations import gumbel_sinkhorn, plackett_luce_log_prob
from ._philox import Philox

__version__ = "0.1.0"

__all__ = [
    "Philox",
    "__version__",
    "anneal_tau",
    "categorical_kl",
    "concrete_log_prob",
    "exp_concrete_log_prob",
    "gumbel_noise",
    "gumbel_sinkhorn",
    "gumbel_softmax",
    "gumbel_topk",
    "hard_concrete",
    "hard_concrete_l0",
    "hard_concrete_log_prob",
    "ksubset_marginals",
    "log_gumbel_softmax",
    "logit_relaxed_bernoulli",
    "logit_relaxed_bernoulli_log_prob",
    "plackett_luce_log_prob",
    "relaxed_bernoulli",
    "relaxed_bernoulli_cdf",
    "relaxed_bernoulli_log_prob",
    "relaxed_topk",
    "sample_categorical",
    "simple_ksubset",
]
