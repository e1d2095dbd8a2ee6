"""ReSample (Song et al., ICLR 2024, "Solving inverse problems with latent diffusion models via hard data
consistency", Alg. 1), as the authors' code runs it.

Every DDIM step t -> s takes a latent-DPS step, z'_s = DDIM(z_t) - scale * alphabar_t * grad_{z_t} ||y - A(D(x0))||.
Every ``every`` grid steps in the middle and last thirds of the chain comes hard data consistency:
  0. (every step) the DDIM step with the latent-DPS correction above;
  1. from z'_s, ``lookahead`` more unconditional DDIM steps give the estimate x0 (the code's look ahead);
  2. x0 is made to fit y by optimization (Eq. 8): in the middle third in pixel space,
     argmin_x ||y - A x||^2 from D(x0), then encoded; in the last third in latent space, argmin_z ||y - A(D(z))||^2;
  3. stochastic resampling (Eq. 9-10) maps the fitted z0_y back to time s: z_s given the forward marginal
     N(alpha_s z0_y, sigma_s^2) and z'_s read as a noisy observation of z_s with variance s2, i.e. mean
     (s2 alpha_s z0_y + sigma_s^2 z'_s) / (s2 + sigma_s^2), variance s2 sigma_s^2 / (s2 + sigma_s^2), where
     s2 = ``resampling_variance``: by default the authors' code, gamma (1 - abar_s) / (1 - abar_t) (1 - abar_t / abar_s)
     (gamma times the DDPM posterior variance of t -> s); ``variance: paper`` gives the paper's Eq. 10,
     gamma (1 - abar_s) / abar_t (1 - abar_t / abar_s), larger by 1 / SNR(t) = (1 - abar_t) / abar_t.
The final code gets one more latent optimization. x0 is always the Tweedie estimate (z - sigma eps) / alpha;
the authors' code writes (z - sigma^2 eps) / alpha for the estimates it optimizes from. Optimizers are AdamW (the authors' lr, iterations and
stopping rules); each sample stops on its own, so a sample does not depend on the rest of its batch.
On a pixel prior (or the oracle) D and E are the identity and both optimizations act on the sample itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..schedule import transition
from ..settings import Settings, bounded
from . import fidelity
from .adam import OneTensorAdam
from .common import report, start_noise
from .time_grids import ddim_path, jump_schedule, moves


@dataclass
class ReSampleConfig(Settings):
    steps: int = bounded(500, low=1)  # DDIM grid (stride T // steps)
    eta: float = bounded(0.0, low=0.0, high=1.0)  # deterministic DDIM, as the authors run it
    dps_scale: float = bounded(0.5, low=0.0)  # the latent-DPS step is dps_scale * alphabar_t
    every: int = bounded(10, low=1)  # hard data consistency every `every` grid steps (middle and last thirds)
    lookahead: int = bounded(5, low=0)  # unconditional DDIM steps before taking x0 for the optimization
    gamma: float = bounded(40.0, low=0.0, low_open=True)  # scale of the resampling variance
    variance: Literal["code", "paper"] = "code"  # the authors' code (default) or the paper's Eq. 10 (x 1 / SNR(t))
    pixel_lr: float = bounded(1e-2, low=0.0, low_open=True)
    pixel_iters: int = bounded(2000, low=1)
    latent_lr: float = bounded(5e-3, low=0.0, low_open=True)
    latent_iters: int = bounded(500, low=1)
    tol: float = bounded(1e-3, low=0.0)  # stop once the mean squared residual is below tol^2
    patience: int = bounded(200, low=0)  # latent fit stops when the loss is above that of `patience` iterations ago
    weight_decay: float = bounded(0.01, low=0.0)  # AdamW's default, which the authors' optimizers use


def fit_measurement(render, operator, y: Tensor, init: Tensor, lr: float, iters: int, cfg: ReSampleConfig,
                    patience: int = 0) -> Tensor:
    """argmin_v mean ||y - A(render(v))||^2 from ``init`` by AdamW (Eq. 8); every sample stops on its own."""
    v = init.detach().clone().requires_grad_(True)
    opt = OneTensorAdam(v, lr=lr, weight_decay=cfg.weight_decay)  # torch's AdamW, bitwise
    active = torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
    all_active, history = True, []
    for it in range(iters):
        with torch.enable_grad():
            loss = fidelity.mean_squared(operator, render(v), y)
            loss.sum().backward()
        before = None if all_active else v.detach().clone()
        opt.step()  # clears the gradient
        if before is not None:  # samples that had stopped stay where they stopped
            with torch.no_grad():
                v.copy_(torch.where(active.view(-1, *[1] * (v.ndim - 1)), v, before))
        loss = loss.detach()
        done = loss < cfg.tol**2
        if patience:
            history.append(loss)
            if it >= patience:
                done |= history[-patience - 1] < loss  # no progress over the last `patience` iterations
        active &= ~done
        remaining = int(active.sum())  # the one read-back an iteration (it was ``active.any()``)
        if remaining == 0:
            break
        all_active = remaining == v.shape[0]
    return v.detach()


def resampling_variance(abar_t: float, abar_s: float, gamma: float, form: str = "code") -> float:
    """The variance s2 of z'_s read as a noisy observation of z_s (module docstring, step 3)."""
    denominator = 1.0 - abar_t if form == "code" else abar_t
    return gamma * (1.0 - abar_s) / denominator * (1.0 - abar_t / abar_s)


