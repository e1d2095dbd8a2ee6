"""Replacement ("Blended"; Song et al. 2021, Avrahami et al. 2022): unconditional reverse steps, and after
each one the observed part of z_s is overwritten by the observation noised to time s.

For a general linear operator the "observed part" is the row space of A: with P = A^+ A,
z_s <- (I - P) z_s + P (alpha_s A^+ y + sigma_s eps). For inpainting P is the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .. import rng
from ..errors import ConfigError
from ..schedule import transition
from .guidance import descending_times


@dataclass
class BlendedConfig:
    steps: int = 250  # reverse steps from T - 1 to the data
    eta: float = 1.0  # 1 = DDPM ancestral steps; 0 = DDIM


def replace_observed(operator, z: Tensor, x_obs: Tensor, alpha: float, sigma: float, noise: Tensor) -> Tensor:
    """(I - P) z + P (alpha x_obs + sigma noise), P = A^+ A: the observed part noised to (alpha, sigma)."""
    project = lambda v: operator.pinv(operator(v))  # noqa: E731
    return z - project(z) + project(alpha * x_obs + sigma * noise)


def blended_sample(prior, operator, y: Tensor, shape, num_samples: int, gens, cfg: BlendedConfig | None = None) -> Tensor:
    """(B * num_samples, *shape) samples of a pixel-space prior; the observed part always comes from y."""
    if prior.is_latent:
        raise ConfigError("replacement works in the space the operator acts on; use a pixel prior (latent Blended: "
                          "see the blended method of the Lightning module)")
    cfg = cfg or BlendedConfig()
    x_obs = operator.pinv(y.repeat_interleave(num_samples, 0))
    z = rng.randn(gens, num_samples, shape, y)
    times = descending_times(prior.num_train_timesteps - 1, cfg.steps)
    for t, s in zip(times[:-1], times[1:]):
        x0 = prior.predict_x0(z, t)
        mean, std = transition(prior.schedule, z, x0, s, t, cfg.eta)
        z = mean + std * rng.randn(gens, num_samples, shape, z)
        alpha, sigma = float(prior.schedule.alpha(s)), float(prior.schedule.sigma(s))
        z = replace_observed(operator, z, x_obs, alpha, sigma, rng.randn(gens, num_samples, shape, z))
    return z
