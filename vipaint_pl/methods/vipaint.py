"""VIPaint (Agarwal, Hoope & Sudderth, arXiv 2024, Sec. 4): a hierarchical Gaussian posterior over K
diffusion times, fit by the variational bound, then sampled.

Posterior (Eq. 11-12), times Te = s(K) > ... > s(1) = Ts:
    q(z_Te) = N(mu_Te, tau_Te^2)
    q(z_s | z_t) = N(g * zhat + (1 - g) * mu_s, tau_s^2),  zhat = mean of the prior p(z_s | z_t),
                                                             g = sigmoid(gamma_s)
Bound (Eq. 13-14, App. C), per query:
    -log p(y) <= E_q[-log p(y | x0hat(z_Ts))]                                    reconstruction
                 + beta * sum_i KL(q(z_s(i) | z_s(i+1)) || p(z_s(i) | z_s(i+1)))  hierarchical
                 + beta * (L_(Te,T)(z_Te) - H[q(z_Te)])                          diffusion and entropy
where L_(Te,T) bounds -log p(z_Te) by the diffusion VLB that treats z_Te as data; with beta = 1
this is the exact VLB. The entropy term keeps the top-level variance from collapsing.

The method runs in three phases, each a function here, used alike by ``vipaint_sample`` (the registry's
entry: scripts, benchmarks, ``SamplerModule``) and by ``VIPaintModule`` (Lightning fit / predict):
    1. ``init_posterior``: parameters from the encoded observation;
    2. ``fit_posterior`` steps: ``vipaint_bound`` minimized by ``make_optimizer``'s Adam + StepLR;
    3. ``sample_posterior``: ancestral sampling through the hierarchy, then DPS-guided steps from Ts to 0.
Random streams: "init", "fit/<step>" (``mc_samples`` per query) and "sample" of the query's noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..schedule import gaussian_kl, per_sample, transition, transition_std
from ..settings import Settings, bounded
from . import fidelity
from .common import code_shape, report
from .guidance import guided_reverse_diffusion, tweedie_guided_reverse_diffusion
from .time_grids import hierarchy_times


@dataclass
class BoundConfig(Settings):
    """Weights of the bound's terms. beta = 1 and a Gaussian likelihood give the exact bound."""

    beta: float = bounded(1.0, low=0.0, low_open=True)
    likelihood: Literal["laplace", "gaussian"] = "laplace"  # L1 (as the official code) or Gaussian
    # Laplace scale b or Gaussian sigma_y in image units ([-1, 1]); None: the operator's ``sigma_y``
    likelihood_scale: float | None = bounded(0.05, low=0.0, low_open=True)
    perceptual: Literal["none", "st-lpips", "lpips"] = "none"
    perceptual_weight: float = bounded(0.0, low=0.0)
    mc_samples: int = bounded(4, low=1)  # posterior samples per query per step (S)
    entropy: bool = True


@dataclass
class InitConfig(Settings):
    """Initialization from the observation (as the official code: mean at the noised encoded observation)."""

    noise_scale: float = bounded(0.5, low=0.0)  # mu = alpha_s enc(A^+ y) + noise_scale * sigma_s * noise
    lower_std_factor: float = bounded(0.7, low=0.0, low_open=True)  # tau_s = factor * std of p(z_s | z_t)
    gamma: float = 4.0  # sigmoid(4) = 0.98: start close to the prior's own transition


@dataclass
class OptimConfig(Settings):
    """Adam on the three parameter groups, StepLR on all (the official settings)."""

    lr_mean: float = bounded(0.1, low=0.0)
    lr_log_std: float = bounded(0.001, low=0.0)
    lr_gamma: float = bounded(0.01, low=0.0)
    betas: tuple[float, float] = (0.9, 0.99)
    lr_step_size: int = bounded(10, low=1)
    lr_decay: float = bounded(0.99, low=0.0, high=1.0, low_open=True)


