"""RED-diff and RED-diff-V on the Gaussian-mixture oracle."""

import pytest
import torch

from vipaint_pl.methods.red_diff import REDDiffConfig, red_diff_sample
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.rng import QueryNoise


@pytest.mark.parametrize("times,ratio", [("descending", 0.1), ("random", 0.3)])  # measured 0.06 and 0.20
def test_red_diff_is_closer_to_the_exact_posterior_than_the_prior(problem, times, ratio):
    prior, op, y, exact = problem
    xs = red_diff_sample(prior, op, y, QueryNoise(0, ["q"], "red", 300), REDDiffConfig(times=times))
    prior_sw = sliced_wasserstein(prior.sample(300, torch.Generator().manual_seed(1)), exact)
    sw = sliced_wasserstein(xs, exact)
    assert sw < ratio * prior_sw, (sw, prior_sw)
    assert (xs[:, [0, 1, 4, 5]] - y).abs().mean() < 1.0  # the observed coordinates follow y
