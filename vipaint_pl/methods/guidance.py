"""The guided reverse diffusion shared by DPS, its latent variants and VIPaint's phase 2."""

from __future__ import annotations

import torch
from torch import Tensor

from ..schedule import transition, transition_x_coefficient
from . import fidelity
from .common import predict_x0, report
from .time_grids import descending_times


def guided_reverse_diffusion(prior, z: Tensor, t_start: int, noise, steps: int, step_size: float, eta: float,
                             guidance_loss, callback=None, clip_x0: bool = False) -> Tensor:
    """Reverse diffusion from z at ``t_start`` to the data, with DPS steps of size ``step_size``.

    Each step t -> s (Chung et al., ICLR 2023, Alg. 1):
      1. x0 = E[z_0 | z_t]                           (Tweedie; VIPaint Eq. 3)
      2. z_s ~ q(z_s | z_t, x0)                      (DDIM eta family; eta = 1 is the DDPM step)
      3. z_s -= step_size * grad_{z_t} L(x0)         (``guidance_loss(x0)``: one loss per sample)
    Returns the clean code z_0; ``step_size = 0`` is unguided ancestral sampling. ``clip_x0`` clips x0 to
    the prior's data range (``common.predict_x0``).
    """
    times = descending_times(t_start, steps)
    for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
        with torch.enable_grad():
            z = z.detach().requires_grad_(step_size > 0)
            x0 = predict_x0(prior, z, t, clip_x0)  # 1.
            grad = None
            if step_size > 0:
                (grad,) = torch.autograd.grad(guidance_loss(x0).sum(), z)
        mean, std = transition(prior.schedule, z.detach(), x0.detach(), s, t, eta)
        z = mean + std * noise.like(mean)  # 2.
        if grad is not None:
            z = z - step_size * grad  # 3.
        report(callback, i, t=t, z=z, x0=x0)
    return z.detach()


def tweedie_guided_reverse_diffusion(prior, z: Tensor, t_start: int, noise, steps: int, eta: float, operator,
                                     y: Tensor, sigma_y: float, callback=None, t_end: int = -1,
                                     variance: str = "plug-in", x_var: str = "unit-data") -> Tensor:
    """Reverse diffusion from z at ``t_start`` to ``t_end`` (default: the data), each step conditioned on y
    by Tweedie's formula.

    Each step t -> s:
      1. x0 = E[z_0 | z_t]                                                  (Tweedie)
      2. log p(y | z_t) ~ log N(y; A D(x0), sigma_y^2 I + r_t^2 A A^T),  r_t^2 = sigma_t^2
         (x0's spread given z_t for unit-variance data, as in Song et al., ICLR 2023, "Pseudoinverse-
         guided diffusion models"; A A^T from the operator's ``whitened_square``: exact for inpainting and
         dense operators, taken as I for the others). ``x_var="jacobian"``: r_t^2 estimated per sample from
         the denoiser (``jacobian_variance``; exact on Gaussian priors of any variance), one more backward pass
      3. E[z_0 | z_t, y] = x0 + (sigma_t^2 / alpha_t) grad_{z_t} log p(y | z_t)   (Tweedie, conditional)
      4. z_s ~ q(z_s | z_t, E[z_0 | z_t, y])                               (DDIM eta family)
         ``variance="unit-data"``: with z_0 integrated out, z_0 | z_t, y taken as the Gaussian posterior of unit-
         variance data (prior variance r_t^2, the operator's ``conditional_noise``: exact for inpainting and dense
         operators, an upper bound for the others and for latent priors). The plug-in step drops that variance,
         which narrows every jump and turns the last one (to the data) into a posterior mean. On a unit Gaussian
         prior, DDPM steps (eta 1) with it are exact, at any step size (tested).
    The step size is set by sigma_y and the schedule, not tuned: on a Gaussian prior with unit variance the
    exact posterior's width is kept in the observed and the unobserved directions alike.
    """
    schedule = prior.schedule
    times = descending_times(t_start, steps, t_end)
    probes = noise.stream("probes") if x_var == "jacobian" else None
    for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
        sigma = float(schedule.sigma(t))
        x0, shift = tweedie_shift(prior, z, t, operator, y, sigma_y, x_var, probes)  # 1.-3.
        x0_y = x0 + shift
        mean, std = transition(schedule, z.detach(), x0_y, s, t, eta)
        z = mean + std * noise.like(mean)  # 4.
        if variance == "unit-data":
            spread = noise.like(mean)
            spread = sigma * spread if prior.is_latent else operator.conditional_noise(spread, sigma**2, sigma_y)
            z = z + float(transition_x_coefficient(schedule, s, t, eta)) * spread
        report(callback, i, t=t, z=z, x0=x0_y)
    return z.detach()


