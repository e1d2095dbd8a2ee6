"""VIPaint against ground truth: closed-form bound pieces and the exact Gaussian-mixture posterior."""

import math

import pytest
import torch

from vipaint_pl.errors import ConfigError
from vipaint_pl.methods import run_method
from vipaint_pl.methods.time_grids import hierarchy_times
from vipaint_pl.methods.vipaint import BoundConfig, VIPaintConfig, diffusion_loss
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.operators import DenseLinear
from vipaint_pl.priors.gmm import GaussianMixturePrior, grid_mixture_prior


def test_diffusion_loss_bounds_the_exact_marginal_of_a_gaussian_prior():
    # Prior N(0, I) in d=2: p(z_Te) = N(0, I) for every Te (variance preserving), so -log p is exact.
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    te, n_noise = 400, 64
    n = prior.num_train_timesteps - 1 - te
    z_e = torch.tensor([[0.7, -1.2]], dtype=torch.float64)
    u = ((torch.arange(n, dtype=torch.float64) + 0.5) / n).repeat_interleave(n_noise)  # every t, many noises
    g = torch.Generator().manual_seed(0)
    losses = diffusion_loss(prior, z_e.expand(u.numel(), -1), te, u, torch.randn(u.numel(), 2, generator=g,
                                                                                 dtype=torch.float64))
    bound = float(losses.mean())
    exact = float(0.5 * (z_e**2).sum() + math.log(2 * math.pi))
    assert bound >= exact - 0.05  # a bound ...
    assert bound <= exact + 0.1  # ... and a tight one for an exact denoiser


def test_diffusion_terms_kept_coefficients_are_the_forward_bridge_and_the_ddpm_step():
    from vipaint_pl.methods.vipaint.diffusion_term import DIFFUSION_COEFFICIENTS, _diffusion_coefficients
    from vipaint_pl.schedule import NoiseSchedule, bridge, transition

    sched, te = NoiseSchedule.linear(1000), 400
    table = _diffusion_coefficients(sched, te, 1000)
    assert set(table) == set(DIFFUSION_COEFFICIENTS) and all(v.shape == (599,) for v in table.values())
    z_t, z_e, x0 = (torch.tensor([[v]], dtype=torch.float64) for v in (0.3, -1.1, 0.8))
    for t in (te + 1, te + 7, 999):
        c = {k: float(v[t - te - 1]) for k, v in table.items()}
        # q(z_{t-1} | z_t, z_Te): the forward chain from Te conditioned on both ends (an independent formula)
        mean, std = bridge(sched, z_t, z_e, te, t - 1, t)
        assert float(mean) == pytest.approx(c["a_s"] * float(z_e) + c["gain"] * (float(z_t) - c["a_t"] * float(z_e)),
                                            abs=1e-12)
        assert float(std) == pytest.approx(c["q_std"] if t - 1 > te else 0.0, abs=1e-6)  # 1e-12 floor at t - 1 = Te
        # p(z_{t-1} | z_t) = the DDPM step with x0; z_t | z_Te's width (App. B.1)
        mean, std = transition(sched, z_t, x0, t - 1, t, eta=1.0)
        assert float(mean) == pytest.approx(c["c_x"] * float(x0) + c["c_eps"] * float(z_t), abs=1e-12)
        assert float(std) == pytest.approx(c["p_std"], abs=1e-12)
        assert c["sd_t"] ** 2 == pytest.approx(float(sched.sigma(t)) ** 2 - c["a_t"] ** 2 * float(sched.sigma(te)) ** 2)
        assert (c["alpha"], c["sigma"]) == (float(sched.alpha(t)), float(sched.sigma(t)))  # Tweedie's, exactly


def test_hierarchy_times_validation():
    assert hierarchy_times(2) == [550, 400]
    assert hierarchy_times(4) == [550, 500, 450, 400]
    assert hierarchy_times(2, num_train_timesteps=100) == [55, 40]
    with pytest.raises(ConfigError, match="K >= 1"):
        hierarchy_times(0)
    with pytest.raises(ConfigError, match="Te > Ts"):
        hierarchy_times(2, [400, 550])
    with pytest.raises(ConfigError, match="need 2 times"):
        hierarchy_times(2, [500])
    with pytest.raises(ConfigError, match="BoundConfig.likelihood must be one of"):
        BoundConfig(likelihood="cauchy")


def test_snr_matched_times_give_the_data_the_relative_width_unit_data_has_at_the_official_times():
    # x0 ~ N(0, s^2): Var[x0 | z_t] / s^2 = 1 / (1 + s^2 SNR(t)) (closed form, float64). The matched times give data of
    # standard deviation s the relative width that unit-variance data has at the official times [550, 400].
    schedule = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2)).schedule
    a2 = schedule.alphas_cumprod.double()
    snr = a2 / (1 - a2)
    for s in (0.3, 0.64, 2.0):
        matched = hierarchy_times(2, None, 1000, schedule, s)
        assert matched[0] > matched[1] and (matched < [550, 400]) == (s < 1)
        for t, t_s in zip([550, 400], matched):
            assert abs(float(1 / (1 + s**2 * snr[t_s]) - 1 / (1 + snr[t]))) < 0.005  # official times: up to 0.17 off
    assert hierarchy_times(2, None, 1000, schedule, 1.0) == [550, 400]
    assert hierarchy_times(2, [500, 300], 1000, schedule, 0.5) == [500, 300]  # given times are kept as given
    with pytest.raises(ConfigError, match="data_std"):
        hierarchy_times(2, None, 1000, schedule, 0.0)


def _oracle_problem(d=8, sigma_y=0.5, seed=3):
    prior = grid_mixture_prior(d, seed=0)
    op = DenseLinear(torch.eye(d)[[0, 1, 4, 5]])
    x = prior.sample(1, torch.Generator().manual_seed(seed))
    y = op.measure(x, sigma_y, torch.Generator().manual_seed(seed + 1))
    return prior, op, y, prior.exact_posterior(op, y, sigma_y)