@dataclass
class PosteriorSamplingConfig(Settings):
    """Phase 3 (Sec. 4.3): ancestral sampling through the hierarchy, then DPS-guided steps from Ts to 0."""

    steps: int = bounded(50, low=1)  # reverse steps from Ts to the data
    # "dps": z_s -= dps_step_size * grad ||y - A(D(x0))|| (the paper); "tweedie": every step conditioned on y
    # by Tweedie's formula with the bound's likelihood width (no step size to tune)
    guidance: Literal["dps", "tweedie"] = "dps"
    dps_step_size: float = bounded(1.0, low=0.0)  # 0 disables the DPS gradient
    eta: float = bounded(0.2, low=0.0, high=1.0)  # DDIM eta of the reverse steps


@dataclass
class VIPaintConfig(Settings):
    """VIPaint-K: the hierarchy, the bound, its fit and the sampler."""

    k: int = bounded(2, low=1)  # hierarchy levels
    times: list[int] | None = None  # DDPM indices Te > ... > Ts; default [550, 400] for K = 2 (rescaled to T)
    fit_steps: int = bounded(100, low=0)  # optimization steps on the bound
    bound: BoundConfig = field(default_factory=BoundConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: PosteriorSamplingConfig = field(default_factory=PosteriorSamplingConfig)

    def hierarchy(self, num_train_timesteps: int) -> list[int]:
        return hierarchy_times(self.k, self.times, num_train_timesteps)


class HierarchicalPosterior(nn.Module):
    """Variational parameters for Q queries: mu, log tau per level over the latent grid; gamma per level."""

    def __init__(self, times: list[int], num_queries: int, latent_shape: tuple[int, ...]):
        super().__init__()
        self.times = list(times)
        k = len(times)
        self.mu = nn.Parameter(torch.zeros(k, num_queries, *latent_shape))
        self.log_std = nn.Parameter(torch.zeros(k, num_queries, *latent_shape))
        self.gamma = nn.Parameter(torch.zeros(k - 1, num_queries))

    @property
    def k(self) -> int:
        return len(self.times)

    @torch.no_grad()
    def initialize(self, prior, z_obs: Tensor, cfg: InitConfig, noise) -> None:
        """z_obs: encoded pseudo-inverse of each query's observation, (Q, *latent_shape); noise: 1 per query."""
        sch = prior.schedule
        for k, s in enumerate(self.times):
            a, sg = float(sch.alpha(s)), float(sch.sigma(s))
            self.mu[k] = a * z_obs + cfg.noise_scale * sg * noise.like(z_obs)
            if k == 0:
                std = sg
            else:
                std = cfg.lower_std_factor * float(transition_std(sch, s, self.times[k - 1], 1.0))
            self.log_std[k] = torch.log(torch.tensor(std))
        self.gamma.fill_(cfg.gamma)

    def sample(self, prior, idx: Tensor, noise, with_kl: bool = False):
        """Ancestral sampling through the hierarchy (Eq. 11), ``noise.per_query`` samples of each query in
        ``idx``: returns z_Te, z_Ts and the per-sample KLs of the lower levels."""
        mu, std = self.mu[:, idx], self.log_std[:, idx].exp()
        z = noise.repeat(mu[0]) + noise.repeat(std[0]) * noise.randn(mu.shape[2:], mu)
        z_top, kl = z, z.new_zeros(z.shape[0])
        for k in range(1, self.k):
            t, s = self.times[k - 1], self.times[k]
            p_mean, p_std = transition(prior.schedule, z, prior.predict_x0(z, t), s, t, eta=1.0)
            g = per_sample(torch.sigmoid(noise.repeat(self.gamma[k - 1, idx])), z)
            q_mean = g * p_mean + (1 - g) * noise.repeat(mu[k])  # Eq. 12
            q_std = noise.repeat(std[k])
            if with_kl:
                kl = kl + gaussian_kl(q_mean, q_std, p_mean, p_std).flatten(1).sum(1)
            z = q_mean + q_std * noise.like(q_mean)
        return z_top, z, kl


def diffusion_loss(prior, z_e: Tensor, te: int, u: Tensor, noise: Tensor) -> Tensor:
    """Unbiased one-sample estimate of -log p(z_Te) <= L_(Te,T)(z_Te) + KL(q(z_T | z_Te) || N(0, I)).

    The diffusion VLB with z_Te as the data (Eq. 14): t ~ U{Te+1, ..., T-1} (from u in [0, 1)),
    z_t ~ q(z_t | z_Te); for t - 1 > Te the term is KL(q(z_{t-1} | z_t, z_Te) || p(z_{t-1} | z_t)),
    for t - 1 = Te it is -log p(z_Te | z_{Te+1}); each is multiplied by the number of terms T - 1 - Te.
    """
    sch, T = prior.schedule, prior.num_train_timesteps
    n = T - 1 - te
    a_e, v_e = sch.alpha(te), sch.sigma(te) ** 2
    rel = lambda t: (sch.alpha(t) / a_e, sch.sigma(t) ** 2 - (sch.alpha(t) / a_e) ** 2 * v_e)  # noqa: E731
    view = lambda c: per_sample(c, z_e)  # noqa: E731
    a_T, v_T = rel(torch.tensor(T - 1))
    prior_T = gaussian_kl(view(a_T) * z_e, view(v_T.sqrt()), torch.zeros_like(z_e), torch.ones_like(z_e))
    prior_T = prior_T.flatten(1).sum(1)
    if n <= 0:
        return prior_T
    t = te + 1 + torch.clamp((u * n).floor().long(), max=n - 1).cpu()
    a_t, v_t = rel(t)
    a_s, v_s = rel(t - 1)
    z_t = view(a_t) * z_e + view(v_t.sqrt()) * noise
    x0 = prior.predict_x0(z_t, t.to(z_e.device))
    p_mean, p_std = transition(sch, z_t, x0, t - 1, t, eta=1.0)
    cov = (a_t / a_s) * v_s  # Cov(z_{t-1}, z_t | z_Te)
    q_mean = view(a_s) * z_e + view(cov / v_t) * (z_t - view(a_t) * z_e)
    q_std = (v_s - cov**2 / v_t).clamp_min(0).sqrt()
    last = (t - 1 == te).to(z_e.device)
    kl = gaussian_kl(q_mean, view(q_std.clamp_min(1e-12)).expand_as(q_mean), p_mean, p_std).flatten(1).sum(1)
    nll = (0.5 * ((z_e - p_mean) / p_std) ** 2 + torch.log(p_std) + 0.9189385332).flatten(1).sum(1)
    return n * torch.where(last, nll, kl) + prior_T


def likelihood_scale(operator, cfg: BoundConfig) -> float:
    """The likelihood's scale: as configured, or the operator's known sigma_y when the config leaves it unset."""
    scale = cfg.likelihood_scale if cfg.likelihood_scale is not None else float(getattr(operator, "sigma_y", 0.0))
    if scale <= 0:
        raise ConfigError("bound.likelihood_scale is None but the operator has no sigma_y > 0; give the scale")
    return scale


def likelihood_std(operator, cfg: BoundConfig) -> float:
    """Standard deviation of the likelihood's noise: sigma_y (Gaussian) or sqrt(2) b (Laplace with scale b)."""
    return likelihood_scale(operator, cfg) * (2**0.5 if cfg.likelihood == "laplace" else 1.0)


def reconstruction_loss(operator, x: Tensor, y: Tensor, cfg: BoundConfig, perceptual=None) -> Tensor:
    """-log p(y | x) per sample: the configured likelihood of A(x) - y, plus an optional perceptual term."""
    nll = fidelity.LIKELIHOODS[cfg.likelihood](operator, x, y, likelihood_scale(operator, cfg))
    if perceptual is not None and cfg.perceptual_weight > 0:
        nll = nll + cfg.perceptual_weight * fidelity.perceptual(operator, x, y, perceptual)
    return nll


def vipaint_bound(prior, posterior: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                  cfg: BoundConfig, perceptual=None) -> dict[str, Tensor]:
    """Per-query Monte Carlo estimates of every term of the bound (Eq. 13), averaged over the
    ``noise.per_query`` (= S) samples of each query.

    ``operator`` and ``y`` are those of the queries ``idx`` (B of them); returns tensors of shape (B,).
    """
    S = noise.per_query
    z_top, z_s, kl = posterior.sample(prior, idx, noise, with_kl=True)
    x = prior.decode(prior.predict_x0(z_s, posterior.times[-1]))
    recon = reconstruction_loss(operator.repeat_interleave(S), x, noise.repeat(y), cfg, perceptual)
    u = noise.rand(z_top)
    diff = diffusion_loss(prior, z_top, posterior.times[0], u, noise.like(z_top))
    per_query = lambda v: v.view(-1, S).mean(1)  # noqa: E731
    entropy = posterior.log_std[0, idx].flatten(1).sum(1) if cfg.entropy else torch.zeros(len(idx), device=y.device)
    terms = {"reconstruction": per_query(recon), "hierarchical_kl": per_query(kl),
             "diffusion": per_query(diff), "entropy": entropy}
    terms["loss"] = terms["reconstruction"] + cfg.beta * (terms["hierarchical_kl"] + terms["diffusion"] - entropy)
    return terms


@torch.no_grad()
def init_posterior(prior, operator, y: Tensor, noise, cfg: VIPaintConfig) -> HierarchicalPosterior:
    """Phase 1: a posterior for the B queries of ``y``, its means at the noised encoded observation."""
    z_obs = prior.encode(operator.pinv(y)).float()
    post = HierarchicalPosterior(cfg.hierarchy(prior.num_train_timesteps), y.shape[0], code_shape(prior, operator, y))
    post = post.to(y.device)
    post.initialize(prior, z_obs, cfg.init, noise.stream("init", per_query=1))
    return post


def make_optimizer(post: HierarchicalPosterior, cfg: OptimConfig):
    """Phase 2's optimizer: Adam with one learning rate per parameter group, StepLR on all."""
    opt = torch.optim.Adam([{"params": [post.mu], "lr": cfg.lr_mean}, {"params": [post.log_std], "lr": cfg.lr_log_std},
                            {"params": [post.gamma], "lr": cfg.lr_gamma}], betas=tuple(cfg.betas))
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_size, gamma=cfg.lr_decay)


