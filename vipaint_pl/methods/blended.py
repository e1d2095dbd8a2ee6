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

from torch import Tensor

import torch.nn.functional as F

from .. import rng
from ..errors import ConfigError
from ..operators import Inpainting
from ..schedule import transition
from .guidance import descending_times


@dataclass
class BlendedConfig:
    steps: int = 250  # reverse steps from T - 1 to the data
    eta: float = 1.0  # 1 = DDPM ancestral steps; 0 = DDIM


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
    latent_mask = (F.interpolate(operator.mask.float(), size=tuple(shape[-2:]), mode="area") >= 0.5).to(y.dtype)
    return (lambda v: v * latent_mask), prior.encode(x_obs)


def blended_sample(prior, operator, y: Tensor, shape, num_samples: int, gens, cfg: BlendedConfig | None = None) -> Tensor:
    """(B * num_samples, *shape) clean codes (decode them on a latent prior); the observed part comes from y."""
    cfg = cfg or BlendedConfig()
    project, x_obs = observed_projection(prior, operator, y.repeat_interleave(num_samples, 0), shape)
    z = rng.randn(gens, num_samples, shape, y)
    times = descending_times(prior.num_train_timesteps - 1, cfg.steps)
    for t, s in zip(times[:-1], times[1:]):
        x0 = prior.predict_x0(z, t)
        mean, std = transition(prior.schedule, z, x0, s, t, cfg.eta)
        z = mean + std * rng.randn(gens, num_samples, shape, z)
        alpha, sigma = float(prior.schedule.alpha(s)), float(prior.schedule.sigma(s))
        z = replace_observed(project, z, x_obs, alpha, sigma, rng.randn(gens, num_samples, shape, z))
    return z
