"""CoPaint and CoPaint-TT (Zhang et al., ICLR 2023, "Towards coherent image inpainting using denoising
diffusion implicit models"): before each DDIM step the whole sample z_t is optimized,

    z_t <- argmin_z ||y - A(D(x0(z, t)))||^2 + xi_t ||z - z_t||^2        (Eq. 9-10; x0(z, t) = E[z_0 | z_t = z])

by ``opt_steps`` gradient steps, so that the one-step estimate x0 agrees with the observation and the
revealed and unrevealed parts stay coherent. Step size and weight follow the authors' code: the step size
starts at ``lr``, is scaled by alpha_t / alpha_0 at time t, shrinks by ``backtrack`` while the loss would
rise, and grows by ``lr_growth`` per reverse step; xi grows by ``reg_growth``. CoPaint-TT
(``time_travel``) adds RePaint's time travel (jump 10, 2 passes), optimizing z_t again before going back up.

Each sample has its own step size, so a sample does not depend on the others in its batch. The estimate
x0 is not clipped (the oracle's mixture is not confined to [-1, 1]). On a latent prior the loss goes
through the decoder, as in latent-DPS; the method was published for pixel priors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..schedule import per_sample, renoise, transition
from ..settings import Settings, bounded
from . import fidelity
from .common import predict_x0, report, start_noise
from .time_grids import ddim_path, jump_schedule, moves


@dataclass
class CoPaintConfig(Settings):
    steps: int = bounded(250, low=1)  # DDIM grid (stride T // steps)
    eta: float = bounded(0.0, low=0.0, high=1.0)  # the authors run deterministic DDIM
    opt_steps: int = bounded(2, low=0)  # gradient steps on z_t per reverse step
    lr: float = bounded(0.02, low=0.0)
    lr_growth: float = bounded(1.012, low=0.0, low_open=True)  # step size growth per reverse step
    reg: float = bounded(1e-4, low=0.0)  # xi: weight of ||z - z_t||^2
    reg_growth: float = bounded(1.01, low=0.0, low_open=True)
    backtrack: float = bounded(0.8, low=0.0, high=1.0, low_open=True)  # shrink factor while a step raises the loss
    max_backtracks: int = bounded(20, low=1)  # after that many shrinks the sample stays where it is
    time_travel: bool = False  # CoPaint-TT
    jump_length: int = bounded(10, low=1)
    jump_n_sample: int = bounded(2, low=1)
    clip_x0: bool = True  # clip x0 to [-1, 1] on pixel priors, as the authors' code (the clip shapes the gradient)


@dataclass
class CoPaintTTConfig(CoPaintConfig):
    """CoPaint-TT: CoPaint with time travel (jump 10 x 2)."""

    time_travel: bool = True


def optimize_xt(prior, operator, y: Tensor, z_t: Tensor, t: int, lr: float, reg: float, cfg: CoPaintConfig):
    """``cfg.opt_steps`` backtracking gradient steps on Eq. 10; returns the new z_t and its x0 estimate."""
    anchor = z_t.detach()
    step = torch.full((z_t.shape[0],), lr * float(prior.schedule.alpha(t) / prior.schedule.alpha(0)),
                      dtype=z_t.dtype, device=z_t.device)

    def evaluate(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():  # the accepted candidate's graph gives the next gradient
            z = z.detach().requires_grad_(True)
            x0 = predict_x0(prior, z, t, cfg.clip_x0)
            loss = fidelity.squared_norm(operator, prior.decode(x0), y) + reg * (z - anchor).flatten(1).pow(2).sum(1)
            return z, loss, x0

    z, loss, x0 = evaluate(anchor)
    for _ in range(cfg.opt_steps):
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss.sum(), z)
        pending = torch.ones_like(step, dtype=torch.bool)
        for _ in range(cfg.max_backtracks):  # shrink each sample's step until its loss does not rise
            candidate = evaluate(z - per_sample(step, z) * grad)
            pending = pending & ~(candidate[1].detach() <= loss.detach())  # NaN counts as a rise
            if not pending.any():
                break
            step = torch.where(pending, step * cfg.backtrack, step)
        if pending.any():  # no acceptable step for some samples: they stay
            step = torch.where(pending, torch.zeros_like(step), step)
            candidate = evaluate(z - per_sample(step, z) * grad)
        z, loss, x0 = candidate
    return z.detach(), x0.detach()


def copaint_sample(prior, operator, y: Tensor, noise, cfg: CoPaintConfig, callback=None) -> Tensor:
    """Clean codes (B * per_query, ...) (decode them on a latent prior).

    Along the authors' path (never up from the data): 1. before going back up (time travel), z_t is
    optimized once more, then renoised; 2. a move down optimizes z_t (Eq. 10), then takes the DDIM step
    from it; the step size and xi grow per step down and shrink back per step up.
    """
    z = start_noise(prior, operator, y, noise)
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    lr, reg, reversing = cfg.lr, cfg.reg, False
    jump_n_sample = cfg.jump_n_sample if cfg.time_travel else 1
    path = ddim_path(jump_schedule(cfg.steps, cfg.jump_length, jump_n_sample, prior.num_train_timesteps))
    for i, (t, s) in enumerate(moves(path, cfg.steps, prior.num_train_timesteps)):
        if s > t:  # 1.
            if reversing:
                z, _ = optimize_xt(prior, operator, y, z, t, lr, reg, cfg)
            z = renoise(prior.schedule, z, t, s, noise.like(z))
            lr, reg, reversing = lr / cfg.lr_growth, reg / cfg.reg_growth, False
            continue
        z, x0 = optimize_xt(prior, operator, y, z, t, lr, reg, cfg)  # 2.
        mean, std = transition(prior.schedule, z, x0, s, t, cfg.eta)
        z = mean + std * noise.like(z)
        lr, reg, reversing = lr * cfg.lr_growth, reg * cfg.reg_growth, True
        report(callback, i, t=t, z=z, x0=x0)
    return z