def fit_noise(noise, step: int, cfg: VIPaintConfig):
    """The random stream of fit step ``step``: ``mc_samples`` draws per query."""
    return noise.stream(f"fit/{step}", per_query=cfg.bound.mc_samples)


def sample_posterior(prior, post: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                     cfg: PosteriorSamplingConfig, bound: BoundConfig, callback=None) -> Tensor:
    """Phase 3: clean codes (B * per_query, ...) for the queries ``idx`` (with their ``operator`` and ``y``)."""
    with torch.no_grad():
        _, z, _ = post.sample(prior, idx, noise)
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    if cfg.guidance == "tweedie":
        return tweedie_guided_reverse_diffusion(prior, z, post.times[-1], noise, cfg.steps, cfg.eta, operator, y,
                                                likelihood_std(operator, bound), callback)
    loss = lambda x0: fidelity.residual_norm(operator, prior.decode(x0), y)  # noqa: E731  DPS on the same y
    return guided_reverse_diffusion(prior, z, post.times[-1], noise, cfg.steps, cfg.dps_step_size, cfg.eta, loss,
                                    callback)


def vipaint_sample(prior, operator, y: Tensor, noise, cfg: VIPaintConfig, callback=None) -> Tensor:
    """Fit each query's posterior, then sample it: clean codes (B * per_query, ...).

    ``callback(step, {"terms": ...})`` sees every fit step; the sampling steps follow with their own numbers.
    """
    from ..perceptual import build_perceptual

    post = init_posterior(prior, operator, y, noise, cfg)  # 1.
    perceptual = build_perceptual(cfg.bound.perceptual)
    if perceptual is not None:
        perceptual = perceptual.to(y.device)
    opt, sched = make_optimizer(post, cfg.optim)
    idx = torch.arange(y.shape[0], device=y.device)
    for step in range(cfg.fit_steps):  # 2.
        with torch.enable_grad():
            terms = vipaint_bound(prior, post, operator, y, idx, fit_noise(noise, step, cfg), cfg.bound, perceptual)
            opt.zero_grad()
            terms["loss"].sum().backward()
        opt.step()
        sched.step()
        report(callback, step, terms={k: v.detach() for k, v in terms.items()})
    post.requires_grad_(False)
    shifted = None if callback is None else (lambda i, info: callback(cfg.fit_steps + i, info))
    return sample_posterior(prior, post, operator, y, idx, noise.stream("sample"), cfg.sampling, cfg.bound,  # 3.
                            shifted)
