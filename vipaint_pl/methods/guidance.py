"""Shared sampling pieces: the DPS likelihood gradient and a guided reverse-diffusion loop."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import rng
from ..schedule import transition


def descending_times(t_start: int, steps: int) -> list[int]:
    """``steps`` jumps from ``t_start`` down to the data (time -1), evenly spaced, strictly decreasing."""
    raw = torch.linspace(t_start, -1, steps + 1).round().long().tolist()
    times = [raw[0]]
    for t in raw[1:]:
        if t < times[-1]:
            times.append(t)
    return times


def measurement_residual(operator, x: Tensor, y: Tensor, squared: bool = False) -> Tensor:
    """||y - A(x)|| per sample for decoded images x, or its square."""
    r = (operator(x) - y).flatten(1)
    return r.pow(2).sum(1) if squared else r.norm(dim=1)


def residual_norm(operator, prior, x0: Tensor, y: Tensor, squared: bool = False) -> Tensor:
    """||y - A(D(x0))|| per sample (un-squared, as DPS uses it; Chung et al. 2023, Alg. 1), or its square."""
    return measurement_residual(operator, prior.decode(x0), y, squared)


def guided_reverse_diffusion(prior, z: Tensor, t_start: int, operator, y: Tensor, gens, per_query: int,
                             steps: int, step_size: float, eta: float, squared: bool = False,
                             guidance_loss=None) -> Tensor:
    """Reverse diffusion from z at ``t_start`` to the data, with DPS steps of size ``step_size``.

    Each step: x0 = E[z_0 | z_t] (Eq. 3); z_s ~ q(z_s | z_t, x0) (DDIM eta family);
    z_s -= step_size * grad_z ||y - A(D(x0))|| (DPS, Alg. 1; squared: of ||.||^2). Returns the clean code z_0.
    ``guidance_loss(x0) -> per-sample loss`` replaces the residual norm (PSLD, GML-DPS add terms to it).
    """
    if guidance_loss is None:
        guidance_loss = lambda x0: residual_norm(operator, prior, x0, y, squared)  # noqa: E731
    times = descending_times(t_start, steps)
    for t, s in zip(times[:-1], times[1:]):
        with torch.enable_grad():
            z = z.detach().requires_grad_(step_size > 0)
            x0 = prior.predict_x0(z, t)
            grad = None
            if step_size > 0:
                (grad,) = torch.autograd.grad(guidance_loss(x0).sum(), z)
        mean, std = transition(prior.schedule, z.detach(), x0.detach(), s, t, eta)
        z = mean + std * rng.randn(gens, per_query, z.shape[1:], z)
        if grad is not None:
            z = z - step_size * grad
    return z.detach()
