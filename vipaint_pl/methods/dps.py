"""DPS (Chung et al., ICLR 2023, Alg. 1): reverse diffusion from pure noise with a likelihood gradient step.

x0 = E[x_0 | x_t]; x_{t-1} ~ DDPM step given x0; x_{t-1} -= zeta * grad_{x_t} ||y - A(x0)||.
Run on a latent prior, the gradient flows through the decoder (latent-DPS, paper 003).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .. import rng
from .guidance import guided_reverse_diffusion


@dataclass
class DPSConfig:
    steps: int = 1000  # reverse steps from T - 1 to the data (1000 = the authors' DDPM chain)
    step_size: float = 0.5  # zeta: 0.5 for inpainting, 0.3 for SR / deblurring (the authors' defaults)
    eta: float = 1.0  # 1 = DDPM ancestral steps; 0 = DDIM
    squared: bool = False  # gradient of ||y - A(x0)||^2 instead of the published un-squared norm


def dps_sample(prior, operator, y: Tensor, shape, num_samples: int, gens, cfg: DPSConfig | None = None) -> Tensor:
    """(B * num_samples, *shape) clean codes; ``y`` (B, ...) is repeated, ``operator`` acts on the whole batch."""
    cfg = cfg or DPSConfig()
    z = rng.randn(gens, num_samples, shape, y)
    t_start = prior.num_train_timesteps - 1
    return guided_reverse_diffusion(prior, z, t_start, operator, y.repeat_interleave(num_samples, 0), gens,
                                    num_samples, cfg.steps, cfg.step_size, cfg.eta, cfg.squared)
