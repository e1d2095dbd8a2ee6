"""RePaint (Lugmayr et al., CVPR 2022, Alg. 1): replacement with resampling.

At every reverse step t -> s the unknown part comes from the prior's step (DDPM, Eq. 8-9 of the paper),
the known part is the observation noised to s (Eq. 8, the same noise draw, as diffusers' scheduler has it),
and after every ``jump_length`` steps the chain is renoised ``jump_length`` steps back up by q(z_t | z_s)
and redone, ``jump_n_sample - 1`` times (time travel; ``time_travel.py``).

The observed part is that of ``blended.observed_projection``: the mask (row space of A for a general linear
operator) in pixel space, or the mask downsampled to the latent grid with z_obs = E(A^+ y) on a latent prior.
On a tiny pixel UNet with one grid step per training step and the same noise, this matches diffusers'
``RePaintPipeline``; with a coarser grid diffusers renoises with the betas of the next ``stride`` training
steps instead of those between the two grid times (an index shift of stride - 1); here the kernel is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .. import rng
from ..schedule import renoise, transition
from .blended import observed_projection, replace_observed
from .time_travel import jump_schedule, moves, repaint_path


@dataclass
class RePaintConfig:
    steps: int = 250  # grid of reverse steps (stride T // steps)
    jump_length: int = 10  # j: positions travelled back up at a time
    jump_n_sample: int = 10  # r: how many times each stretch is done (r - 1 resamplings)
    eta: float = 1.0  # 1 = DDPM steps (RePaint); 0 = DDIM


def repaint_sample(prior, operator, y: Tensor, shape, num_samples: int, gens, cfg: RePaintConfig | None = None) -> Tensor:
    """(B * num_samples, *shape) clean codes (decode them on a latent prior)."""
    cfg = cfg or RePaintConfig()
    project, x_obs = observed_projection(prior, operator, y.repeat_interleave(num_samples, 0), shape)
    schedule = prior.schedule
    z = rng.randn(gens, num_samples, shape, y)
    path = repaint_path(jump_schedule(cfg.steps, cfg.jump_length, cfg.jump_n_sample, prior.num_train_timesteps))
    for t, s in moves(path, cfg.steps, prior.num_train_timesteps):
        if s > t:  # time travel: back up the chain
            z = renoise(schedule, z, t, s, rng.randn(gens, num_samples, shape, z))
            continue
        noise = rng.randn(gens, num_samples, shape, z)
        mean, std = transition(schedule, z, prior.predict_x0(z, t), s, t, cfg.eta)
        alpha, sigma = float(schedule.alpha(s)), float(schedule.sigma(s))
        z = replace_observed(project, mean + std * noise, x_obs, alpha, sigma, noise)  # Alg. 1, lines 4-8
    return z