@pytest.mark.parametrize("k", [1, 2])
def test_vipaint_beats_prior_and_replacement_on_the_exact_posterior(k):
    prior, op, y, post = _oracle_problem()
    losses = []
    cfg = VIPaintConfig.from_dict({"k": k, "fit_steps": 150,
                                   "bound": {"likelihood": "gaussian", "likelihood_scale": 0.5, "mc_samples": 8},
                                   "sampling": {"steps": 40, "eta": 1.0, "dps_step_size": 0.5}})
    n = 1000
    xs = run_method("vipaint", prior, op, y, n, config=cfg,
                    callback=lambda step, info: "terms" in info and losses.append(float(info["terms"]["loss"].sum())))
    exact = post.sample(10_000, torch.Generator().manual_seed(5)).float()
    prior_samples = prior.sample(n, torch.Generator().manual_seed(9))
    replaced = prior_samples.clone()
    replaced[:, [0, 1, 4, 5]] = y.float()  # naive replacement of the observed coordinates
    sw = lambda s: sliced_wasserstein(s, exact, projections=100)  # noqa: E731  mean-sliced W2
    assert sw(xs) < 0.25 * sw(replaced) < sw(prior_samples)
    assert sum(losses[-20:]) < sum(losses[:20])  # the bound decreases
    # observed coordinates follow y: the sample mean there matches the exact posterior mean (std 0.45)
    assert (xs[:, [0, 1, 4, 5]].mean(0) - post.mean()[[0, 1, 4, 5]].float()).abs().max() < 0.3


@pytest.mark.parametrize("sigma_y", [0.1, 0.5])
def test_tweedie_guided_sampler_keeps_the_exact_posterior_width_on_a_gaussian_prior(sigma_y):
    from vipaint_pl.methods.guidance import tweedie_guided_reverse_diffusion
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 6), torch.ones(1, 6))  # N(0, I): exact r_t
    op = DenseLinear(torch.eye(6, dtype=torch.float64)[:3])
    y = torch.tensor([[1.0, -0.5, 2.0]], dtype=torch.float64)
    noise = QueryNoise(0, ["q"], "tweedie", 4000)
    z = noise.randn((6,), y)
    xs = tweedie_guided_reverse_diffusion(prior, z, 999, noise, 200, 1.0, op, noise.repeat(y), sigma_y)
    post_var = 1 / (1 + 1 / sigma_y**2)  # observed coordinates; the others keep the prior's N(0, 1)
    ratio = xs.std(0) / torch.tensor([post_var**0.5] * 3 + [1.0] * 3, dtype=torch.float64)
    assert ((ratio > 0.8) & (ratio < 1.25)).all(), ratio  # measured 0.86-1.00 (sigma_y 0.1), 0.97-1.03 (0.5)
    torch.testing.assert_close(xs[:, :3].mean(0), post_var / sigma_y**2 * y[0], atol=0.05, rtol=0)


def test_tweedie_guided_sampler_with_the_jacobian_width_keeps_the_exact_posterior_for_data_of_any_variance():
    # N(0, 0.2 I), as pixel digits (0.18): with ``x_var="jacobian"`` each step's likelihood is the exact p(y | z_t) and the
    # observed coordinates come out at the exact posterior's mean and width; the unit-data width (sigma_t^2, 5x too wide
    # early on) holds them to y too loosely: their mean falls short of the exact one
    from vipaint_pl.methods.guidance import tweedie_guided_reverse_diffusion
    from vipaint_pl.rng import QueryNoise

    v, sigma_y = 0.2, 0.2
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 6), torch.full((1, 6), v))
    op = DenseLinear(torch.eye(6, dtype=torch.float64)[:3])
    y = torch.tensor([[1.0, -0.5, 1.5]], dtype=torch.float64)
    post_var = 1 / (1 / v + 1 / sigma_y**2)
    exact_std = torch.tensor([post_var**0.5] * 3 + [v**0.5] * 3, dtype=torch.float64)
    errors = {}
    for x_var in ("jacobian", "unit-data"):
        noise = QueryNoise(0, ["q"], x_var, 4000)
        xs = tweedie_guided_reverse_diffusion(prior, noise.randn((6,), y), 999, noise, 200, 1.0, op, noise.repeat(y),
                                              sigma_y, x_var=x_var)
        errors[x_var] = (float((xs.std(0) / exact_std - 1).abs().max()),
                         float((xs[:, :3].mean(0) - post_var / sigma_y**2 * y[0]).abs().max()))
    # measured: width within 0.094 (the plug-in steps' narrowing at 200 steps), mean 0.005; unit-data's mean 0.128 off
    assert errors["jacobian"][0] < 0.15 and errors["jacobian"][1] < 0.05, errors
    assert errors["unit-data"][1] > 0.1, errors


@pytest.mark.parametrize("operator", ["inpainting", "dense"])
def test_tweedie_sampler_with_the_x0_variance_is_exact_on_a_unit_gaussian_prior(operator):
    """``variance="unit-data"``: every step integrates x0 out under the unit-Gaussian model (the operator's exact
    conditional). On a N(0, I) prior that model is true, so 20 DDPM steps give the exact posterior's mean and
    covariance; the plug-in steps are narrower, with the right mean (both take A A^T from the operator)."""
    from vipaint_pl.methods.guidance import tweedie_guided_reverse_diffusion
    from vipaint_pl.operators import random_dense_operator
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 6), torch.ones(1, 6))
    op, sigma_y = ((DenseLinear(torch.eye(6, dtype=torch.float64)[:3]), 0.05) if operator == "inpainting"
                   else (random_dense_operator(6, 2, seed=1), 0.2))
    y = op(torch.ones(1, 6, dtype=torch.float64)) + 0.3
    A = op.matrix
    cov = torch.linalg.inv(torch.eye(6, dtype=torch.float64) + A.T @ A / sigma_y**2)
    mean = cov @ A.T @ y[0] / sigma_y**2
    errors = {}
    for variance in ("plug-in", "unit-data"):
        noise = QueryNoise(0, ["q"], "tweedie", 8000)
        xs = tweedie_guided_reverse_diffusion(prior, noise.randn((6,), y), 999, noise, 20, 1.0, op, noise.repeat(y),
                                              sigma_y, variance=variance)
        std_ratio = torch.cov(xs.T).diagonal().sqrt() / cov.diagonal().sqrt()
        errors[variance] = (float((std_ratio - 1).abs().max()), float((xs.mean(0) - mean).abs().max()))
    assert errors["unit-data"][0] < 0.06 and errors["unit-data"][1] < 0.05, errors  # Monte Carlo noise only
    assert errors["plug-in"][0] > 0.1 and errors["plug-in"][1] < 0.05, errors


