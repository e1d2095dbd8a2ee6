"""DPS (Chung et al., ICLR 2023, Alg. 1) and its latent variants (Rout et al., NeurIPS 2023, paper 003).

x0 = E[x_0 | x_t]; x_{t-1} ~ DDPM step given x0; x_{t-1} -= zeta * grad_{x_t} L(x0), with
- DPS / latent-DPS:  L = ||y - A(D(z0))||  (on a latent prior the gradient flows through the decoder);
- GML-DPS:           L = omega ||y - A(D(z0))|| + gamma ||z0 - E(D(z0))||  (the decoder-encoder fixed point);
- PSLD:              L = omega ||y - A(D(z0))|| + gamma ||z0 - E(A^T y + (I - A^T A) D(z0))||  (the gluing term).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .. import rng
from ..errors import ConfigError
from .guidance import guided_reverse_diffusion, measurement_residual, residual_norm

VARIANTS = ("dps", "gml-dps", "psld")


@dataclass
class DPSConfig:
    steps: int = 1000  # reverse steps from T - 1 to the data (1000 = the authors' DDPM chain)
    step_size: float = 0.5  # zeta: 0.5 for inpainting, 0.3 for SR / deblurring (the authors' defaults)
    eta: float = 1.0  # 1 = DDPM ancestral steps; 0 = DDIM
    squared: bool = False  # gradient of ||y - A(x0)||^2 instead of the published un-squared norm
    variant: str = "dps"  # dps | gml-dps | psld (paper 003)
    gamma: float = 0.1  # weight of the GML / gluing term (PSLD: 0.1; SD box inpainting: 0.01)
    omega: float = 1.0  # weight of the measurement term in GML-DPS / PSLD (SD box inpainting: 0.1)


def guidance_loss(prior, operator, y: Tensor, cfg: DPSConfig):
    """Per-sample loss L(z0) whose gradient through z0 = E[z_0 | z_t] guides each step."""
    if cfg.variant not in VARIANTS:
        raise ConfigError(f"unknown DPS variant {cfg.variant!r}; choose one of {', '.join(VARIANTS)}")
    if cfg.variant == "dps":
        return lambda z0: residual_norm(operator, prior, z0, y, cfg.squared)

    def loss(z0: Tensor) -> Tensor:
        x0 = prior.decode(z0)
        fit = measurement_residual(operator, x0, y, cfg.squared)
        if cfg.variant == "gml-dps":
            target = x0
        else:  # PSLD gluing: the observed part from y, the rest from the decoded estimate
            target = operator.transpose(y) + x0 - operator.transpose(operator(x0))
        glue = (z0 - prior.encode(target)).flatten(1).norm(dim=1)
        return cfg.omega * fit + cfg.gamma * glue

    return loss


def dps_sample(prior, operator, y: Tensor, shape, num_samples: int, gens, cfg: DPSConfig | None = None) -> Tensor:
    """(B * num_samples, *shape) clean codes; ``y`` (B, ...) is repeated, ``operator`` acts on the whole batch."""
    cfg = cfg or DPSConfig()
    z = rng.randn(gens, num_samples, shape, y)
    t_start = prior.num_train_timesteps - 1
    y = y.repeat_interleave(num_samples, 0)
    return guided_reverse_diffusion(prior, z, t_start, operator, y, gens, num_samples, cfg.steps, cfg.step_size,
                                    cfg.eta, guidance_loss=guidance_loss(prior, operator, y, cfg))
