import math

import pytest
import torch

from vipaint_pl.operators import DenseLinear, Inpainting, random_dense_operator
from vipaint_pl.priors.gmm import GaussianMixturePrior, grid_mixture_prior


def _random_prior(d=3, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    L = torch.randn(n, d, d, generator=g, dtype=torch.float64) * 0.5
    covs = L @ L.transpose(-1, -2) + 0.3 * torch.eye(d, dtype=torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.2
    return GaussianMixturePrior(w, means, covs)


@pytest.mark.parametrize("t", [50, 400, 900])
def test_score_matches_finite_differences_of_the_noisy_marginal(t):
    prior = _random_prior()
    z = torch.randn(6, 3, dtype=torch.float64) * 2
    noisy = prior.marginal(t)  # the exact p_t, by its closed form
    h = 1e-5
    fd = torch.stack([(noisy.log_prob(z + h * e) - noisy.log_prob(z - h * e)) / (2 * h)
                      for e in torch.eye(3, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(prior.score(z, t), fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [10, 500])
def test_denoiser_satisfies_tweedie(t):
    prior = _random_prior()
    z = torch.randn(6, 3, dtype=torch.float64)
    a, s = prior.schedule.alpha(t), prior.schedule.sigma(t)
    tweedie = (z + s**2 * prior.score(z, t)) / a
    torch.testing.assert_close(prior.posterior_mean(z, t), tweedie, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(prior.predict_x0(z, t), tweedie, rtol=1e-8, atol=1e-8)


def test_posterior_mean_matches_grid_quadrature():
    # E[x | z_t] = int x p(x) N(z_t; a x, s^2 I) dx / int p(x) N(z_t; a x, s^2 I) dx, on a fine 2-D grid.
    prior = _random_prior(d=2, n=3)
    t = 300
    a, s = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    u = torch.linspace(-15, 15, 801, dtype=torch.float64)
    grid = torch.cartesian_prod(u, u)
    z0 = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    logw = prior.mixture.log_prob(grid) - ((z0 - a * grid) ** 2).sum(1) / (2 * s**2)
    w = torch.softmax(logw, 0)
    torch.testing.assert_close(prior.posterior_mean(z0, t)[0], (w[:, None] * grid).sum(0), atol=1e-6, rtol=0)


def _importance_posterior(prior, A, y, sigma_y, n=400_000, seed=5):
    g = torch.Generator().manual_seed(seed)
    x = prior.mixture.sample(n, g)
    logw = -((x @ A.T - y) ** 2).sum(1) / (2 * sigma_y**2)
    w = torch.softmax(logw, 0)
    mean = (w[:, None] * x).sum(0)
    cov = ((x - mean).T * w) @ (x - mean)
    return mean, cov


def test_exact_posterior_matches_importance_sampling_in_2d():
    prior = _random_prior(d=2, n=3, seed=2)
    A = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    op = DenseLinear(A)
    sigma_y = 0.5
    y = torch.tensor([1.5], dtype=torch.float64)
    post = prior.exact_posterior(op, y, sigma_y)
    mean, cov = _importance_posterior(prior, A, y, sigma_y)
    exact_mean = post.mean()
    exact_cov = (post.weights[:, None, None] * (post.covs + (post.means - exact_mean)[:, :, None]
                                                * (post.means - exact_mean)[:, None, :])).sum(0)
    torch.testing.assert_close(exact_mean, mean, atol=0.03, rtol=0)
    torch.testing.assert_close(exact_cov, cov, atol=0.05, rtol=0)


def test_exact_posterior_component_weights_match_importance_sampling():
    prior = grid_mixture_prior(2, seed=1)
    op = DenseLinear(torch.tensor([[1.0, 0.0]], dtype=torch.float64))  # observe the first coordinate
    y, sigma_y = torch.tensor([4.0], dtype=torch.float64), 1.0
    post = prior.exact_posterior(op, y, sigma_y)
    g = torch.Generator().manual_seed(0)
    idx = torch.multinomial(prior.mixture.weights, 400_000, replacement=True, generator=g)
    x = prior.mixture.means[idx] + torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    w = torch.softmax(-((x[:, 0] - 4.0) ** 2) / 2, 0)
    mc = torch.zeros(25, dtype=torch.float64).index_add_(0, idx, w)
    torch.testing.assert_close(post.weights, mc, atol=0.01, rtol=0)


def test_exact_posterior_for_inpainting_pins_observed_coordinates():
    prior = grid_mixture_prior(4, seed=0)
    mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    op = Inpainting(mask.view(1, 1, 4))
    prior4 = GaussianMixturePrior(prior.mixture.weights, prior.mixture.means, prior.mixture.covs,
                                  event_shape=(1, 1, 4))
    x = prior4.sample(1, torch.Generator().manual_seed(0))
    y = op(x)
    post = prior4.exact_posterior(op, y, 1e-3)
    s = post.sample(1000, torch.Generator().manual_seed(1))
    assert (s[:, [0, 2]] - x.reshape(-1)[[0, 2]]).abs().max() < 0.01


def test_grid_prior_matches_published_recipe():
    prior = grid_mixture_prior(8, seed=0)
    assert prior.mixture.means.shape == (25, 8)
    assert set(prior.mixture.means[:, 0].tolist()) == {-16.0, -8.0, 0.0, 8.0, 16.0}
    torch.testing.assert_close(prior.mixture.means[:, 2], prior.mixture.means[:, 0])
    torch.testing.assert_close(prior.mixture.covs[3], torch.eye(8, dtype=torch.float64))
    assert math.isclose(float(prior.mixture.weights.sum()), 1.0)


def test_dense_operator_has_requested_singular_values():
    op = random_dense_operator(8, 3, seed=4)
    s = torch.linalg.svdvals(op.matrix)
    assert (s <= 1).all() and (s >= 0).all() and torch.all(s[:-1] >= s[1:])


def test_prior_sampling_matches_mixture_moments():
    prior = _random_prior(d=2, n=3)
    x = prior.sample(200_000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(x.mean(0), prior.mixture.mean(), atol=0.05, rtol=0)


def test_shape_errors():
    prior = _random_prior(d=3)
    with pytest.raises(ValueError, match="expected samples of shape"):
        prior.predict_eps(torch.zeros(2, 4), 10)
    with pytest.raises(ValueError, match="operator produces"):
        prior.exact_posterior(DenseLinear(torch.eye(3, dtype=torch.float64)), torch.zeros(2), 0.1)


def test_isotropic_fast_path_matches_the_general_eigenbasis_path():
    prior = grid_mixture_prior(6, seed=2)
    scales = torch.linspace(0.5, 2.0, 25, dtype=torch.float64)
    fast = GaussianMixturePrior(prior.mixture.weights, prior.mixture.means,
                                scales[:, None, None] * torch.eye(6, dtype=torch.float64))
    slow = GaussianMixturePrior(fast.mixture.weights, fast.mixture.means, fast.mixture.covs)
    slow._isotropic = False  # the eigenbasis path, as for any covariance
    assert fast._isotropic
    z = torch.randn(5, 6, dtype=torch.float64) * 6
    for t in (0, 300, 900):
        torch.testing.assert_close(fast.score(z, t), slow.score(z, t))
        torch.testing.assert_close(fast.posterior_mean(z, t), slow.posterior_mean(z, t))