def tweedie_shift(prior, z: Tensor, t: int, operator, y: Tensor, sigma_y: float, x_var: str = "unit-data",
                  probes=None) -> tuple[Tensor, Tensor]:
    """x0 = E[z_0 | z_t] and the shift E[z_0 | z_t, y] - x0 = (sigma_t^2 / alpha_t) grad_{z_t} log p(y | z_t), with
    log p(y | z_t) ~ log N(y; A D(x0), sigma_y^2 I + r_t^2 A A^T) (steps 1-3 of
    ``tweedie_guided_reverse_diffusion``); both detached. ``x_var`` sets r_t^2: "unit-data" takes sigma_t^2 (data of
    unit variance); "jacobian" estimates it per sample from the denoiser (``jacobian_variance``, one probe drawn
    from the stream ``probes``)."""
    alpha, sigma = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        x0 = prior.predict_x0(z, t)
        x = prior.decode(x0)
        var = sigma**2 if x_var == "unit-data" else jacobian_variance(operator, z, x0, x, alpha, sigma, probes)
        log_lik = -fidelity.tweedie_nll(operator, x, y, var, sigma_y)
        (grad,) = torch.autograd.grad(log_lik.sum(), z)
    return x0.detach(), (sigma**2 / alpha) * grad


def jacobian_variance(operator, z: Tensor, x0: Tensor, x: Tensor, alpha: float, sigma: float, probes) -> Tensor:
    """r_t^2 per sample (B,): the measured part's mean variance tr(A Cov[D(z_0) | z_t] A^T) / tr(A A^T), with
    Cov[z_0 | z_t] = (sigma_t^2 / alpha_t) d E[z_0 | z_t] / d z_t (second-order Tweedie; Meng et al., NeurIPS 2021)
    and the decoder linearized, Cov[D(z_0)] ~ D' Cov D'^T. Hutchinson's estimator with one Rademacher probe u on y:
    g = D'^T A^T u, r_t^2 ~ (sigma_t^2 / alpha_t) g^T (dx0/dz) g / ||A^T u||^2. Exact on a Gaussian prior of isotropic
    variance v: v sigma_t^2 / (alpha_t^2 v + sigma_t^2), where "unit-data" takes v = 1. ``x0`` and ``x = D(x0)``
    must be functions of ``z`` with their graphs kept."""
    measured_x = operator(x)
    u = torch.sign(probes.like(measured_x))
    (g,) = torch.autograd.grad((measured_x * u).sum(), x0, retain_graph=True)  # D'^T A^T u
    (h,) = torch.autograd.grad((x0 * g.detach()).sum(), z, retain_graph=True)  # (dx0/dz)^T g
    quadratic = (g * h).flatten(1).sum(1)
    measured = operator.transpose(u).flatten(1).pow(2).sum(1)
    return ((sigma**2 / alpha) * quadratic / measured).clamp_min(0.0).detach()


