"""ReSample on the Gaussian-mixture oracle; its resampling step and its per-sample optimizations."""

import torch

from vipaint_pl.rng import QueryNoise
from vipaint_pl.methods.resample import ReSampleConfig, fit_measurement, resample_sample, stochastic_resample
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.operators import DenseLinear


def test_resample_is_closer_to_the_exact_posterior_than_the_prior(problem):
    prior, op, y, exact = problem
    xs = resample_sample(prior, op, y, QueryNoise(0, ["q"], "rs", 300), ReSampleConfig(steps=100))
    prior_sw = sliced_wasserstein(prior.sample(300, torch.Generator().manual_seed(1)), exact)
    sw = sliced_wasserstein(xs, exact)
    assert sw < 0.4 * prior_sw, (sw, prior_sw)  # measured 0.22 (0.075 with the default 500 steps)
    assert (xs[:, [0, 1, 4, 5]] - y).abs().mean() < 0.05  # hard data consistency: the last optimization fits y


def test_stochastic_resampling_is_the_product_of_the_two_gaussians():
    z0, zs, noise = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    abar, s2 = 0.3, 0.05
    prec = 1 / (1 - abar) + 1 / s2  # prior N(sqrt(abar) z0, 1 - abar), observation zs = z + N(0, s2)
    mean = (abar**0.5 * z0 / (1 - abar) + zs / s2) / prec
    torch.testing.assert_close(stochastic_resample(z0, zs, abar, s2, noise), mean + prec**-0.5 * noise)


def test_each_sample_stops_its_own_optimization():
    op = DenseLinear(torch.eye(4, dtype=torch.float64)[:2])
    y = torch.zeros(2, 2, dtype=torch.float64)
    init = torch.tensor([[1e-4, 0, 3, 3], [5.0, 0, 3, 3]], dtype=torch.float64)
    cfg = ReSampleConfig(weight_decay=0.0)
    out = fit_measurement(lambda v: v, op, y, init, lr=1e-2, iters=2000, cfg=cfg)
    # already below tol^2 = 1e-6: stops after its first Adam step (a step of lr), as the authors' loop does...
    torch.testing.assert_close(out[0], init[0] - torch.tensor([1e-2, 0, 0, 0], dtype=torch.float64), atol=1e-5, rtol=0)
    assert 0 < out[1, 0].abs() < 0.01 and (out[:, 2:] == 3).all()  # ...the other one runs on; unseen coords untouched
    alone = fit_measurement(lambda v: v, op, y[1:], init[1:], lr=1e-2, iters=2000, cfg=cfg)
    torch.testing.assert_close(out[1:], alone)


def test_a_sample_does_not_depend_on_the_other_queries_in_its_batch(problem):
    prior, op, y, _ = problem
    cfg = ReSampleConfig(steps=40, latent_iters=50, pixel_iters=50, patience=10)
    alone = resample_sample(prior, op, y, QueryNoise(0, ["a"], "rs", 3), cfg)
    both = resample_sample(prior, op, torch.cat([y, -y]), QueryNoise(0, ["a", "b"], "rs", 3), cfg)
    torch.testing.assert_close(both[:3], alone)


def test_the_two_resampling_variances_differ_by_one_over_the_snr():
    from vipaint_pl.methods.resample import ReSampleConfig, resampling_variance
    from vipaint_pl.schedule import NoiseSchedule

    sched = NoiseSchedule.linear(1000)
    abar = lambda t: float(sched.alpha(t)) ** 2  # noqa: E731
    t, s = 600, 590
    code = resampling_variance(abar(t), abar(s), 40.0)
    ddpm_posterior = float(sched.sigma(s) ** 2 / sched.sigma(t) ** 2 * (1 - abar(t) / abar(s)))
    assert abs(code - 40.0 * ddpm_posterior) < 1e-9 * code  # the authors' code: gamma x the DDPM posterior variance
    paper = resampling_variance(abar(t), abar(s), 40.0, "paper")
    assert abs(paper / code - (1 - abar(t)) / abar(t)) < 1e-9
    assert ReSampleConfig().variance == "code"