def stochastic_resample(z0_y: Tensor, z_s: Tensor, abar_s: float, s2: float, noise: Tensor) -> Tensor:
    """Eq. 9-10: z ~ N(sqrt(abar_s) z0_y, 1 - abar_s) conditioned on z_s = z + N(0, s2), sampled with ``noise``."""
    v = 1.0 - abar_s
    mean = (s2 * abar_s**0.5 * z0_y + v * z_s) / (s2 + v)
    return mean + (s2 * v / (s2 + v)) ** 0.5 * noise


def resample_sample(prior, operator, y: Tensor, noise, cfg: ReSampleConfig, callback=None) -> Tensor:
    """Clean codes (B * per_query, ...) (decode them on a latent prior); the phases are those of the module
    docstring: 0. DDIM + latent-DPS step, 1. look ahead, 2. fit (pixel or latent), 3. resample, then a final fit."""
    z = start_noise(prior, operator, y, noise)
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    schedule = prior.schedule
    abar = lambda t: float(schedule.alpha(t)) ** 2  # noqa: E731
    path = moves(ddim_path(jump_schedule(cfg.steps, 1, 1, prior.num_train_timesteps)), cfg.steps, prior.num_train_timesteps)
    for position, (t, s) in zip(range(cfg.steps - 1, -1, -1), path):
        with torch.enable_grad():  # 0.
            z = z.detach().requires_grad_(True)
            x0 = prior.predict_x0(z, t)
            (grad,) = torch.autograd.grad(fidelity.residual_norm(operator, prior.decode(x0), y).sum(), z)
        mean, std = transition(schedule, z.detach(), x0.detach(), s, t, cfg.eta)
        z = mean + std * noise.like(mean) - cfg.dps_scale * abar(t) * grad
        report(callback, cfg.steps - 1 - position, t=t, z=z)
        if not (0 < position <= cfg.steps - cfg.steps // 3 and position % cfg.every == 0):
            continue
        with torch.no_grad():  # 1.
            z_ahead = z
            for t_k, s_k in path[cfg.steps - position: cfg.steps - position + cfg.lookahead]:
                if s_k < 0:
                    break
                x0 = prior.predict_x0(z_ahead, t_k)
                mean, std = transition(schedule, z_ahead, x0, s_k, t_k, cfg.eta)
                z_ahead = mean + std * noise.like(z)
        if position >= cfg.steps // 3:  # 2. middle third: fit in pixel space, then encode
            with torch.no_grad():
                x = fit_measurement(lambda v: v, operator, y, prior.decode(x0), cfg.pixel_lr, cfg.pixel_iters, cfg)
                z0_y = prior.encode(x)
        else:  # 2. last third: fit in latent space through the decoder
            z0_y = fit_measurement(prior.decode, operator, y, x0, cfg.latent_lr, cfg.latent_iters, cfg, cfg.patience)
        s2 = resampling_variance(abar(t), abar(s), cfg.gamma, cfg.variance)
        z = stochastic_resample(z0_y, z, abar(s), s2, noise.like(z))  # 3.
    return fit_measurement(prior.decode, operator, y, z, cfg.latent_lr, cfg.latent_iters, cfg, cfg.patience)