def langevin_corrector(prior, z: Tensor, t: int, operator, y: Tensor, sigma_y: float, noise, steps: int,
                       step_scale: float, callback=None, x_var: str = "unit-data", momentum: float = 0.0) -> Tensor:
    """``steps`` unadjusted Langevin steps at time t on p(z_t | y) ~ p(z_t) N(y; A D(x0), sigma_y^2 I + r_t^2 A A^T)
    (the corrector of Song et al., ICLR 2021, with the likelihood of ``tweedie_shift``; ``x_var`` sets r_t^2):
        z <- z + h grad log p(z_t | y) + sqrt(2 h) xi,   h = step_scale * sigma_t^2,
    with grad log p(z_t) = (alpha_t x0 - z_t) / sigma_t^2 (Tweedie) and grad log p(y | z_t) = alpha_t shift / sigma_t^2,
    so each step is z <- z + step_scale (alpha_t (x0 + shift) - z) + sqrt(2 step_scale) sigma_t xi. The step is a fixed
    share of sigma_t^2, which bounds the curvature of the smoothed log-density: no step size to tune per problem.
    ``callback(i, info)`` sees every step, with ``info["phase"] == "corrector"``.

    ``momentum`` eta > 0 runs underdamped (kinetic) Langevin instead, with a velocity v ~ N(0, I) kept across steps,
    kicked by delta grad log p(z_t | y), drifted by delta v (delta = sqrt(h)) and refreshed as v <- eta v +
    sqrt(1 - eta^2) xi (``_kinetic_corrector``; one gradient a step, as before). Along a direction of curvature l the
    overdamped step moves towards the target at a rate h l a step, the kinetic one at about sqrt(h l): far faster along
    the data's wide directions, where h l is small (Cheng et al., COLT 2018; the damped form DAPS runs)."""
    alpha, sigma = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    probes = noise.stream("probes") if x_var == "jacobian" else None
    if momentum > 0 and steps > 0:
        return _kinetic_corrector(prior, z, t, operator, y, sigma_y, noise, steps, step_scale, callback, x_var,
                                  momentum, probes)
    for i in range(steps):
        x0, shift = tweedie_shift(prior, z, t, operator, y, sigma_y, x_var, probes)
        z = z + step_scale * (alpha * (x0 + shift) - z) + (2 * step_scale) ** 0.5 * sigma * noise.like(z)
        report(callback, i, t=t, z=z, x0=x0, phase="corrector")
    return z.detach()


def _kinetic_corrector(prior, z: Tensor, t: int, operator, y: Tensor, sigma_y: float, noise, steps: int,
                       step_scale: float, callback, x_var: str, momentum: float, probes) -> Tensor:
    """``langevin_corrector`` with momentum, in the BAOAB splitting (Leimkuhler and Matthews, AMRX 2013): half a kick,
    half a drift, the velocity refresh, half a drift, half a kick, with grad log p(z_t | y) = (alpha_t (x0 + shift) -
    z) / sigma_t^2 and delta = sqrt(step_scale) sigma_t. Its positions keep a Gaussian target's law exactly at any
    stable step (the overdamped steps widen it by about h l / 2); each step's last gradient is the next one's first,
    and the last step's final half kick (on a velocity then dropped) is not taken: ``steps`` gradients in all."""
    alpha, sigma = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    half, refresh = 0.5 * step_scale**0.5 * sigma, (1 - momentum**2) ** 0.5

    def score(z: Tensor) -> tuple[Tensor, Tensor]:
        x0, shift = tweedie_shift(prior, z, t, operator, y, sigma_y, x_var, probes)
        return (alpha * (x0 + shift) - z) / sigma**2, x0

    velocity, (grad, x0) = noise.like(z), score(z)
    for i in range(steps):
        velocity = velocity + half * grad  # B
        z = z + half * velocity  # A
        velocity = momentum * velocity + refresh * noise.like(z)  # O
        z = (z + half * velocity).detach()  # A
        report(callback, i, t=t, z=z, x0=x0, phase="corrector")
        if i < steps - 1:
            grad, x0 = score(z)
            velocity = velocity + half * grad  # B
    return z.detach()
