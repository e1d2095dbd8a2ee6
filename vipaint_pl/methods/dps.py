"""DPS (Chung et al., ICLR 2023, Alg. 1) and its latent variants (Rout et al., NeurIPS 2023).

x0 = E[x_0 | x_t]; x_{t-1} ~ DDPM step given x0; x_{t-1} -= zeta * grad_{x_t} L(x0), with
- DPS / latent-DPS:  L = ||y - A(D(z0))||  (on a latent prior the gradient flows through the decoder);
- GML-DPS:           L = omega ||y - A(D(z0))|| + gamma ||z0 - E(D(z0))||  (the decoder-encoder fixed point);
- PSLD:              L = omega ||y - A(D(z0))|| + gamma ||z0 - E(A^T y + (I - A^T A) D(z0))||  (the gluing term).
Each variant has its authors' defaults as its own config (``DPSConfig``, ``GMLDPSConfig``, ``PSLDConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..settings import Settings, bounded
from . import fidelity
from .common import start_noise
from .guidance import guided_reverse_diffusion


# The authors' step size and DDIM eta of each variant: DPS and GML-DPS run the DDPM chain with zeta 0.5
# (inpainting; 0.3 for SR / deblurring), PSLD runs DDIM (eta 0) with step size 1.
VARIANT_DEFAULTS = {"dps": {"step_size": 0.5, "eta": 1.0}, "gml-dps": {"step_size": 0.5, "eta": 1.0},
                    "psld": {"step_size": 1.0, "eta": 0.0}}


@dataclass
class DPSConfig(Settings):
    """DPS and its latent variants. ``step_size`` and ``eta`` left unset take the chosen variant's authors'
    values (``VARIANT_DEFAULTS``), so ``DPSConfig(variant="psld")`` is PSLD as published."""

    steps: int = bounded(1000, low=1)  # reverse steps from T - 1 to the data (1000 = the authors' chains)
    step_size: float | None = bounded(None, low=0.0)  # zeta; None: the variant's (DPS 0.5, PSLD 1.0)
    eta: float | None = bounded(None, low=0.0, high=1.0)  # 1 = DDPM ancestral steps; 0 = DDIM; None: the variant's
    loss: Literal["norm", "squared"] = "norm"  # the published un-squared residual norm, or its square
    variant: Literal["dps", "gml-dps", "psld"] = "dps"
    gamma: float = bounded(0.1, low=0.0)  # weight of the GML / gluing term (PSLD: 0.1; SD box inpainting: 0.01)
    omega: float = bounded(1.0, low=0.0)  # weight of the measurement term in GML-DPS / PSLD (SD box: 0.1)
    clip_x0: bool = True  # clip x0 to [-1, 1] on pixel priors, as the official DPS (clip_denoised)

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, value in VARIANT_DEFAULTS[self.variant].items():
            if getattr(self, key) is None:
                setattr(self, key, value)


@dataclass
class GMLDPSConfig(DPSConfig):
    variant: Literal["dps", "gml-dps", "psld"] = "gml-dps"


@dataclass
class PSLDConfig(DPSConfig):
    """PSLD as its authors run it: DDIM (eta 0), step size 1, gamma 0.1, omega 1."""

    variant: Literal["dps", "gml-dps", "psld"] = "psld"


def guidance_loss(prior, operator, y: Tensor, cfg: DPSConfig):
    """Per-sample loss L(z0) whose gradient through z0 = E[z_0 | z_t] guides each step."""
    measurement = fidelity.SIMPLE_LOSSES[cfg.loss]
    if cfg.variant == "dps":
        return lambda z0: measurement(operator, prior.decode(z0), y)

    def loss(z0: Tensor) -> Tensor:
        x0 = prior.decode(z0)
        extra = fidelity.fixed_point(prior, z0, x0) if cfg.variant == "gml-dps" else \
            fidelity.gluing(prior, operator, z0, x0, y)
        return cfg.omega * measurement(operator, x0, y) + cfg.gamma * extra

    return loss


def dps_sample(prior, operator, y: Tensor, noise, cfg: DPSConfig, callback=None) -> Tensor:
    """Clean codes (B * per_query, ...): a guided reverse chain from z_T ~ N(0, I)."""
    z = start_noise(prior, operator, y, noise)
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    return guided_reverse_diffusion(prior, z, prior.num_train_timesteps - 1, noise, cfg.steps, cfg.step_size,
                                    cfg.eta, guidance_loss(prior, operator, y, cfg), callback, cfg.clip_x0)
