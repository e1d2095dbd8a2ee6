"""DAPS on the Gaussian-mixture oracle, and its pieces against closed forms."""

import torch

from vipaint_pl.methods.daps import DAPSConfig, VEDenoiser, daps_sample, edm_sigmas
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.rng import QueryNoise


def test_the_annealing_grid_is_edm_poly7_ending_at_zero():
    sigmas = edm_sigmas(100.0, 0.1, 200)
    assert len(sigmas) == 201 and abs(sigmas[0] - 100.0) < 1e-9 and sigmas[-1] == 0.0
    assert all(a > b for a, b in zip(sigmas[:-1], sigmas[1:]))
    assert abs(sigmas[-2] - (100 ** (1 / 7) + 199 / 200 * (0.1 ** (1 / 7) - 100 ** (1 / 7))) ** 7) < 1e-12


def test_the_ve_denoiser_is_the_exact_posterior_mean_on_a_gaussian():
    """x = x_0 + sigma n with x_0 ~ N(m, I) (one mixture component): E[x_0 | x] = (x + sigma^2 m) / (1 + sigma^2)."""
    from vipaint_pl.priors.gmm import GaussianMixturePrior

    mean = torch.full((1, 4), 2.0, dtype=torch.float64)
    prior = GaussianMixturePrior(torch.ones(1, dtype=torch.float64), mean, torch.eye(4, dtype=torch.float64)[None])
    denoise = VEDenoiser(prior)
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    sigma = float(denoise.ve_sigma[400])
    torch.testing.assert_close(denoise(x, sigma), (x + sigma**2 * mean) / (1 + sigma**2), rtol=1e-6, atol=1e-6)


def test_daps_is_close_to_the_exact_posterior_with_the_true_noise_level(problem):
    prior, op, y, exact = problem
    cfg = DAPSConfig(steps=50, mc_steps=30, tau=0.5, step=0.5)
    xs = daps_sample(prior, op, y, QueryNoise(0, ["q"], "daps", 500), cfg)
    prior_sw = sliced_wasserstein(prior.sample(500, torch.Generator().manual_seed(1)), exact)
    assert sliced_wasserstein(xs, exact) < 0.1 * prior_sw
    std_ratio = xs[:, [0, 1, 4, 5]].std(0) / exact[:, [0, 1, 4, 5]].std(0)
    assert (0.6 < std_ratio).all() and (std_ratio < 1.5).all(), std_ratio


def test_the_closed_form_target_score_on_pixel_priors_is_the_autograd_gradient():
    """Step 2's gradient without autograd (pixel priors) equals autograd's through an identity decoder, for a
    mask and a dense operator, in float64."""
    from types import SimpleNamespace

    from vipaint_pl.methods.daps import target_score
    from vipaint_pl.operators import Inpainting, random_dense_operator

    g = torch.Generator().manual_seed(3)
    mask = (torch.rand(1, 1, 6, 6, generator=g) > 0.5).double()
    cases = [(Inpainting(mask).double(), (4, 1, 6, 6)), (random_dense_operator(12, 3, seed=2).double(), (4, 12))]
    for op, shape in cases:
        x, x0hat = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(2))
        y = op(torch.randn(shape, generator=g, dtype=torch.float64))
        pixel = SimpleNamespace(is_latent=False, decode=lambda v: v)
        through_decoder = SimpleNamespace(is_latent=True, decode=lambda v: v)
        closed = target_score(pixel, op, y, x, x0hat, 0.7, 0.3)
        torch.testing.assert_close(closed, target_score(through_decoder, op, y, x, x0hat, 0.7, 0.3))
        assert closed.shape == x.shape and closed.abs().max() > 1


def test_unset_settings_are_the_authors_for_the_prior_kind():
    pixel, latent = DAPSConfig().resolved(False, 0.0), DAPSConfig().resolved(True, 0.05)
    assert (pixel.mc_steps, pixel.mc_algo, pixel.tau, pixel.step * pixel.tau**2) == (100, "langevin", 0.01, 0.5e-4)
    assert (latent.mc_steps, latent.mc_algo, latent.momentum, latent.tau) == (15, "hmc", 0.74, 0.05)
    assert DAPSConfig(mc_steps=3).resolved(True, 0.0).mc_steps == 3


class _Zeros:
    """A noise stream that draws zeros: the chains' means."""

    def like(self, x):
        return torch.zeros_like(x)


def test_the_closed_form_langevin_chain_has_the_law_of_its_steps():
    """Step 2 on a pixel prior in closed form (one draw) against the chain's own N steps, in float64: the mean is the
    steps' run without noise, and the covariance the steps' recursion C <- M C M^T + 2 lr I, M = I - lr P; for a
    mask and a dense operator, with a step large enough that the chain has not mixed (and a sign-alternating one)."""
    from types import SimpleNamespace

    from vipaint_pl.methods.daps import exact_langevin, posterior_mcmc
    from vipaint_pl.operators import Inpainting, random_dense_operator

    g = torch.Generator().manual_seed(5)
    mask = (torch.rand(1, 1, 3, 3, generator=g) > 0.5).double()
    pixel = SimpleNamespace(is_latent=False)
    dense = random_dense_operator(7, 3, seed=4).double()
    for op, shape in [(Inpainting(mask).double(), (1, 1, 3, 3)), (dense, (1, 7))]:
        assert op.knows_gram
        d = torch.Size(shape).numel()
        x0hat = torch.randn(shape, generator=g, dtype=torch.float64)
        y = op(torch.randn(shape, generator=g, dtype=torch.float64))
        for lr, steps in [(0.02, 12), (0.2, 7)]:
            cfg = DAPSConfig(mc_steps=steps, tau=0.4, mc_algo="langevin")
            mean = exact_langevin(pixel, op, y, x0hat, 0.8, lr, _Zeros(), cfg)
            torch.testing.assert_close(mean, posterior_mcmc(pixel, op, y, x0hat, 0.8, lr, _Zeros(), cfg))
            a_mat = op.as_matrix(shape[1:])
            m = torch.eye(d, dtype=torch.float64) - lr * (a_mat.T @ a_mat / 0.4**2 + torch.eye(d) / 0.8**2)
            cov = torch.zeros(d, d, dtype=torch.float64)
            for _ in range(steps):
                cov = m @ cov @ m.T + 2 * lr * torch.eye(d, dtype=torch.float64)
            basis = SimpleNamespace(like=lambda x: torch.eye(d, dtype=torch.float64).reshape(d, *shape[1:]))
            spread = exact_langevin(pixel, op, y.expand(d, *y.shape[1:]), x0hat.expand(d, *shape[1:]), 0.8, lr,
                                    basis, cfg) - mean
            root = spread.reshape(d, d)  # row i: the noise map applied to e_i (the map is symmetric)
            torch.testing.assert_close(root.T @ root, cov)
            if op is dense:  # a covariance with correlations between coordinates
                assert (cov - cov.diagonal().diag()).abs().max() > 1e-3


def test_daps_on_a_pixel_prior_takes_the_closed_form_only_where_it_is_exact():
    from vipaint_pl.operators import GaussianBlur, Inpainting, SuperResolution

    assert Inpainting(torch.ones(4, 4)).knows_gram
    assert not SuperResolution(2).knows_gram and not GaussianBlur().knows_gram
