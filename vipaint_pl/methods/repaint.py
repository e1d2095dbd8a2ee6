"""RePaint (Lugmayr et al., CVPR 2022, Alg. 1): replacement with resampling.

At every reverse step t -> s the unknown part comes from the prior's step (DDPM, Eq. 8-9 of the paper),
the known part is the observation noised to s (Eq. 8, the same noise draw, as diffusers' scheduler has it),
and after every ``jump_length`` steps the chain is renoised ``jump_length`` steps back up by q(z_t | z_s)
and redone, ``jump_n_sample - 1`` times (time travel; ``time_grids.py``).

The observed part is that of ``blended.observed_projection``: the mask (row space of A for a general linear
operator) in pixel space, or the mask downsampled to the latent grid with z_obs = E(A^+ y) on a latent prior.
On a tiny pixel UNet with one grid step per training step and the same noise, this matches diffusers'
``RePaintPipeline``; with a coarser grid diffusers renoises with the betas of the next ``stride`` training
steps instead of those between the two grid times (an index shift of stride - 1); here the kernel is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..schedule import renoise, transition
from ..settings import Settings, bounded
from .blended import observed_projection, replace_observed
from .common import predict_x0, report, start_noise
from .time_grids import jump_schedule, moves, repaint_path


@dataclass
class RePaintConfig(Settings):
    steps: int = bounded(250, low=1)  # grid of reverse steps (stride T // steps)
    jump_length: int = bounded(10, low=1)  # j: positions travelled back up at a time
    jump_n_sample: int = bounded(10, low=1)  # r: how many times each stretch is done (r - 1 resamplings)
    eta: float = bounded(1.0, low=0.0, high=1.0)  # 1 = DDPM steps (RePaint); 0 = DDIM
    clip_x0: bool = True  # clip x0 to [-1, 1] on pixel priors (diffusers' RePaintScheduler clip_sample)


def repaint_sample(prior, operator, y: Tensor, noise, cfg: RePaintConfig, callback=None) -> Tensor:
    """Clean codes (B * per_query, ...) (decode them on a latent prior).

    Along the path: 1. a move up is the forward kernel (time travel); 2. a move down is a reverse step whose
    observed part is replaced by y noised to the new time, with the same noise draw (Alg. 1, lines 4-8).
    """
    z = start_noise(prior, operator, y, noise)
    project, x_obs = observed_projection(prior, operator.repeat_interleave(noise.per_query), noise.repeat(y),
                                         z.shape[1:])
    schedule = prior.schedule
    path = repaint_path(jump_schedule(cfg.steps, cfg.jump_length, cfg.jump_n_sample, prior.num_train_timesteps))
    for i, (t, s) in enumerate(moves(path, cfg.steps, prior.num_train_timesteps)):
        if s > t:  # 1.
            z = renoise(schedule, z, t, s, noise.like(z))
            continue
        eps = noise.like(z)  # 2.
        mean, std = transition(schedule, z, predict_x0(prior, z, t, cfg.clip_x0), s, t, cfg.eta)
        alpha, sigma = float(schedule.alpha(s)), float(schedule.sigma(s))
        z = replace_observed(project, mean + std * eps, x_obs, alpha, sigma, eps)
        report(callback, i, t=t, z=z)
    return z
