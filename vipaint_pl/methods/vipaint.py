"""VIPaint (paper 000, Sec. 4): a hierarchical Gaussian posterior over K diffusion times, fit by the VLB.

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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import rng
from ..errors import ConfigError
from ..schedule import gaussian_kl, transition, transition_std

DEFAULT_TIMES = {1: [400], 2: [550, 400], 4: [550, 500, 450, 400], 6: [550, 520, 490, 460, 430, 400]}


def hierarchy_times(k: int, times: list[int] | None = None, num_train_timesteps: int = 1000) -> list[int]:
    """The K times Te > ... > Ts, given or from the official defaults (rescaled to the prior's T)."""
    if k < 1:
        raise ConfigError(f"the hierarchy needs K >= 1 levels, got K={k}")
    if times is None:
        if k in DEFAULT_TIMES:
            base = DEFAULT_TIMES[k]
        else:
            base = torch.linspace(550, 400, k).round().long().tolist()
        times = [round(t * num_train_timesteps / 1000) for t in base]
    times = [int(t) for t in times]
    if len(times) != k:
        raise ConfigError(f"K={k} levels need {k} times, got {times}")
    if any(a <= b for a, b in zip(times, times[1:])):
        raise ConfigError(f"hierarchy times must decrease strictly from Te to Ts (Te > Ts), got {times}")
    if times[-1] < 0 or times[0] >= num_train_timesteps:
        raise ConfigError(f"hierarchy times must lie in [0, {num_train_timesteps - 1}], got {times}")
    return times


@dataclass
class BoundConfig:
    """Weights of the VLB terms. beta = 1 and a Gaussian likelihood give the exact bound."""

    beta: float = 1.0
    likelihood: str = "laplace"  # 'laplace' (L1, as the official code) or 'gaussian'
    likelihood_scale: float = 0.05  # Laplace scale b or Gaussian sigma_y, in image units ([-1, 1])
    perceptual: str = "none"  # 'none' | 'st-lpips' | 'lpips'
    perceptual_weight: float = 0.0
    mc_samples: int = 4  # posterior samples per query per step (S)
    entropy: bool = True

    def __post_init__(self):
        if self.likelihood not in ("laplace", "gaussian"):
            raise ConfigError(f"likelihood must be 'laplace' or 'gaussian', got {self.likelihood!r}")
        if self.likelihood_scale <= 0 or self.beta <= 0 or self.mc_samples < 1:
            raise ConfigError("likelihood_scale and beta must be positive, mc_samples >= 1")


@dataclass
class InitConfig:
    """Initialization from the observation (DESIGN.md, 'Init')."""

    noise_scale: float = 0.5  # mu = alpha_s enc(A^+ y) + noise_scale * sigma_s * noise
    lower_std_factor: float = 0.7  # tau_s = factor * std of the prior jump p(z_s | z_t)
    gamma: float = 4.0  # sigmoid(4) = 0.98: start close to the prior's own transition
    times: list[int] | None = field(default=None)


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
    def initialize(self, prior, z_obs: Tensor, cfg: InitConfig, gens) -> None:
        """z_obs: encoded pseudo-inverse of each query's observation, (Q, *latent_shape)."""
        sch = prior.schedule
        for k, s in enumerate(self.times):
            a, sg = float(sch.alpha(s)), float(sch.sigma(s))
            noise = rng.randn(gens, 1, z_obs.shape[1:], z_obs)
            self.mu[k] = a * z_obs + cfg.noise_scale * sg * noise
            if k == 0:
                std = sg
            else:
                std = cfg.lower_std_factor * float(transition_std(sch, s, self.times[k - 1], 1.0))
            self.log_std[k] = torch.log(torch.tensor(std))
        self.gamma.fill_(cfg.gamma)

    def sample(self, prior, idx: Tensor, per_query: int, gens, with_kl: bool = False):
        """Ancestral sampling through the hierarchy (Eq. 11): returns z_Te, z_Ts and the per-sample KLs."""
        rep = lambda v: v.repeat_interleave(per_query, 0)  # noqa: E731
        mu, std = self.mu[:, idx], self.log_std[:, idx].exp()
        z = rep(mu[0]) + rep(std[0]) * rng.randn(gens, per_query, mu.shape[2:], mu)
        z_top, kl = z, z.new_zeros(z.shape[0])
        for k in range(1, self.k):
            t, s = self.times[k - 1], self.times[k]
            x0 = prior.predict_x0(z, t)
            p_mean, p_std = transition(prior.schedule, z, x0, s, t, eta=1.0)
            g = torch.sigmoid(rep(self.gamma[k - 1, idx])).view(-1, *([1] * (z.ndim - 1)))
            q_mean = g * p_mean + (1 - g) * rep(mu[k])
            q_std = rep(std[k])
            if with_kl:
                kl = kl + gaussian_kl(q_mean, q_std, p_mean, p_std).flatten(1).sum(1)
            z = q_mean + q_std * rng.randn(gens, per_query, mu.shape[2:], mu)
        return z_top, z, kl


def diffusion_loss(prior, z_e: Tensor, te: int, u: Tensor, noise: Tensor) -> Tensor:
    """Unbiased one-sample estimate of -log p(z_Te) <= L_(Te,T)(z_Te) + KL(q(z_T | z_Te) || N(0, I)).

    The diffusion VLB with z_Te as the data (paper 000, Eq. 14): t ~ U{Te+1, ..., T-1} (from u in
    [0, 1)), z_t ~ q(z_t | z_Te); for t - 1 > Te the term is KL(q(z_{t-1} | z_t, z_Te) || p(z_{t-1} | z_t)),
    for t - 1 = Te it is -log p(z_Te | z_{Te+1}); each is multiplied by the number of terms T - 1 - Te.
    """
    sch, T = prior.schedule, prior.num_train_timesteps
    n = T - 1 - te
    a_e, v_e = sch.alpha(te), sch.sigma(te) ** 2
    rel = lambda t: (sch.alpha(t) / a_e, sch.sigma(t) ** 2 - (sch.alpha(t) / a_e) ** 2 * v_e)  # noqa: E731
    view = lambda c: c.to(z_e.dtype).view(-1, *([1] * (z_e.ndim - 1)))  # noqa: E731
    a_T, v_T = rel(torch.tensor(T - 1))
    prior_T = gaussian_kl(view(a_T.expand(z_e.shape[0])) * z_e, view(v_T.sqrt().expand(z_e.shape[0])),
                          torch.zeros_like(z_e), torch.ones_like(z_e)).flatten(1).sum(1)
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


def reconstruction_loss(operator, x: Tensor, y: Tensor, cfg: BoundConfig, perceptual=None) -> Tensor:
    """-log p(y | x) per sample: Laplace (L1) or Gaussian on A(x) - y, plus an optional perceptual term."""
    r = (operator(x) - y).flatten(1)
    if cfg.likelihood == "gaussian":
        nll = (r**2).sum(1) / (2 * cfg.likelihood_scale**2)
    else:
        nll = r.abs().sum(1) / cfg.likelihood_scale
    if perceptual is not None and cfg.perceptual_weight > 0:
        nll = nll + cfg.perceptual_weight * perceptual(operator.pinv(operator(x)), operator.pinv(y))
    return nll


def vipaint_bound(prior, posterior: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, gens,
                  cfg: BoundConfig, perceptual=None) -> dict[str, Tensor]:
    """Per-query Monte Carlo estimates of every VLB term (Eq. 13), averaged over cfg.mc_samples samples.

    y: the observations of the queries ``idx``, (B, ...); ``operator`` acts on the batch of B * S
    samples (each query's repeated S times); returns tensors of shape (B,).
    """
    S = cfg.mc_samples
    z_top, z_s, kl = posterior.sample(prior, idx, S, gens, with_kl=True)
    x = prior.decode(prior.predict_x0(z_s, posterior.times[-1]))
    recon = reconstruction_loss(operator, x, y.repeat_interleave(S, 0), cfg, perceptual)
    u = rng.rand(gens, S, z_top)
    diff = diffusion_loss(prior, z_top, posterior.times[0], u, rng.randn(gens, S, z_top.shape[1:], z_top))
    per_query = lambda v: v.view(-1, S).mean(1)  # noqa: E731
    entropy = posterior.log_std[0, idx].flatten(1).sum(1) if cfg.entropy else torch.zeros(len(idx), device=y.device)
    terms = {"reconstruction": per_query(recon), "hierarchical_kl": per_query(kl),
             "diffusion": per_query(diff), "entropy": entropy}
    terms["loss"] = terms["reconstruction"] + cfg.beta * (terms["hierarchical_kl"] + terms["diffusion"] - entropy)
    return terms


def fit_vipaint(prior, operator, y: Tensor, times: list[int], steps: int = 50, bound: BoundConfig | None = None,
                init: InitConfig | None = None, lr: tuple[float, float, float] = (0.1, 0.001, 0.01),
                seed: int = 0, names: list[str] | None = None, callback=None) -> HierarchicalPosterior:
    """Fit VIPaint's posterior for a batch of observations y (B, ...) without Lightning (scripts, oracles).

    ``operator`` acts on a batch of B * S samples. Same bound, optimizer and schedule as the
    LightningModule (Adam betas (0.9, 0.99), StepLR(10, 0.99)); ``callback(step, terms)`` sees each step.
    """
    bound, init = bound or BoundConfig(), init or InitConfig()
    names = names or [str(i) for i in range(y.shape[0])]
    idx = torch.arange(y.shape[0])
    with torch.no_grad():  # the operator acts on B * S samples: repeat y, apply A^+, keep one per query
        z_obs = prior.encode(operator.pinv(y.repeat_interleave(bound.mc_samples, 0))[:: bound.mc_samples])
    post = HierarchicalPosterior(times, y.shape[0], tuple(z_obs.shape[1:])).to(y.device)
    post.initialize(prior, z_obs.float(), init, rng.generators(seed, names, "init"))
    opt = torch.optim.Adam([{"params": [post.mu], "lr": lr[0]}, {"params": [post.log_std], "lr": lr[1]},
                            {"params": [post.gamma], "lr": lr[2]}], betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.99)
    for step in range(steps):
        terms = vipaint_bound(prior, post, operator, y, idx, rng.generators(seed, names, f"fit/{step}"), bound)
        opt.zero_grad()
        terms["loss"].sum().backward()
        opt.step()
        sched.step()
        if callback is not None:
            callback(step, {k: v.detach() for k, v in terms.items()})
    return post


def sample_vipaint(prior, post: HierarchicalPosterior, operator, y: Tensor, num_samples: int, steps: int = 50,
                   dps_step_size: float = 0.0, eta: float = 0.2, seed: int = 0, names: list[str] | None = None) -> Tensor:
    """Phase 2 for a fitted posterior: (B * num_samples, ...) clean codes; ``operator`` acts on that batch."""
    from .guidance import guided_reverse_diffusion

    names = names or [str(i) for i in range(y.shape[0])]
    gens = rng.generators(seed, names, "predict")
    with torch.no_grad():
        _, z, _ = post.sample(prior, torch.arange(y.shape[0]), num_samples, gens)
    return guided_reverse_diffusion(prior, z, post.times[-1], operator, y.repeat_interleave(num_samples, 0), gens,
                                    num_samples, steps, dps_step_size, eta)