@pytest.mark.parametrize("operator", ["inpainting", "dense"])
def test_tweedie_reconstruction_is_the_exact_likelihood_of_z_ts_on_a_unit_gaussian_prior(operator):
    """``reconstruction: tweedie`` is -log p(y | z_Ts) up to a constant on a N(0, I) prior, where
    y | z_t ~ N(A alpha_t z_t, sigma_y^2 I + sigma_t^2 A A^T) exactly (float64 reference, several z_Ts)."""
    from vipaint_pl.methods.vipaint import reconstruction_loss
    from vipaint_pl.operators import random_dense_operator

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 6), torch.ones(1, 6))
    op, sigma_y = ((DenseLinear(torch.eye(6, dtype=torch.float64)[:3]), 0.05) if operator == "inpainting"
                   else (random_dense_operator(6, 2, seed=1), 0.2))
    y = op(torch.ones(1, 6, dtype=torch.float64)) + 0.3
    t = 400
    alpha, sigma = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cfg = BoundConfig(likelihood="gaussian", likelihood_scale=sigma_y, reconstruction="tweedie")
    nll = reconstruction_loss(op, prior.decode(prior.predict_x0(z, t)), y.expand(5, -1), cfg, sigma_ts=sigma)
    A = op.matrix
    exact = torch.distributions.MultivariateNormal(alpha * z @ A.T, sigma_y**2 * torch.eye(len(A), dtype=A.dtype)
                                                   + sigma**2 * A @ A.T)
    gap = nll + exact.log_prob(y.expand(5, -1))
    torch.testing.assert_close(gap, gap[:1].expand(5), rtol=0, atol=1e-9)


@pytest.mark.parametrize("operator", ["inpainting", "dense"])
def test_tweedie_reconstruction_with_the_jacobian_width_is_exact_for_data_of_any_variance(operator):
    """``tweedie_variance: jacobian``: on N(0, v I), v = 0.2, y | z_t ~ N(A E[x0 | z_t], sigma_y^2 I + r_t^2 A A^T) with
    r_t^2 = v sigma_t^2 / (alpha_t^2 v + sigma_t^2) exactly; the bound's term equals -log p(y | z_Ts) up to a constant,
    with or without a graph from z to x0 (float64). The unit-data width (sigma_t^2) is not."""
    from vipaint_pl.methods.vipaint.bound import reconstruction_loss, tweedie_x_variance
    from vipaint_pl.operators import random_dense_operator
    from vipaint_pl.rng import QueryNoise

    v, t = 0.2, 400
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 6), torch.full((1, 6), v))
    op, sigma_y = ((DenseLinear(torch.eye(6, dtype=torch.float64)[:3]), 0.05) if operator == "inpainting"
                   else (random_dense_operator(6, 2, seed=1), 0.2))
    y = (op(torch.ones(1, 6, dtype=torch.float64)) + 0.3).expand(5, -1)
    alpha, sigma = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    A, r2 = op.matrix, v * sigma**2 / (alpha**2 * v + sigma**2)
    exact = torch.distributions.MultivariateNormal(alpha * v / (alpha**2 * v + sigma**2) * z @ A.T,
                                                   sigma_y**2 * torch.eye(len(A), dtype=A.dtype) + r2 * A @ A.T)
    cfg = BoundConfig(likelihood="gaussian", likelihood_scale=sigma_y, reconstruction="tweedie",
                      tweedie_variance="jacobian")
    noise = QueryNoise(0, ["q"], "test", per_query=5)
    for graph in (True, False):
        zz = z.clone().requires_grad_(graph)
        x0 = prior.predict_x0(zz, t)
        x_var = tweedie_x_variance(prior, op, zz, x0, prior.decode(x0), t, noise)
        torch.testing.assert_close(x_var, torch.full((5,), r2, dtype=torch.float64))
        gap = reconstruction_loss(op, prior.decode(x0), y, cfg, sigma_ts=sigma, x_var=x_var) + exact.log_prob(y)
        torch.testing.assert_close(gap, gap[:1].expand(5), rtol=0, atol=1e-7)
    unit = reconstruction_loss(op, prior.decode(x0), y, cfg, sigma_ts=sigma) + exact.log_prob(y)
    assert float((unit - unit[0]).abs().max()) > 1e-3


def test_paper_weighting_has_the_official_ratio_of_terms():
    from vipaint_pl.methods.vipaint import PAPER_BETA, PAPER_L1_SCALE, init_posterior, vipaint_bound
    from vipaint_pl.rng import QueryNoise

    prior, op, y, _ = _oracle_problem()
    cfg = VIPaintConfig.from_dict({"k": 2, "bound": {"weighting": "paper", "mc_samples": 3}})
    noise = QueryNoise(0, ["q"], "vipaint", 3)
    post = init_posterior(prior, op, y, noise, cfg)
    terms = vipaint_bound(prior, post, op, y, torch.arange(1), noise.stream("fit/0"), cfg.bound)
    again = init_posterior(prior, op, y, noise, cfg)
    _, z, _ = again.sample(prior, torch.zeros(3, dtype=torch.long), noise.stream("fit/0"))
    x0 = prior.predict_x0(z, post.times[-1])
    l1 = (op(x0) - y).abs().sum(1).mean() / PAPER_L1_SCALE  # summed L1 over 1 / (2 * 0.566^2 * 1000)
    torch.testing.assert_close(terms["reconstruction"][0], l1.to(terms["reconstruction"].dtype))
    d, te = 8, post.times[0]
    expected = l1 + PAPER_BETA / d * (terms["hierarchical_kl"][0] + (1000 - te) / 2 / (999 - te) * terms["diffusion"][0])
    torch.testing.assert_close(terms["loss"][0], expected.to(terms["loss"].dtype))


def test_a_two_component_mixture_covers_both_modes_and_tightens_the_bound():
    """1-D prior with two well-separated modes and an observation that cannot tell them apart (y = |x|-like:
    A = 0 in the deciding direction): the exact posterior puts half its mass on each mode. One Gaussian
    hierarchy covers one mode; a mixture of two covers both and its bound is higher by about log 2."""
    prior = GaussianMixturePrior(torch.tensor([0.5, 0.5]), torch.tensor([[-6.0, 0.0], [6.0, 0.0]]),
                                 torch.ones(2, 2))
    op = DenseLinear(torch.tensor([[0.0, 1.0]], dtype=torch.float64))  # sees the second coordinate only
    y = torch.tensor([[0.3]], dtype=torch.float64)
    op.sigma_y = 0.5
    base = {"k": 1, "times": [300], "fit_steps": 200,
            "bound": {"likelihood": "gaussian", "likelihood_scale": None, "mc_samples": 16},
            "sampling": {"steps": 30, "eta": 1.0, "guidance": "tweedie"}, "optim": {"lr_weights": 0.5}}
    bounds, covered = {}, {}
    for m in (1, 2):
        cfg = VIPaintConfig.from_dict(base | {"components": m, "init": {"start": "guided"}})
        losses = []
        xs = run_method("vipaint", prior, op, y, 400, seed=1, config=cfg,
                        callback=lambda step, info: "terms" in info and losses.append(float(info["terms"]["loss"])))
        bounds[m] = -sum(losses[-50:]) / 50
        covered[m] = float((xs[:, 0] > 0).double().mean())
    assert 0.3 < covered[2] < 0.7, covered  # both modes, near their exact 1/2 each (measured 0.48)
    assert covered[1] < 0.05 or covered[1] > 0.95, covered  # one Gaussian: one mode
    assert 0.3 < bounds[2] - bounds[1] < 1.0, bounds  # log 2 = 0.69 for disjoint modes; measured 0.56


