"""RED-diff (Mardani et al., ICLR 2024): variational regularization by denoising diffusion.

The posterior q(x0 | y) = N(mu, sigma^2 I) with sigma -> 0: mu is optimized with Adam on
    ||y - A(D(mu))||^2 / 2  +  lambda * w_t * < sg(eps_hat(z_t, t) - eps), mu >,   z_t = alpha_t mu + sigma_t eps
(Eq. 9-10 of the paper; w_t = sigma_t / alpha_t, the inverse square-root SNR), one time t per step:
descending from T to 0 (RED-diff) or uniform at random (RED-diff-V, the paper's Figure 2 variant).
Each sample is an independent optimization with its own noise stream; mu starts at A^+ y (encoded on
latent priors). Both terms are means over coordinates, as the authors' code has them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import rng
from ..errors import ConfigError


@dataclass
class REDDiffConfig:
    steps: int = 100  # Adam steps, one diffusion time each
    lr: float = 0.25
    betas: tuple[float, float] = (0.9, 0.99)
    lam: float = 0.25  # lambda: weight of the denoising regularizer
    times: str = "descending"  # descending (RED-diff) | random (RED-diff-V)


def red_diff_times(cfg: REDDiffConfig, num_train_timesteps: int, gens, per_query: int, like: Tensor) -> list[Tensor]:
    """Per step, the time of every sample: a shared descending grid, or per-sample uniform draws."""
    if cfg.times == "descending":
        grid = torch.linspace(num_train_timesteps - 1, 0, cfg.steps).round().long()
        return [t.expand(len(gens) * per_query).to(like.device) for t in grid]
    if cfg.times == "random":
        return [(rng.rand(gens, per_query, like) * num_train_timesteps).long().clamp_max(num_train_timesteps - 1)
                for _ in range(cfg.steps)]
    raise ConfigError(f"unknown RED-diff times {cfg.times!r}; choose descending or random")


def red_diff_sample(prior, operator, y: Tensor, shape, num_samples: int, gens, cfg: REDDiffConfig | None = None) -> Tensor:
    """(B * num_samples, *shape) optimized codes mu (decode them on a latent prior)."""
    cfg = cfg or REDDiffConfig()
    y = y.repeat_interleave(num_samples, 0)
    with torch.no_grad():
        mu0 = prior.encode(operator.pinv(y))
    mu = mu0.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([mu], lr=cfg.lr, betas=cfg.betas)
    for t in red_diff_times(cfg, prior.num_train_timesteps, gens, num_samples, mu):
        eps = rng.randn(gens, num_samples, shape, mu)
        alpha = prior.schedule.alpha(t).to(mu.dtype).view(-1, *([1] * (mu.ndim - 1)))
        sigma = prior.schedule.sigma(t).to(mu.dtype).view(-1, *([1] * (mu.ndim - 1)))
        with torch.enable_grad():
            with torch.no_grad():
                eps_hat = prior.predict_eps(alpha * mu + sigma * eps, t)
            fit = 0.5 * (operator(prior.decode(mu)) - y).flatten(1).pow(2).mean(1)  # Eq. 9, data term
            reg = ((sigma / alpha) * (eps_hat - eps) * mu).flatten(1).mean(1)  # Eq. 10, sg(.) via no_grad
            loss = (fit + cfg.lam * reg).sum()
            opt.zero_grad()
            loss.backward()
        opt.step()
    return mu.detach()
