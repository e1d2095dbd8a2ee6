"""The guided reverse diffusion shared by DPS, its latent variants and VIPaint's phase 2."""

from __future__ import annotations

import torch
from torch import Tensor

from ..schedule import transition
from .common import report
from .time_grids import descending_times


def guided_reverse_diffusion(prior, z: Tensor, t_start: int, noise, steps: int, step_size: float, eta: float,
                             guidance_loss, callback=None) -> Tensor:
    """Reverse diffusion from z at ``t_start`` to the data, with DPS steps of size ``step_size``.

    Each step t -> s (Chung et al., ICLR 2023, Alg. 1):
      1. x0 = E[z_0 | z_t]                           (Tweedie; VIPaint Eq. 3)
      2. z_s ~ q(z_s | z_t, x0)                      (DDIM eta family; eta = 1 is the DDPM step)
      3. z_s -= step_size * grad_{z_t} L(x0)         (``guidance_loss(x0)``: one loss per sample)
    Returns the clean code z_0; ``step_size = 0`` is unguided ancestral sampling.
    """
    times = descending_times(t_start, steps)
    for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
        with torch.enable_grad():
            z = z.detach().requires_grad_(step_size > 0)
            x0 = prior.predict_x0(z, t)  # 1.
            grad = None
            if step_size > 0:
                (grad,) = torch.autograd.grad(guidance_loss(x0).sum(), z)
        mean, std = transition(prior.schedule, z.detach(), x0.detach(), s, t, eta)
        z = mean + std * noise.like(mean)  # 2.
        if grad is not None:
            z = z - step_size * grad  # 3.
        report(callback, i, t=t, z=z, x0=x0.detach())
    return z.detach()
