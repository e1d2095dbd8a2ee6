import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def problem():
    """A Gaussian-mixture prior in 8 dimensions, 4 coordinates observed with noise 0.5, and 4000 samples
    of the exact posterior: (prior, operator, y, exact samples)."""
    from vipaint_pl.operators import DenseLinear
    from vipaint_pl.priors.gmm import grid_mixture_prior

    prior = grid_mixture_prior(8, seed=0)
    op = DenseLinear(torch.eye(8, dtype=torch.float64)[[0, 1, 4, 5]])
    x = prior.sample(1, torch.Generator().manual_seed(3))
    y = op.measure(x.double(), 0.5, torch.Generator().manual_seed(4))
    exact = prior.exact_posterior(op, y, 0.5).sample(4000, torch.Generator().manual_seed(5))
    return prior, op, y, exact