@pytest.mark.parametrize("changes", [{"gamma_per_element": True}, {"hierarchy_eta": 0.447},
                                     {"components": 2, "gamma_per_element": True},
                                     {"hierarchy_variance": "unit-data", "components": 2}])
def test_official_variants_of_the_hierarchy_fit_and_sample(changes):
    prior, op, y, post = _oracle_problem()
    cfg = VIPaintConfig.from_dict({"k": 2, "fit_steps": 30, "bound": {"likelihood": "gaussian", "likelihood_scale": 0.5},
                                   "sampling": {"steps": 20, "eta": 1.0}} | changes)
    xs = run_method("vipaint", prior, op, y, 200, config=cfg)
    exact = post.sample(2000, torch.Generator().manual_seed(5)).float()
    prior_sw = sliced_wasserstein(prior.sample(200, torch.Generator().manual_seed(9)), exact)
    assert torch.isfinite(xs).all() and sliced_wasserstein(xs, exact) < 0.3 * prior_sw


def test_component_bounds_weigh_the_modes_as_the_exact_posterior_does():
    """Two mirror-image components, one in each mode of a posterior whose modes the observation cannot tell
    apart: the exact posterior weighs them as the prior does (0.2 / 0.8). softmax(-bound_m), the weights of
    ``sampling.component_weights: bound``, must give the same; the learned logits (left at 0) give 0.5 / 0.5."""
    from vipaint_pl.methods.vipaint import component_bounds, init_posterior
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.tensor([0.2, 0.8]), torch.tensor([[-6.0, 0.0], [6.0, 0.0]]), torch.ones(2, 2))
    op = DenseLinear(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    y = torch.tensor([[0.3]], dtype=torch.float64)
    op.sigma_y = 0.5
    exact = prior.exact_posterior(op, y, 0.5).weights
    cfg = VIPaintConfig.from_dict({"k": 2, "times": [300, 200], "components": 2,
                                   "bound": {"likelihood": "gaussian", "likelihood_scale": None, "mc_samples": 16}})
    noise = QueryNoise(0, ["q"], "vipaint")
    post = init_posterior(prior, op, y, noise, cfg)
    with torch.no_grad():  # component m centred on mode m at every level (alpha_t x its mean), the same widths
        for k, t in enumerate(post.times):
            post.mu[k] = prior.schedule.alpha(t).float() * torch.tensor([[-6.0, 0.3], [6.0, 0.3]])
    bounds = component_bounds(prior, post, op, y, torch.tensor([0]), noise, cfg.bound, samples=256)
    weights = torch.softmax(-bounds.double(), dim=1)[0]
    torch.testing.assert_close(exact, torch.tensor([0.2, 0.8], dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(weights, exact, atol=0.05, rtol=0)


def _two_mode_problem():
    """Two modes the observation cannot tell apart; the exact posterior weighs them as the prior (0.2 / 0.8)."""
    prior = GaussianMixturePrior(torch.tensor([0.2, 0.8]), torch.tensor([[-6.0, 0.0], [6.0, 0.0]]), torch.ones(2, 2))
    op = DenseLinear(torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    y = torch.tensor([[0.3]], dtype=torch.float64)
    op.sigma_y = 0.5
    return prior, op, y


def test_optimal_mixture_weights_share_a_mode_between_duplicate_components():
    """Three components, two of them on the 0.2 mode: each component's own bound counts that mode twice
    (softmax(-bound) gives it 1/3); the weights that maximize the mixture's bound give the two duplicates 0.2
    together, as the exact posterior does."""
    from vipaint_pl.methods.vipaint import component_bounds, init_posterior
    from vipaint_pl.methods.vipaint.bound import component_draws, optimal_mixture_weights
    from vipaint_pl.rng import QueryNoise

    prior, op, y = _two_mode_problem()
    cfg = VIPaintConfig.from_dict({"k": 2, "times": [300, 200], "components": 3,
                                   "bound": {"likelihood": "gaussian", "likelihood_scale": None, "mc_samples": 16}})
    noise = QueryNoise(0, ["q"], "vipaint")
    post = init_posterior(prior, op, y, noise, cfg)
    with torch.no_grad():
        for k, t in enumerate(post.times):
            post.mu[k] = prior.schedule.alpha(t).float() * torch.tensor([[-6.0, 0.3], [-6.0, 0.3], [6.0, 0.3]])
    idx = torch.tensor([0])
    own = torch.softmax(-component_bounds(prior, post, op, y, idx, noise, cfg.bound, samples=256).double(), 1)[0]
    optimal = optimal_mixture_weights(*component_draws(prior, post, op, y, idx, noise, cfg.bound, 256))[0].exp()
    assert float(own[:2].sum()) > 0.3  # the duplicated mode counted twice (exact: 0.2)
    torch.testing.assert_close(optimal[:2].sum(), torch.tensor(0.2, dtype=torch.float64), atol=0.04, rtol=0)
    torch.testing.assert_close(optimal[2], torch.tensor(0.8, dtype=torch.float64), atol=0.04, rtol=0)


def test_optimal_mixture_weights_are_exp_elbo_for_separate_components():
    """Closed form: components that do not overlap (log q_j = -inf off the diagonal) get pi_m proportional to
    exp(ELBO_m), ELBO_m = E_{q_m}[log p(y, z) - log q_m(z)]."""
    from vipaint_pl.methods.vipaint import optimal_mixture_weights

    g = torch.Generator().manual_seed(0)
    energy = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)  # -log p(y, z) of each draw
    own = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)  # log q_m of its own draws
    log_q = torch.full((2, 3, 5, 3), -torch.inf, dtype=torch.float64)
    for m in range(3):
        log_q[:, m, :, m] = own[:, m]
    elbo = -(energy + own).mean(2)
    torch.testing.assert_close(optimal_mixture_weights(energy, log_q), torch.log_softmax(elbo, 1))


def test_tempering_keeps_the_requested_effective_sample_size():
    from vipaint_pl.methods.vipaint.fit import tempered

    log_w = torch.tensor([[0.0, -50.0, -100.0, -150.0, -200.0, -250.0], [0.0, -0.1, -0.2, -0.3, -0.4, -0.5]],
                         dtype=torch.float64)
    out = tempered(log_w, 3.0)
    ess = 1 / torch.softmax(out, 1).pow(2).sum(1)
    assert 2.9 < float(ess[0]) < 3.1  # sharp weights flattened to the target
    torch.testing.assert_close(out[1], log_w[1])  # already above the target: untouched (lambda = 1)


@pytest.mark.parametrize("start", ["resampled", "mixed"])
def test_resampled_starts_reach_both_modes_and_the_optimal_weights_match_the_posterior(start):
    """From prior samples resampled on the likelihood, the components start in both modes of a posterior the
    observation cannot resolve (systematic resampling gives the 0.2 mode 1 or 2 of 8 components), and with the
    optimal weights the samples split as the exact posterior (0.2 / 0.8). "mixed" starts half of them so."""
    prior, op, y = _two_mode_problem()
    cfg = VIPaintConfig.from_dict({"k": 2, "times": [300, 200], "components": 8 if start == "resampled" else 16,
                                   "fit_steps": 60,
                                   "init": {"start": start, "candidates": 32},
                                   "bound": {"likelihood": "gaussian", "likelihood_scale": None, "mc_samples": 8,
                                             "reconstruction": "tweedie", "time_sampling": "importance"},
                                   "sampling": {"steps": 20, "guidance": "tweedie", "component_weights": "optimal",
                                                "score_samples": 256}})
    xs = run_method("vipaint", prior, op, y, 1000, seed=3, config=cfg)
    share = float((xs[:, 0] < 0).double().mean())
    assert 0.1 < share < 0.3, share


def test_importance_sampled_diffusion_term_has_the_uniform_expectation_and_less_variance():
    """Every time enumerated in float64: sum_t r(t) * estimate(t) of the importance-sampled term equals the
    uniform one's (1/n) sum_t estimate(t) for the same z_Te and noise, while its spread over t is far smaller (under 0.3x the
    uniform one's standard deviation)."""
    from vipaint_pl.methods.vipaint.diffusion_term import _time_proposal

    prior = grid_mixture_prior(2, seed=0)
    te = 400
    n = prior.num_train_timesteps - 1 - te
    z_e = torch.tensor([[2.0, -3.0]], dtype=torch.float64).expand(n, -1)
    noise = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64).expand(n, -1)
    u_uniform = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # every time once
    uniform = diffusion_loss(prior, z_e, te, u_uniform, noise)
    cdf = _time_proposal(prior.schedule, te, prior.num_train_timesteps).cumsum(0)
    r = torch.diff(cdf, prepend=torch.zeros(1, dtype=torch.float64))
    u_importance = cdf - r / 2  # the middle of each time's interval: every time once
    importance = diffusion_loss(prior, z_e, te, u_importance, noise, "importance")
    torch.testing.assert_close((r * importance).sum(), uniform.mean(), rtol=1e-6, atol=1e-6)
    spread = lambda est, w: ((w * (est - (w * est).sum()) ** 2).sum()).sqrt()  # noqa: E731
    assert spread(importance, r) < 0.3 * spread(uniform, torch.full_like(r, 1 / n))


def test_terminal_log_ratio_is_the_mixture_marginal_at_T_up_to_a_constant():
    """log p_T(z) - log N(z; 0, I) by the score's line integral (8 Gauss-Legendre nodes) against the closed form of
    a mixture whose modes lie far from the origin (where N(0, I) at T is several nats off): equal up to one
    constant for every z, to 1e-3 nats."""
    from vipaint_pl.methods.vipaint.diffusion_term import terminal_log_ratio

    prior = grid_mixture_prior(64, spacing=40.0, seed=0)
    T = prior.num_train_timesteps - 1
    g = torch.Generator().manual_seed(0)
    a = float(prior.schedule.alpha(T))
    z = torch.randn(12, 64, generator=g, dtype=torch.float64) + a * prior.mixture.means[torch.arange(12) * 2]
    exact = prior.marginal(T).log_prob(z) + 0.5 * (z**2).sum(1) + 32 * math.log(2 * math.pi)
    diff = exact - terminal_log_ratio(prior, z)
    assert float(exact.max() - exact.min()) > 2.0  # the ratio itself varies by nats: the check can fail
    assert float(diff.max() - diff.min()) < 1e-3


def test_score_terminal_removes_the_diffusion_terms_bias_between_modes():
    """-log p_Te(z) of two points in far-apart modes, by the diffusion term with every time enumerated (common
    noises), against the exact marginal: with N(0, I) at T ("standard") the two gaps differ by nats (the corner
    mode is penalized by about alpha_T^2 |m|^2 / 2, 8 nats here); with the prior's own p_T ("score") they agree to
    half a nat (what is left: the DDPM chain's own gap where the modes merge, and the noise of 16 draws a time)."""
    prior = grid_mixture_prior(64, spacing=40.0, seed=0)
    te, n_noise = 550, 16
    n = prior.num_train_timesteps - 1 - te
    a, s = float(prior.schedule.alpha(te)), float(prior.schedule.sigma(te))
    eps = torch.randn(2, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    z_e = a * prior.mixture.means[[0, 12]] + s * eps  # the corner mode (-2, -2) and the centre (0, 0)
    exact = -prior.marginal(te).log_prob(z_e)
    u = ((torch.arange(n, dtype=torch.float64) + 0.5) / n).repeat_interleave(n_noise)
    noise = torch.randn(u.numel(), 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gaps = {}
    for terminal in ("standard", "score"):
        est = torch.stack([diffusion_loss(prior, z.expand(u.numel(), -1), te, u, noise, terminal=terminal).mean()
                           for z in z_e])
        gaps[terminal] = est - exact
    assert float((gaps["standard"][0] - gaps["standard"][1]).abs()) > 5.0
    assert float((gaps["score"][0] - gaps["score"][1]).abs()) < 0.5


@pytest.mark.parametrize("variance", ["plug-in", "unit-data"])
def test_hierarchy_transition_of_unit_gaussian_data_is_exact_with_its_x0_variance(variance):
    """Prior N(0, I) (exact denoiser): p(z_s | z_t) between the levels is N(alpha_{t|s} z_t, 1 - alpha_{t|s}^2).
    "unit-data" gives exactly that width; the paper's plug-in transition is narrower."""
    from vipaint_pl.methods.vipaint import HierarchicalPosterior
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 3), torch.ones(1, 3))
    post = HierarchicalPosterior([550, 400], 1, (3,), variance=variance).double()
    _, _, _, path = post.sample(prior, torch.zeros(4, dtype=torch.long), QueryNoise(0, ["q"], "test", per_query=4), with_path=True)
    (p_mean, p_std, _, _), = path
    a_ts = float(prior.schedule.alpha(550) / prior.schedule.alpha(400))
    exact_std = torch.full_like(p_std, (1 - a_ts**2) ** 0.5)
    if variance == "unit-data":
        torch.testing.assert_close(p_std, exact_std, rtol=1e-6, atol=0)
    else:
        assert (p_std < 0.95 * exact_std).all()


def test_lower_draws_resample_the_lower_level_towards_its_exact_conditional_given_y():
    # Unit Gaussian prior in d = 2 (the transitions with x0's variance are exact), y observes coordinate 0. With
    # z_Te held fixed, p(z_Ts | z_Te, y) = p(z_Ts | z_Te) p(y | z_Ts) / Z is Gaussian in closed form, and the bound's
    # Tweedie reconstruction is the exact p(y | z_Ts). A q(z_Ts | z_Te) that ignores y is off; J lower draws per
    # z_Te with the conditional importance weights bring the samples to the exact conditional.
    from vipaint_pl.methods.vipaint import HierarchicalPosterior, PosteriorSamplingConfig, sample_ts
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    op, sigma_y, y = DenseLinear(torch.eye(2)[[0]]), 0.3, torch.tensor([[1.5]])
    te, ts = 550, 400
    post = HierarchicalPosterior([te, ts], 1, (2,), variance="unit-data")
    z_te = torch.tensor([0.5, -0.3])
    with torch.no_grad():
        post.mu[0, 0], post.log_std[0, 0] = z_te, math.log(1e-6)  # z_Te held (almost) fixed
        post.mu[1, 0], post.log_std[1, 0] = torch.tensor([2.0, 1.0]), math.log(1.2)
        post.gamma.fill_(0.0)  # g = 0.5: q's mean halfway to mu, blind to y
    a_t, a_s = float(prior.schedule.alpha(te)), float(prior.schedule.alpha(ts))
    s_s = float(prior.schedule.sigma(ts))
    m, v = (a_t / a_s) * z_te.double(), 1 - (a_t / a_s) ** 2  # p(z_Ts | z_Te) for unit-variance data
    lik_var = sigma_y**2 + s_s**2  # p(y | z_Ts) = N(y; a_s z_Ts[0], lik_var)
    prec0 = 1 / v + a_s**2 / lik_var
    exact_mean = torch.stack([(m[0] / v + a_s * 1.5 / lik_var) / prec0, m[1]])
    exact_std = torch.tensor([prec0**-0.5, v**0.5], dtype=torch.float64)
    bound = BoundConfig(likelihood="gaussian", likelihood_scale=sigma_y, reconstruction="tweedie")

    def draws(j):
        noise = QueryNoise(0, ["q"], "vipaint", 4000)
        cfg = PosteriorSamplingConfig(lower_draws=j, corrector_steps=0)  # the lower draws alone
        return sample_ts(prior, post, op, y, torch.zeros(1, dtype=torch.long), noise, cfg, bound).double()

    plain, resampled = draws(1), draws(64)
    assert (plain.mean(0) - exact_mean).abs().max() > 0.3  # q alone is off ...
    assert torch.allclose(resampled.mean(0), exact_mean, atol=0.06)  # ... the resampled draws are not
    assert torch.allclose(resampled.std(0), exact_std, rtol=0.08)


def test_corrector_at_every_level_brings_a_misplaced_top_level_closer_to_the_exact_posterior():
    # Unit Gaussian prior in d = 2, y observes coordinate 0, so p(z_Ts | y) has mean 0 in coordinate 1. q's top level
    # sits at -3 there (almost no spread) and its lower level follows the prior's exact transition (gate ~ 1). With 20
    # corrector steps at Ts only, coordinate 1 keeps about a third of the offset it inherits from z_Te; with the
    # corrector at every level, z_Te is moved first and less than half of that offset is left
    from vipaint_pl.methods.vipaint import HierarchicalPosterior, PosteriorSamplingConfig, sample_ts
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    op, y = DenseLinear(torch.eye(2)[[0]]), torch.tensor([[1.5]])
    post = HierarchicalPosterior([550, 400], 1, (2,), variance="unit-data")
    with torch.no_grad():
        post.mu[0, 0], post.log_std[0, 0] = torch.tensor([1.0, -3.0]), math.log(1e-3)
        post.gamma.fill_(20.0)
    bound = BoundConfig(likelihood="gaussian", likelihood_scale=0.3, reconstruction="tweedie")
    offset = {}
    for levels in ("last", "all"):
        cfg = PosteriorSamplingConfig(corrector_steps=20, corrector_levels=levels, corrector_variance="unit-data")
        z = sample_ts(prior, post, op, y, torch.zeros(1, dtype=torch.long), QueryNoise(0, ["q"], "v", 2000), cfg, bound)
        offset[levels] = abs(float(z[:, 1].mean()))
    assert offset["last"] > 0.5 and offset["all"] < 0.5 * offset["last"], offset  # measured 0.64 and 0.25
    with pytest.raises(ConfigError, match="lower_draws"):  # refused with the config, before any fit
        VIPaintConfig.from_dict({"sampling": {"corrector_levels": "all", "lower_draws": 2}})
    with pytest.raises(ConfigError, match="lower_draws"):
        sample_ts(prior, post, op, y, torch.zeros(1, dtype=torch.long), QueryNoise(0, ["q"], "v", 4),
                  PosteriorSamplingConfig(corrector_levels="all", lower_draws=2), bound)
    PosteriorSamplingConfig(corrector_levels="last", lower_draws=2)  # the corrector at Ts only combines with them


def test_corrector_momentum_at_ts_only_leaves_the_upper_levels_overdamped():
    # sampling.corrector_momentum_levels "last": the corrector at the top level runs the overdamped steps (bitwise
    # those of momentum 0), the one at Ts the kinetic steps (not those of momentum 0)
    from vipaint_pl.methods.vipaint import HierarchicalPosterior, PosteriorSamplingConfig, sample_ts
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    op, y = DenseLinear(torch.eye(2)[[0]]), torch.tensor([[1.5]])
    post = HierarchicalPosterior([550, 400], 1, (2,), variance="unit-data")
    bound = BoundConfig(likelihood="gaussian", likelihood_scale=0.3, reconstruction="tweedie")
    steps = {}
    for momentum, where in ((0.0, "all"), (0.8, "all"), (0.8, "last")):
        cfg = PosteriorSamplingConfig(corrector_steps=5, corrector_momentum=momentum, corrector_momentum_levels=where)
        seen = []
        sample_ts(prior, post, op, y, torch.zeros(1, dtype=torch.long), QueryNoise(0, ["q"], "v", 8), cfg, bound,
                  callback=lambda i, info: seen.append(info["z"]))
        steps[momentum, where] = (torch.stack(seen[:5]), torch.stack(seen[5:]))
    (top_0, ts_0), (top_all, _), (top_last, ts_last) = steps.values()
    assert torch.equal(top_last, top_0) and not torch.equal(top_all, top_0)
    assert not torch.equal(ts_last, ts_0)


@pytest.mark.parametrize("operator", ["inpainting", "dense"])
def test_langevin_corrector_reaches_the_exact_p_zt_given_y_on_a_unit_gaussian_prior(operator):
    # Unit Gaussian prior in d = 4: z_t = alpha x0 + sigma eps is N(0, I) and the Tweedie likelihood N(y; A alpha z_t,
    # sigma_y^2 I + sigma_t^2 A A^T) is the exact p(y | z_t), so p(z_t | y) is Gaussian in closed form. From draws
    # started far from it, the corrector's steps (step 0.05 sigma_t^2) reach its mean and covariance; with no steps
    # the draws stay where they started.
    from vipaint_pl.methods.guidance import langevin_corrector
    from vipaint_pl.rng import QueryNoise

    d, t, sigma_y = 4, 400, 0.3
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, d), torch.ones(1, d))
    A = (torch.eye(d, dtype=torch.float64)[:2] if operator == "inpainting"
         else torch.randn(2, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    y = torch.tensor([[1.0, -0.5]], dtype=torch.float64)
    a, s = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    lik_cov = sigma_y**2 * torch.eye(2, dtype=torch.float64) + s**2 * A @ A.T
    precision = torch.eye(d, dtype=torch.float64) + a**2 * A.T @ torch.linalg.solve(lik_cov, A)
    exact_cov = torch.linalg.inv(precision)
    exact_mean = exact_cov @ (a * A.T @ torch.linalg.solve(lik_cov, y[0]))
    noise = QueryNoise(0, ["q"], "test", per_query=4000)
    start = torch.tensor([2.0, -2.0, 1.5, 0.0], dtype=torch.float64).expand(4000, d)

    def run(steps):
        ops = DenseLinear(A).repeat_interleave(4000)
        return langevin_corrector(prior, start, t, ops, y.expand(4000, 2), sigma_y, noise.stream(f"c{steps}"), steps, 0.05)

    stuck, z = run(0), run(150)
    assert torch.equal(stuck, start)
    assert (z.mean(0) - exact_mean).abs().max() < 0.06, (z.mean(0), exact_mean)
    torch.testing.assert_close(torch.cov(z.T), exact_cov, atol=0.07, rtol=0)


def _exact_p_zt_given_y(v, A, y, sigma_y, t, prior):
    """p(z_t | y) for a N(0, v I) prior: z_t ~ N(0, c I), c = alpha^2 v + sigma^2, and y | z_t ~ N(A (alpha v / c) z_t,
    sigma_y^2 I + r^2 A A^T) with r^2 = v sigma^2 / c (float64)."""
    a, s = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    c, d = a**2 * v + s**2, A.shape[1]
    B = (a * v / c) * A
    lik_cov = sigma_y**2 * torch.eye(len(A), dtype=A.dtype) + (v * s**2 / c) * A @ A.T
    cov = torch.linalg.inv(torch.eye(d, dtype=A.dtype) / c + B.T @ torch.linalg.solve(lik_cov, B))
    return cov @ (B.T @ torch.linalg.solve(lik_cov, y[0])), cov


@pytest.mark.parametrize("operator", ["inpainting", "dense"])
def test_jacobian_variance_is_the_exact_conditional_variance_of_a_gaussian_prior(operator):
    # N(0, v I): E[x0 | z_t] = (alpha v / c) z_t, so (sigma^2 / alpha) g^T (dx0/dz) g / ||A^T u||^2 = v sigma^2 / c for
    # every probe: exact per sample, whatever the operator, and not the "unit-data" sigma^2 (float64)
    from vipaint_pl.methods.guidance import jacobian_variance
    from vipaint_pl.operators import random_dense_operator
    from vipaint_pl.rng import QueryNoise

    v, t = 0.2, 400
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 6), torch.full((1, 6), v))
    op = DenseLinear(torch.eye(6, dtype=torch.float64)[:3]) if operator == "inpainting" else random_dense_operator(6, 2)
    a, s = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    z = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64).requires_grad_(True)
    x0 = prior.predict_x0(z, t)
    r2 = jacobian_variance(op, z, x0, prior.decode(x0), a, s, QueryNoise(0, ["q"], "test", per_query=5))
    torch.testing.assert_close(r2, torch.full((5,), v * s**2 / (a**2 * v + s**2), dtype=torch.float64))


