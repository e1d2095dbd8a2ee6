"""MGPS: midpoint guidance posterior sampling (Moufad et al., "Variational diffusion posterior sampling with
midpoint guidance", ICLR 2025).

The reverse chain walks a grid t_n > ... > t_1 (the authors' ``linspace(0, T - 1, steps)`` on their 0..T-1
scale, where 0 is the data; here -1 is the data, so every time is theirs minus one). A step from z_t to
z_{t'} (t' the next grid time) goes through a midpoint m = floor(alpha t') < t' (Sec. 3, Eq. 3.4-3.6):
  1. fit a diagonal Gaussian q(z_m) = N(mu, diag(s^2)) to the posterior of the midpoint,
        pi(z_m | z_t) ∝ g(x0hat(z_m)) p(z_m | z_t),  g(x) = N(y; A x, sigma^2 I),
     by a few Adam steps (a fresh Adam each step) on its negative bound
        KL(q || p(z_m | z_t)) - E_q log g(x0hat(z_m))       (one reparameterised draw per Adam step),
     with p(z_m | z_t) = q(z_m | z_t, x0hat(z_t)) (the DDPM posterior) and q started at the bridge
     q(z_m | z_t, x0) from the previous step's x0 (the "warm" initialisation of their code);
  2. z_m ~ q, then z_{t'} ~ q(z_{t'} | z_m, z_t), the forward chain's bridge between the two (Eq. 3.5).
On a latent prior g acts on the decoding D(x0hat(z_m)). The sample is x0hat(z_{t_1}, t_1).

The authors' code adds, for t >= 0.7 T on images ("warm start"), a second fit per step: a Gaussian on z at
the authors' time 1 (here 0), the posterior of p(z_1 | z_m) p_1(z_1) g(z_1) with the prior's score for
log p_1, and steps from it; this is ``warm_start_from`` (a fraction of T; 2 = never, their setting on the
Gaussian mixture). Gradient steps per step follow their per-dataset schedules (``GRADIENT_STEPS``): more
steps on the first steps and on every 10th. Defaults per kind of prior are their contexts: pixel priors =
FFHQ (lr 0.03, alpha 0.5), latent priors = FFHQ-LDM (lr 0.03, alpha 1 - no midpoint - once t' <= T / 2),
the Gaussian-mixture oracle = their "gmm" context (lr 0.1, no warm start). sigma defaults to the operator's
sigma_y, else the authors' experiment value 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..schedule import DATA_TIME, bridge, gaussian_kl, transition
from ..settings import Settings, bounded
from . import fidelity
from .common import prior_kind, report, start_noise
from .time_grids import midpoint_grid


@dataclass(frozen=True)
class GradientSteps:
    """The authors' schedule of Adam steps for step index i (from n - 1 down to 2; n = grid length):
    ``last`` on the final steps i <= ``last_from``, ``first`` on the first ``first_steps`` (i >= n - first_steps),
    ``periodic`` when i % 10 == 0, ``default`` otherwise (the conditions are read in that order)."""

    last_from: int
    last: int
    first_steps: int
    first: int
    periodic: int
    default: int

    def count(self, i: int, n: int) -> int:
        if i <= self.last_from:
            return self.last
        if i >= n - self.first_steps:
            return self.first
        return self.periodic if i % 10 == 0 else self.default


# configs/experiments/sampler/mgps.yaml of the authors' code, context by context
GRADIENT_STEPS = {"pixel": GradientSteps(20, 2, 5, 20, 20, 2), "latent": GradientSteps(10, 2, 5, 20, 10, 5),
                  "mixture": GradientSteps(20, 2, 10, 20, 20, 2)}
KIND_DEFAULTS = {"pixel": {"lr": 0.03, "warm_start_from": 0.7, "alpha_low_noise": 0.5},
                 "latent": {"lr": 0.03, "warm_start_from": 0.7, "alpha_low_noise": 1.0},
                 "mixture": {"lr": 0.1, "warm_start_from": 2.0, "alpha_low_noise": 0.5}}


@dataclass
class MGPSConfig(Settings):
    """MGPS. Settings left unset take the authors' values for the prior's kind (``KIND_DEFAULTS``)."""

    steps: int = bounded(300, low=3)  # grid length (the authors' 300)
    alpha: float = bounded(0.5, low=0.0, high=1.0, low_open=True)  # midpoint m = floor(alpha t') for t' > T / 2
    alpha_low_noise: float | None = bounded(None, low=0.0, high=1.0, low_open=True)  # ... for t' <= T / 2
    lr: float | None = bounded(None, low=0.0, low_open=True)  # Adam's learning rate
    grad_steps: int | None = bounded(None, low=0)  # Adam steps on every step; None: the authors' schedule
    warm_start_from: float | None = bounded(None, low=0.0)  # fraction of T from which the z_1 fit runs
    sigma: float | None = bounded(None, low=0.0, low_open=True)  # None: the operator's sigma_y, else 0.05

    def resolved(self, kind: str, sigma_y: float) -> MGPSConfig:
        """The config with every unset value filled in for this kind of prior and operator."""
        values = {k: v for k, v in KIND_DEFAULTS[kind].items() if getattr(self, k) is None}
        if self.sigma is None:
            values["sigma"] = sigma_y if sigma_y > 0 else 0.05
        return self.replace(**values)


def fit_gaussian(init_mean: Tensor, init_std: Tensor, loss, steps: int, lr: float, noise) -> Tensor:
    """Adam on (mu, log s) of a diagonal Gaussian for ``loss(mu, log_s, draw)`` (summed over samples, so each
    sample's parameters see only their own terms); returns one draw of the fitted Gaussian."""
    mean = init_mean.detach().clone().requires_grad_(True)
    log_std = init_std.log().expand_as(mean).detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([mean, log_std], lr=lr, foreach=True)  # as on a GPU, where it is the default
    for _ in range(steps):
        with torch.enable_grad():
            mean.grad = log_std.grad = None  # optimizer.zero_grad(), without its profiler record
            draw = mean + log_std.exp() * noise.like(mean)
            loss(mean, log_std, draw).backward()
        optimizer.step()
    with torch.no_grad():
        return mean + log_std.exp() * noise.like(mean)


def midpoint_step(prior, log_g, z_t: Tensor, x0_prev: Tensor, t: int, m: int, x0_start: int, steps: int,
                  lr: float, noise) -> Tensor:
    """Step 1: a draw of q(z_m) fitted to g(x0hat(z_m)) p(z_m | z_t) (Eq. 3.6); q starts at the bridge from
    the previous x0 estimate ``x0_prev`` at time ``x0_start`` (the data, or time 0 after a warm step)."""
    with torch.no_grad():
        prior_mean, prior_std = transition(prior.schedule, z_t, prior.predict_x0(z_t, t), m, t)
        init_mean, init_std = bridge(prior.schedule, z_t, x0_prev, x0_start, m, t)

    def loss(mean, log_std, draw):
        kl = gaussian_kl(mean, log_std.exp(), prior_mean, prior_std).sum()
        x0 = prior.predict_x0(draw, m) if m > 0 else draw  # the authors' time 1 is already the data
        return kl - log_g(x0).sum()

    return fit_gaussian(init_mean, init_std[:1].flatten()[0], loss, steps, lr, noise)


def data_step(prior, log_g, z_m: Tensor, m: int, steps: int, lr: float, noise) -> Tensor:
    """The warm-start fit: a draw of q(z_0) fitted to g(z_0) p_0(z_0) q(z_m | z_0) (the authors' time 1),
    with the prior's score standing in for grad log p_0 (their ``_elbo``)."""
    schedule = prior.schedule
    with torch.no_grad():
        init_mean, init_std = transition(schedule, z_m, prior.predict_x0(z_m, m), 0, m)
    ratio = float(schedule.alpha(m) ** 2 / schedule.alpha(0) ** 2)  # alphabar_{m | 0}
    a0, s0 = float(schedule.alpha(0)), float(schedule.sigma(0))

    def loss(mean, log_std, draw):
        with torch.no_grad():
            score = (a0 * prior.predict_x0(draw, 0) - draw) / s0**2
        log_forward = -0.5 * ((z_m - ratio**0.5 * mean).pow(2) + ratio * (2 * log_std).exp()).sum() / (1 - ratio)
        return -log_g(draw).sum() - log_std.sum() - log_forward - (draw * score).sum()

    return fit_gaussian(init_mean, init_std[:1].flatten()[0], loss, steps, lr, noise)


def mgps_sample(prior, operator, y: Tensor, noise, cfg: MGPSConfig, callback=None) -> Tensor:
    """Clean codes (B * per_query, ...); the steps of the module docstring."""
    kind = prior_kind(prior)
    cfg = cfg.resolved(kind, float(getattr(operator, "sigma_y", 0.0)))
    schedule_rule = GRADIENT_STEPS[kind]
    z = start_noise(prior, operator, y, noise)
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    log_g = lambda x0: -fidelity.gaussian_nll(operator, prior.decode(x0), y, cfg.sigma)
    T = prior.num_train_timesteps
    times = midpoint_grid(T, cfg.steps)
    n = len(times)
    with torch.no_grad():
        x0, x0_start = prior.predict_x0(z, times[-1]), DATA_TIME
    for i in range(n - 1, 1, -1):
        t, t_next = times[i], times[i - 1]
        alpha = cfg.alpha if t_next + 1 > T // 2 else cfg.alpha_low_noise
        m = min(max(int(alpha * (t_next + 1)) - 1, 0), t_next)  # floor(alpha t') on the authors' scale, >= their 1
        steps = cfg.grad_steps if cfg.grad_steps is not None else schedule_rule.count(i, n)
        z_m = midpoint_step(prior, log_g, z, x0, t, m, x0_start, steps, cfg.lr, noise)
        if t + 1 >= cfg.warm_start_from * T and m > 0:  # the authors' warm start: a second fit at time 0
            x0, x0_start = data_step(prior, log_g, z_m, m, steps, cfg.lr, noise), 0
            z_m, m = x0, 0
        else:
            with torch.no_grad():
                x0, x0_start = prior.predict_x0(z_m, m), DATA_TIME
        mean, std = bridge(prior.schedule, z, z_m, m, t_next, t)  # step 2 (Eq. 3.5)
        z = (mean + std * noise.like(mean)).detach()
        report(callback, n - 1 - i, t=t, x0=x0)
    with torch.no_grad():
        return prior.predict_x0(z, times[1])
