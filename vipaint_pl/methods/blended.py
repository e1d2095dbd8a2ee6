"""Replacement ("Blended"; Song et al. 2021, Avrahami et al. 2022): unconditional reverse steps, and after
each one the observed part of z_s is overwritten by the observation noised to time s.

For a general linear operator the "observed part" is the row space of A: with P = A^+ A,
z_s <- (I - P) z_s + P (alpha_s A^+ y + sigma_s eps). For inpainting P is the mask.
On a latent prior (Blended Latent Diffusion, Avrahami et al. 2023) the observation is encoded,
z_obs = E(A^+ y), and P is the inpainting mask downsampled to the latent grid (a latent cell counts
as observed when at least half of its pixels are).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..operators import Inpainting
from ..schedule import transition
from ..settings import Settings, bounded
from .common import report, start_noise
from .time_grids import descending_times


@dataclass
class BlendedConfig(Settings):
    steps: int = bounded(250, low=1)  # reverse steps from T - 1 to the data
    eta: float = bounded(1.0, low=0.0, high=1.0)  # 1 = DDPM ancestral steps; 0 = DDIM


def replace_observed(project, z: Tensor, x_obs: Tensor, alpha: float, sigma: float, noise: Tensor) -> Tensor:
    """(I - P) z + P (alpha x_obs + sigma noise): the observed part, noised to (alpha, sigma), replaces z's."""
    return z - project(z) + project(alpha * x_obs + sigma * noise)


def observed_projection(prior, operator, y: Tensor, shape):
    """(P, x_obs) in the space the prior diffuses: A^+ A and A^+ y, or the latent mask and E(A^+ y)."""
    x_obs = operator.pinv(y)
    if not prior.is_latent:
        return (lambda v: operator.pinv(operator(v))), x_obs
    if not isinstance(operator, Inpainting):
        raise ConfigError("replacement on a latent prior needs an inpainting mask (Blended Latent Diffusion)")
    mask = operator.mask if operator.mask.ndim == 4 else operator.mask[None]
    mask = mask.amin(1, keepdim=True)  # a pixel counts as observed when every channel of it is
    latent_mask = (F.interpolate(mask.float(), size=tuple(shape[-2:]), mode="area") >= 0.5).to(y.dtype)
    return (lambda v: v * latent_mask), prior.encode(x_obs)


def blended_sample(prior, operator, y: Tensor, noise, cfg: BlendedConfig, callback=None) -> Tensor:
    """Clean codes (B * per_query, ...) (decode them on a latent prior); the observed part comes from y.

    Each step t -> s: 1. an unconditional reverse step; 2. the observed part replaced by y noised to s.
    """
    z = start_noise(prior, operator, y, noise)
    project, x_obs = observed_projection(prior, operator.repeat_interleave(noise.per_query), noise.repeat(y),
                                         z.shape[1:])
    times = descending_times(prior.num_train_timesteps - 1, cfg.steps)
    for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
        mean, std = transition(prior.schedule, z, prior.predict_x0(z, t), s, t, cfg.eta)
        z = mean + std * noise.like(z)  # 1.
        alpha, sigma = float(prior.schedule.alpha(s)), float(prior.schedule.sigma(s))
        z = replace_observed(project, z, x_obs, alpha, sigma, noise.like(z))  # 2.
        report(callback, i, t=t, z=z)
    return z