@pytest.mark.parametrize("operator", ["inpainting", "dense"])
def test_corrector_with_the_jacobian_variance_reaches_p_zt_given_y_for_data_of_any_variance(operator):
    # Data of variance 0.2 (as pixel digits in [-1, 1]: 0.18): with x_var "jacobian" the corrector's likelihood is the
    # exact p(y | z_t) and its draws reach p(z_t | y)'s mean and covariance; "unit-data" takes Var[x0 | z_t] = sigma_t^2,
    # 4.2x too wide here, and its draws follow y too loosely
    from vipaint_pl.methods.guidance import langevin_corrector
    from vipaint_pl.rng import QueryNoise

    d, t, sigma_y, v, n = 4, 400, 0.1, 0.2, 4000
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, d), torch.full((1, d), v))
    A = (torch.eye(d, dtype=torch.float64)[:2] if operator == "inpainting"
         else torch.randn(2, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    y = torch.tensor([[0.5, -0.3]], dtype=torch.float64)
    exact_mean, exact_cov = _exact_p_zt_given_y(v, A, y, sigma_y, t, prior)
    start = torch.tensor([1.0, -1.0, 0.8, 0.0], dtype=torch.float64).expand(n, d)
    noise = QueryNoise(0, ["q"], "test", per_query=n)
    errors = {}
    for x_var in ("jacobian", "unit-data"):
        z = langevin_corrector(prior, start, t, DenseLinear(A), y.expand(n, 2), sigma_y, noise.stream(x_var), 150,
                               0.05, x_var=x_var)
        errors[x_var] = (float((z.mean(0) - exact_mean).abs().max()), float((torch.cov(z.T) - exact_cov).abs().max()))
    assert errors["jacobian"][0] < 0.06 and errors["jacobian"][1] < 0.07, errors  # Monte Carlo: std 0.015, 0.02
    assert errors["unit-data"][0] > 0.1, errors


def test_score_gradient_is_the_gradient_of_the_exact_noised_log_density():
    """``score_gradient`` is zero in value, and its gradient with respect to the variational parameters is that
    of -log p_t(z) (the noised mixture's exact density, autograd in float64) through z = mu + std * eps."""
    from vipaint_pl.methods.vipaint.diffusion_term import score_gradient

    prior = grid_mixture_prior(6, seed=1)
    t = 550
    a, s = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    eps = torch.randn(5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    for exact in (False, True):
        mu = torch.full((5, 6), 0.7, dtype=torch.float64, requires_grad=True)
        log_std = torch.full((5, 6), -0.2, dtype=torch.float64, requires_grad=True)
        z = mu + log_std.exp() * eps
        if exact:  # log p_t(z) = log sum_k w_k N(z; a m_k, (a^2 + s^2) I) (identity covariances)
            m, w = prior.mixture.means, prior.mixture.weights
            var = a**2 + s**2
            log_p = torch.logsumexp(w.log() - 0.5 * ((z[:, None] - a * m) ** 2).sum(-1) / var
                                    - 3 * math.log(2 * math.pi * var), dim=1)
            (-log_p).sum().backward()
        else:
            value = score_gradient(prior, z, t)
            assert torch.equal(value, torch.zeros(5, dtype=torch.float64))
            value.sum().backward()
        grads.append((mu.grad, log_std.grad))
    for mine, exact in zip(*grads):
        torch.testing.assert_close(mine, exact, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("prior_gradient", ["vlb", "score"])
def test_every_component_of_a_mixture_fitted_with_equal_weights_reaches_its_mode(prior_gradient):
    """svd problem (d_x = 64, d_y = 1) with components in several modes: fitted with equal weights (optim.lr_weights
    0), every component's top level ends at alpha_Te times its mode's exact posterior mean (per-coordinate squared
    offset, measured at most 0.014). With learned weights (lr 0.5) the weights collapse onto one component within
    a few steps and the gradients of the others (scaled by their weight) vanish: some stay near their start
    (measured 0.14 with the VLB gradient)."""
    from vipaint_pl.methods.vipaint import fit_posterior
    from vipaint_pl.operators import random_dense_operator
    from vipaint_pl.rng import QueryNoise

    d = 64
    prior = grid_mixture_prior(d, seed=3)
    op = random_dense_operator(d, 1, seed=4)
    op.sigma_y = 0.3
    y = op.measure(prior.sample(1, torch.Generator().manual_seed(5)), 0.3, torch.Generator().manual_seed(6))
    post = prior.exact_posterior(op, y, 0.3)
    offsets = {}
    for lr_weights in (0.0, 0.5):
        cfg = VIPaintConfig.from_dict({
            "k": 2, "components": 4, "fit_steps": 150, "init": {"start": "resampled", "candidates": 64},
            "optim": {"lr_weights": lr_weights, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
            "bound": {"likelihood": "gaussian", "likelihood_scale": None, "mc_samples": 8, "reconstruction": "tweedie",
                      "time_sampling": "importance", "prior_gradient": prior_gradient}})
        q = fit_posterior(prior, op, y, QueryNoise(7, ["q"], "vipaint"), cfg)
        te = q.times[0]
        mu = q.mu[0].double()
        a = float(prior.schedule.alpha(te))
        mode = torch.cdist(prior.predict_x0(q.mu[0], te).double(), post.means).argmin(1)
        offsets[lr_weights] = ((mu - a * post.means[mode]) ** 2).mean(1)
    assert offsets[0.0].max() < 0.03, offsets
    assert offsets[0.5].max() > 0.08, offsets


@pytest.mark.parametrize("operator", ["inpainting", "dense"])
def test_kinetic_corrector_reaches_p_zt_given_y_and_mixes_faster_along_wide_directions(operator):
    # Data of variance 0.2 (as the pixel digits): with momentum the corrector's draws reach p(z_t | y)'s mean and
    # covariance as the overdamped steps do. Data of variance 8 (a wide direction of the data, where the step is a
    # small share of the curvature's scale): from a far start, 40 steps of the overdamped corrector stay far from
    # the target's mean (by 2.4-4.0); 40 kinetic steps, with the same gradients, get there (0.06-0.12)
    from vipaint_pl.methods.guidance import langevin_corrector
    from vipaint_pl.rng import QueryNoise

    d, t, sigma_y, n = 4, 400, 0.1, 4000
    A = (torch.eye(d, dtype=torch.float64)[:2] if operator == "inpainting"
         else torch.randn(2, d, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    y = torch.tensor([[0.5, -0.3]], dtype=torch.float64)
    noise = QueryNoise(0, ["q"], "test", per_query=n)
    errors = {}
    for v, steps in ((0.2, 150), (8.0, 40)):
        prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, d), torch.full((1, d), v))
        exact_mean, exact_cov = _exact_p_zt_given_y(v, A, y, sigma_y, t, prior)
        start = torch.tensor([1.0, -1.0, 0.8, 0.0], dtype=torch.float64).expand(n, d) * (1 if v < 1 else 10)
        for momentum in (0.0, 0.8):
            z = langevin_corrector(prior, start, t, DenseLinear(A), y.expand(n, 2), sigma_y, noise.stream(f"{v}"),
                                   steps, 0.05, x_var="jacobian", momentum=momentum)
            errors[v, momentum] = (float((z.mean(0) - exact_mean).abs().max()),
                                   float((torch.cov(z.T) - exact_cov).abs().max() / exact_cov.abs().max()))
    assert errors[0.2, 0.8][0] < 0.06 and errors[0.2, 0.8][1] < 0.07, errors  # as the overdamped steps: 0.013, 0.03
    assert errors[8.0, 0.8][0] < 0.3 and errors[8.0, 0.8][1] < 0.1 and errors[8.0, 0.0][0] > 1.0, errors
    stuck = langevin_corrector(prior, start, t, DenseLinear(A), y.expand(n, 2), sigma_y, noise, 0, 0.05, momentum=0.8)
    assert torch.equal(stuck, start)  # no steps: no move (and no gradient taken)
