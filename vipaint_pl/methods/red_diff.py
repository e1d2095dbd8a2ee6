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
from typing import Literal

import torch
from torch import Tensor

from ..schedule import to_device
from ..settings import Settings, bounded
from . import fidelity
from .adam import OneTensorAdam
from .common import report
from .time_grids import training_grid


@dataclass
class REDDiffConfig(Settings):
    steps: int = bounded(100, low=1)  # Adam steps, one diffusion time each
    lr: float = bounded(0.25, low=0.0, low_open=True)
    betas: tuple[float, float] = (0.9, 0.99)
    lam: float = bounded(0.25, low=0.0)  # lambda: weight of the denoising regularizer
    times: Literal["descending", "random"] = "descending"  # RED-diff | RED-diff-V


@dataclass
class REDDiffVConfig(REDDiffConfig):
    """RED-diff-V: a uniformly random time per step and sample."""

    times: Literal["descending", "random"] = "random"


def red_diff_times(cfg: REDDiffConfig, num_train_timesteps: int, noise, like: Tensor) -> list[Tensor]:
    """Per step, the time of every sample: a shared descending grid, or per-sample uniform draws (all steps' in one
    draw, the numbers a draw per step gives)."""
    if cfg.times == "descending":
        return [torch.full((noise.batch,), t, dtype=torch.long, device=like.device)
                for t in training_grid(num_train_timesteps, cfg.steps)]
    u = noise.rand(like, cfg.steps)  # (steps, batch)
    return list((u * num_train_timesteps).long().clamp_max(num_train_timesteps - 1).unbind(0))


def red_diff_coefficients(prior, cfg: REDDiffConfig, times: list[Tensor], like: Tensor) -> list[tuple]:
    """Per step (alpha_t, sigma_t, w_t = sigma_t / alpha_t) in ``like``'s dtype. On the shared descending grid they
    are computed once for every step, in that dtype, and kept as Python numbers: each is a value of the dtype, so it
    multiplies a tensor exactly as the per-sample tensor did. Random times: per-sample tensors, looked up in one
    (T, 3) table of the three over every time, made once in the dtype (the same values, one lookup for all steps)."""
    shared = cfg.times == "descending"
    grid = torch.tensor(training_grid(prior.num_train_timesteps, cfg.steps) if shared else
                        range(prior.num_train_timesteps))
    alpha, sigma = prior.schedule.alpha(grid).to(like.dtype), prior.schedule.sigma(grid).to(like.dtype)
    if shared:
        return list(zip(alpha.tolist(), sigma.tolist(), (sigma / alpha).tolist()))
    table = to_device(torch.stack([alpha, sigma, sigma / alpha], 1), like.device)  # (T, 3)
    broadcast = (1,) * (like.ndim - 1)
    looked_up = table[torch.stack(times)].reshape(len(times), -1, 3, *broadcast)  # (steps, batch, 3, 1, ...)
    return [step.unbind(1) for step in looked_up.unbind(0)]


def red_diff_sample(prior, operator, y: Tensor, noise, cfg: REDDiffConfig, callback=None) -> Tensor:
    """Optimized codes mu (B * per_query, ...) (decode them on a latent prior)."""
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    with torch.no_grad():
        mu = prior.encode(operator.pinv(y)).detach().clone().requires_grad_(True)
    opt = OneTensorAdam(mu, lr=cfg.lr, betas=cfg.betas)  # torch's Adam, bitwise
    times = red_diff_times(cfg, prior.num_train_timesteps, noise, mu)
    for i, (t, (alpha, sigma, w)) in enumerate(zip(times, red_diff_coefficients(prior, cfg, times, mu))):
        eps = noise.like(mu)
        with torch.enable_grad():
            with torch.no_grad():
                eps_hat = prior.predict_eps(alpha * mu + sigma * eps, t)
            fit = 0.5 * fidelity.mean_squared(operator, prior.decode(mu), y)  # Eq. 9, data term
            reg = (w * (eps_hat - eps) * mu).flatten(1).mean(1)  # Eq. 10, sg(.) via no_grad
            loss = (fit + cfg.lam * reg).sum()
            loss.backward()
        opt.step()  # clears the gradient
        report(callback, i, t=t, z=mu, loss=loss)
    return mu.detach()
