"""DAPS: decoupled annealing posterior sampling (Zhang et al., CVPR 2025).

In the variance-exploding view x_sigma = x_0 + sigma n (a DDPM code z_t is x = z_t / alpha_t at
sigma = sigma_t / alpha_t), DAPS anneals sigma from ``sigma_max`` to 0 over ``steps`` steps
(EDM's poly-7 spacing). Each step at sigma_i (Alg. 1):
  1. x0hat = the probability-flow ODE from x at sigma_i to 0 in ``ode_steps`` Euler steps (poly-7),
     dx / dsigma = (x - D(x, sigma)) / sigma;
  2. x0y ~ p(x_0 | x_sigma_i, y) by ``mc_steps`` Langevin (or damped Hamiltonian) steps from x0hat on
     log N(y; A D(x_0), tau^2 I) + log N(x_0; x0hat, r_i^2 I), r_i = sigma_i (the Gaussian approximation
     of p(x_0 | x_sigma)); on a latent prior x_0 is the code and A acts on its decoding. On a pixel prior with
     a mask or a dense operator the Langevin chain is linear-Gaussian, and its steps' exact law is drawn in one
     go (``exact_langevin``; ``mc_exact: false`` runs them one by one);
  3. x = x0y + sigma_{i+1} n (the last sigma is 0: the sample is x0y).
The step size decays linearly with the step, lr_i = lr (1 + i / N (lr_min_ratio - 1)), and lr = step x tau^2.
Defaults are the authors' inpainting settings: pixel priors 100 Langevin steps at lr 5e-5 (step 0.5 at
tau 0.01), lr_min_ratio 0.01; latent priors 15 Hamiltonian steps at lr 9.02e-6, momentum 0.74,
lr_min_ratio 0.13. The likelihood keeps its 1/2 (the authors' code divides the squared error by tau^2 only,
an effective noise tau / sqrt 2); tau defaults to the operator's known sigma_y, else the authors' 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..settings import Settings, bounded
from .common import report, start_noise

# The authors' inpainting settings per kind of prior (configs/task/inpainting.yaml of their code).
PRIOR_DEFAULTS = {
    "pixel": {"mc_steps": 100, "step": 0.5, "lr_min_ratio": 0.01, "mc_algo": "langevin", "momentum": 0.0},
    "latent": {"mc_steps": 15, "step": 0.0902, "lr_min_ratio": 0.13, "mc_algo": "hmc", "momentum": 0.74},
}


@dataclass
class DAPSConfig(Settings):
    """DAPS. The Monte Carlo settings left unset take the authors' values for the prior's kind."""

    steps: int = bounded(200, low=1)  # annealing steps
    sigma_max: float = bounded(100.0, low=0.0, low_open=True)
    sigma_min: float = bounded(0.1, low=0.0, low_open=True)  # the last annealing sigma before 0
    ode_steps: int = bounded(5, low=1)  # Euler steps of the probability-flow ODE for x0hat
    ode_sigma_min: float = bounded(0.01, low=0.0, low_open=True)
    mc_steps: int | None = bounded(None, low=0)  # None: pixel 100, latent 15
    step: float | None = bounded(None, low=0.0, low_open=True)  # lr = step * tau^2; None: pixel 0.5, latent 0.0902
    lr_min_ratio: float | None = bounded(None, low=0.0, high=1.0)  # None: pixel 0.01, latent 0.13
    mc_algo: Literal["langevin", "hmc"] | None = None  # None: pixel langevin, latent hmc
    momentum: float | None = bounded(None, low=0.0, high=1.0)  # HMC damping; None: latent 0.74
    tau: float | None = bounded(None, low=0.0, low_open=True)  # None: the operator's sigma_y if > 0, else 0.01
    # step 2's Langevin chain in closed form where it is linear-Gaussian (a pixel prior and an operator that knows
    # A^T A's eigenvectors: masks, dense matrices): the mc_steps steps' exact law in one draw (``exact_langevin``);
    # false runs them one by one (as before 2026-12-07: the same law, other draws)
    mc_exact: bool = True

    def resolved(self, latent: bool, sigma_y: float) -> "DAPSConfig":
        """The config with every unset value filled in for this prior and operator."""
        values = {k: v for k, v in PRIOR_DEFAULTS["latent" if latent else "pixel"].items() if getattr(self, k) is None}
        if self.tau is None:
            values["tau"] = sigma_y if sigma_y > 0 else 0.01
        return self.replace(**values)


def edm_sigmas(sigma_max: float, sigma_min: float, steps: int) -> list[float]:
    """EDM's poly-7 spacing (Karras et al., NeurIPS 2022, Eq. 5): ``steps`` values from sigma_max towards
    sigma_min, then 0."""
    rho = 7.0
    grid = [(sigma_max ** (1 / rho) + k / steps * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
            for k in range(steps)]
    return grid + [0.0]


class VEDenoiser:
    """D(x, sigma) = E[x_0 | x_0 + sigma n = x] from a DDPM prior: x at sigma is z_t = alpha_t x at the
    training time t whose sigma_t / alpha_t is nearest sigma."""

    def __init__(self, prior):
        schedule = prior.schedule
        t = torch.arange(prior.num_train_timesteps)
        self.prior = prior
        self.alpha = schedule.alpha(t).double()
        self.ve_sigma = (schedule.sigma(t) / schedule.alpha(t)).double()  # increasing in t

    def time(self, sigma: float) -> int:
        query = torch.tensor([sigma], dtype=torch.float64, device=self.ve_sigma.device)
        i = int(torch.searchsorted(self.ve_sigma, query).clamp(max=len(self.ve_sigma) - 1))
        if i > 0 and abs(float(self.ve_sigma[i - 1]) - sigma) < abs(float(self.ve_sigma[i]) - sigma):
            i -= 1
        return i

    def __call__(self, x: Tensor, sigma: float) -> Tensor:
        t = self.time(sigma)
        return self.prior.predict_x0(x * float(self.alpha[t]), t)


def probability_flow_x0(denoise: VEDenoiser, x: Tensor, sigma: float, cfg: DAPSConfig) -> Tensor:
    """Step 1: Euler steps of dx / dsigma = (x - D(x, sigma)) / sigma from ``sigma`` to 0."""
    sigmas = edm_sigmas(sigma, cfg.ode_sigma_min, cfg.ode_steps)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = x + (s_next - s) * (x - denoise(x, s)) / s
    return x


def target_score(prior, operator, y: Tensor, x: Tensor, x0hat: Tensor, r: float, tau: float) -> Tensor:
    """grad_x0 [log N(y; A D(x_0), tau^2 I) + log N(x_0; x0hat, r^2 I)], the target of step 2. On a pixel prior
    (D the identity, A linear) in closed form, -A^T (A x_0 - y) / tau^2 - (x_0 - x0hat) / r^2; through the decoder
    by autograd on a latent prior."""
    if not prior.is_latent:  # in place on the fresh A^T (A x_0 - y): a few passes over memory per step, not ten
        grad = operator.transpose(operator(x) - y).reshape(x.shape)
        return grad.mul_(-1 / tau**2).add_(x, alpha=-1 / r**2).add_(x0hat, alpha=1 / r**2)
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        residual = (operator(prior.decode(x)) - y).flatten(1)
        log_p = -residual.pow(2).sum(1) / (2 * tau**2) - (x - x0hat).flatten(1).pow(2).sum(1) / (2 * r**2)
        return torch.autograd.grad(log_p.sum(), x)[0]


def posterior_mcmc(prior, operator, y: Tensor, x0hat: Tensor, r: float, lr: float, noise, cfg: DAPSConfig) -> Tensor:
    """Step 2: Langevin or damped Hamiltonian steps on log p(y | x_0) + log N(x_0; x0hat, r^2 I)."""
    x = x0hat.detach().clone()
    velocity = noise.like(x) if cfg.mc_algo == "hmc" else None
    for _ in range(cfg.mc_steps):
        score = target_score(prior, operator, y, x, x0hat, r, cfg.tau)
        eps = noise.like(x)
        if cfg.mc_algo == "langevin":  # x + lr score + sqrt(2 lr) eps, in place on the fresh eps
            x = eps.mul_((2 * lr) ** 0.5).add_(x.detach()).add_(score, alpha=lr)
        else:
            velocity = cfg.momentum * velocity + lr**0.5 * score + (2 * (1 - cfg.momentum)) ** 0.5 * eps
            x = x.detach() + lr**0.5 * velocity
    return x.detach()


def exact_langevin(prior, operator, y: Tensor, x0hat: Tensor, r: float, lr: float, noise, cfg: DAPSConfig) -> Tensor:
    """Step 2 on a pixel prior in closed form. The target is Gaussian, with precision P = A^T A / tau^2 + I / r^2 and
    mean mu = P^-1 (A^T y / tau^2 + x0hat / r^2), so the Langevin step is
        x_{k+1} = x_k - lr P (x_k - mu) + sqrt(2 lr) xi_k,
    and its N steps from x_0 = x0hat give, in law, exactly
        x_N = mu + (I - lr P)^N (x0hat - mu) + (2 lr sum_{k<N} (I - lr P)^(2k))^(1/2) xi,
    each function of P taken on A^T A's eigenvalues (``Operator.gram_function``; operators that ``knows_gram``)."""
    n, tau2, r2 = cfg.mc_steps, cfg.tau**2, r**2

    def precision(lam: Tensor) -> Tensor:
        return lam / tau2 + 1 / r2

    def spread(lam: Tensor) -> Tensor:  # 2 lr sum_{k<N} a^(2k), a = 1 - lr p; N where a^2 = 1
        a2 = (1 - lr * precision(lam)) ** 2
        return (2 * lr * torch.where(a2 == 1, float(n), (1 - a2**n) / (1 - a2))).sqrt()

    if n == 0:
        return x0hat
    pulled = operator.transpose(y).reshape(x0hat.shape) / tau2 + x0hat / r2
    mu = operator.gram_function(pulled, lambda lam: 1 / precision(lam))
    decay = operator.gram_function(x0hat - mu, lambda lam: (1 - lr * precision(lam)) ** n)
    return mu + decay + operator.gram_function(noise.like(x0hat), spread)


def daps_sample(prior, operator, y: Tensor, noise, cfg: DAPSConfig, callback=None) -> Tensor:
    """Clean codes (B * per_query, ...) (decode them on a latent prior); the steps of the module docstring."""
    cfg = cfg.resolved(prior.is_latent, float(getattr(operator, "sigma_y", 0.0)))
    x = cfg.sigma_max * start_noise(prior, operator, y, noise)
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    denoise = VEDenoiser(prior)
    sigmas = edm_sigmas(cfg.sigma_max, cfg.sigma_min, cfg.steps)
    lr = cfg.step * cfg.tau**2
    exact = cfg.mc_exact and not prior.is_latent and cfg.mc_algo == "langevin" and operator.knows_gram
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        with torch.no_grad():
            x0hat = probability_flow_x0(denoise, x, sigma, cfg)  # 1.
        lr_i = lr * (1 + i / cfg.steps * (cfg.lr_min_ratio - 1))
        x0y = (exact_langevin if exact else posterior_mcmc)(prior, operator, y, x0hat, sigma, lr_i, noise, cfg)  # 2.
        x = x0y + sigma_next * noise.like(x0y)  # 3.
        report(callback, i, sigma=sigma, x0=x0y)
    return x
