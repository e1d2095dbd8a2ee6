"""Noise schedules and Gaussian diffusion transitions (pure functions, float64-safe).

Conventions (VIPaint: Agarwal, Hoope & Sudderth, arXiv 2024, Eq. 1): ``z_t = alpha_t x + sigma_t eps`` with integer DDPM times
``t in {0, ..., T-1}``; ``t = -1`` stands for the clean data (alpha = 1, sigma = 0), so that a
transition to ``s = -1`` lands on x itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ScheduleError

DATA_TIME = -1  # the time index of clean data: alpha = 1, sigma = 0
MEMO_LIMIT = 65536  # coefficients and timestep tensors kept per schedule (a few MB for the usual batches)


def betas_for(schedule: str, num_steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    """The betas table of a named schedule, as diffusers defines them (float64)."""
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    if schedule == "scaled_linear":  # Stable Diffusion / LDM
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
    if schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, Eq. 17
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        b = [min(1 - f((i + 1) / num_steps) / f(i / num_steps), 0.999) for i in range(num_steps)]
        return torch.tensor(b, dtype=torch.float64)
    raise ScheduleError(f"unknown beta schedule {schedule!r}; use linear, scaled_linear or squaredcos_cap_v2")


@dataclass(frozen=True)
class NoiseSchedule:
    """A variance-preserving schedule given by its cumulative alphas (float64 table).

    The table lives on the CPU: coefficients at Python or CPU times are computed there, with no host-device
    synchronization (a table on a GPU made every ``float(alpha(t))`` and every range check wait for the GPU).
    Times given as tensors on another device are looked up in a copy of the table made once per device.
    Coefficients at one time (a Python int or a 0-dim CPU integer tensor) are computed once and kept
    (``memo``): a sampling chain's steps then do no host arithmetic on the schedule. Treat them as read-only.
    """

    alphas_cumprod: Tensor

    def __post_init__(self):
        object.__setattr__(self, "alphas_cumprod", self.alphas_cumprod.detach().to("cpu", torch.float64))
        padded = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod])
        object.__setattr__(self, "_padded", {padded.device: padded})
        object.__setattr__(self, "_memo", {})

    def clear_memo(self) -> None:
        """Forget the kept coefficients (they are computed again when next asked for)."""
        self._memo.clear()

    def memo(self, key: tuple, make):
        """``make()``, computed once per ``key`` for this schedule (coefficients at fixed times)."""
        out = self._memo.get(key)
        if out is None:
            if len(self._memo) >= MEMO_LIMIT:  # many distinct times (e.g. random ones): start again, bounded
                self._memo.clear()
            out = self._memo[key] = make()
        return out

    @classmethod
    def from_betas(cls, betas: Tensor) -> "NoiseSchedule":
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or (betas <= 0).any() or (betas >= 1).any():
            raise ScheduleError("betas must be a 1-D table with values in (0, 1)")
        return cls(torch.cumprod(1.0 - betas, dim=0))

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> "NoiseSchedule":
        return cls.from_betas(betas_for("linear", num_steps, beta_start, beta_end))

    @classmethod
    def from_scheduler_config(cls, config) -> "NoiseSchedule":
        """Build from a diffusers scheduler config (dict or FrozenDict)."""
        if config.get("trained_betas") is not None:
            return cls.from_betas(torch.tensor(config["trained_betas"], dtype=torch.float64))
        return cls.from_betas(
            betas_for(
                config.get("beta_schedule", "linear"),
                int(config.get("num_train_timesteps", 1000)),
                float(config.get("beta_start", 1e-4)),
                float(config.get("beta_end", 2e-2)),
            )
        )

    @property
    def num_steps(self) -> int:
        return self.alphas_cumprod.numel()

    def _table(self, t) -> Tensor:
        t = torch.as_tensor(t).long()
        check(((t < DATA_TIME) | (t >= self.num_steps)).any(),
              lambda: f"time index out of range [{DATA_TIME}, {self.num_steps - 1}]: {t}", ScheduleError)
        if t.device not in self._padded:
            self._padded[t.device] = to_device(self._padded[torch.device("cpu")], t.device)
        return self._padded[t.device][t + 1]

    def alpha(self, t) -> Tensor:
        """alpha_t = sqrt(alphabar_t) (float64)."""
        i = scalar_time(t)
        if i is not None:
            return self.memo(("alpha", i), lambda: self._table(i).sqrt())
        return self._table(t).sqrt()

    def sigma(self, t) -> Tensor:
        """sigma_t = sqrt(1 - alphabar_t) (float64)."""
        i = scalar_time(t)
        if i is not None:
            return self.memo(("sigma", i), lambda: (1.0 - self._table(i)).sqrt())
        return (1.0 - self._table(t)).sqrt()

    def snr(self, t) -> Tensor:
        """SNR(t) = alpha_t^2 / sigma_t^2 (float64)."""
        ab = self._table(t)
        return ab / (1.0 - ab)

    def to(self, device) -> "NoiseSchedule":
        """The same schedule (its table stays on the CPU; lookups follow the times' device)."""
        return self


def scalar_time(t) -> int | None:
    """``t`` as a Python int where it is one time on the host (an int, or a 0-dim integer CPU tensor), else None."""
    if isinstance(t, int) and not isinstance(t, bool):
        return t
    if isinstance(t, Tensor) and t.ndim == 0 and t.device.type == "cpu" and not t.is_floating_point():
        return int(t)
    return None


def to_device(v: Tensor, device) -> Tensor:
    """``v`` on ``device`` without a host-device synchronization: a CPU tensor goes to a GPU through pinned
    memory, asynchronously (a plain ``.to("cuda")`` of pageable memory waits for the GPU to finish its queue)."""
    device = torch.device(device)
    if v.device == device or (device.index is None and v.device.type == device.type):
        return v
    if v.device.type == "cpu" and device.type == "cuda":
        return v.pin_memory().to(device, non_blocking=True)
    return v.to(device)


def check(bad: Tensor, message, error=ValueError) -> None:
    """Raise ``error(message())`` where ``bad`` (a boolean tensor) is true: at once on the CPU; on another device
    as an asynchronous device assertion (its message names the error, not the values, which would have to be
    read back), so that the check does not wait for the device."""
    if bad.device.type == "cpu":
        if bool(bad):
            raise error(message())
    else:
        torch._assert_async(~bad, f"{error.__name__}: a check on the diffusion times failed")


def per_sample(v, like: Tensor) -> Tensor | float:
    """The one broadcasting helper: a scalar or per-sample coefficient (B,) shaped to broadcast against
    ``like`` (B, ...), on its device and in its dtype (moved without a host-device synchronization).
    One number on the host (a Python number or a 0-dim CPU tensor outside autograd) comes back as a Python
    float, which multiplies ``like`` in its dtype as the cast tensor would, with no tensor made or moved."""
    if isinstance(v, (int, float)) or (isinstance(v, Tensor) and v.ndim == 0 and v.device.type == "cpu"
                                       and not v.requires_grad):
        return float(v)
    v = v.to(like.dtype) if isinstance(v, Tensor) else torch.as_tensor(v, dtype=like.dtype)  # cast where it is
    v = to_device(v, like.device)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim)) if v.ndim else v


def std_like(std, like: Tensor) -> Tensor:
    """A Gaussian's std (one number or per sample) as a tensor broadcast to ``like``'s shape (a view)."""
    v = per_sample(std, like)
    return (like.new_full((), v) if isinstance(v, float) else v).expand_as(like)


def transition_std(schedule: NoiseSchedule, s, t, eta: float = 1.0) -> Tensor:
    """Std of q(z_s | z_t, x) in the DDIM eta family (float64); eta = 1 is the DDPM posterior.

    With alpha_{t|s} = alpha_t / alpha_s and sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2,
    the DDPM posterior variance is sigma_{t|s}^2 sigma_s^2 / sigma_t^2 (VIPaint, App. B.1).
    """
    a_s, a_t, sg_s, sg_t = schedule.alpha(s), schedule.alpha(t), schedule.sigma(s), schedule.sigma(t)
    var_ts = sg_t**2 - (a_t / a_s) ** 2 * sg_s**2
    return eta * (var_ts * sg_s**2 / sg_t**2).clamp_min(0).sqrt()


def jump_coefficients(schedule: NoiseSchedule, s, t, eta: float) -> tuple[Tensor, Tensor, Tensor]:
    """(std, c_x, c_eps) of ``transition`` in float64: z_s = c_x x + c_eps z_t + std n (kept for fixed times;
    ``jump_coefficients_at`` computes them for any times, e.g. a table over all of them at once)."""
    i, j = scalar_time(s), scalar_time(t)
    if i is not None and j is not None:
        return schedule.memo(("jump", i, j, float(eta)), lambda: jump_coefficients_at(schedule, i, j, eta))
    return jump_coefficients_at(schedule, s, t, eta)


def jump_coefficients_at(schedule: NoiseSchedule, s, t, eta: float) -> tuple[Tensor, Tensor, Tensor]:
    std = transition_std(schedule, s, t, eta)
    a_s, a_t, sg_s, sg_t = schedule.alpha(s), schedule.alpha(t), schedule.sigma(s), schedule.sigma(t)
    c_eps = (sg_s**2 - std**2).clamp_min(0).sqrt() / sg_t
    return std, a_s - c_eps * a_t, c_eps


def transition_x_coefficient(schedule: NoiseSchedule, s, t, eta: float = 1.0) -> Tensor:
    """The weight of x in ``transition``'s mean, alpha_s - c_eps alpha_t (float64): the factor by which an error
    (or spread) of x reaches z_s."""
    return jump_coefficients(schedule, s, t, eta)[1]


def transition(schedule: NoiseSchedule, z_t: Tensor, x: Tensor, s, t, eta: float = 1.0,
               x_var: float = 0.0) -> tuple[Tensor, Tensor]:
    """Mean and std of q(z_s | z_t, x) for any s < t (jumps allowed), DDIM eta family.

    mean = alpha_s x + sqrt(sigma_s^2 - std^2) (z_t - alpha_t x) / sigma_t; it keeps the marginal
    q(z_s | x) = N(alpha_s x, sigma_s^2) for every eta, and equals the DDPM posterior at eta = 1.
    ``x_var``: when x is an estimate E[x | z_t] with variance Var[x | z_t] = x_var (per element), the transition
    with x integrated out: the same mean, variance std^2 + (alpha_s - c_eps alpha_t)^2 x_var (the law of total
    variance; the optimal reverse variance of Bao et al., ICLR 2022, Analytic-DPM, with this x_var). For
    unit-variance Gaussian data, x_var = sigma_t^2 makes it the exact p(z_s | z_t) at eta = 1.
    The coefficients are computed in float64, then cast to z_t's dtype.
    """
    i, j = _ordered_times(s, t, "a transition needs s < t")
    if i is not None:  # fixed times: the coefficients as Python numbers, kept
        std, c_x, c_eps = schedule.memo(("jump floats", i, j, float(eta)), lambda: tuple(
            float(c) for c in jump_coefficients_at(schedule, i, j, eta)))
        if x_var:
            std = math.sqrt(std**2 + c_x**2 * x_var)
    else:
        std, c_x, c_eps = jump_coefficients(schedule, s, t, eta)
        if x_var:
            std = (std**2 + c_x**2 * x_var).sqrt()
    return apply_transition(std, c_x, c_eps, z_t, x)


def apply_transition(std, c_x, c_eps, z_t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std of ``transition`` from its coefficients (``jump_coefficients``, numbers or per sample)."""
    mean = per_sample(c_x, z_t) * x + per_sample(c_eps, z_t) * z_t
    return mean, std_like(std, mean)


def _ordered_times(s, t, what: str) -> tuple[int, int] | tuple[None, None]:
    """ScheduleError unless s < t (at once for host times; asynchronously on a device); (s, t) as Python ints
    where both are one time on the host, else (None, None)."""
    i, j = scalar_time(s), scalar_time(t)
    if i is not None and j is not None:
        if i >= j:
            raise ScheduleError(f"{what}, got s={i} t={j}")
        return i, j
    s, t = torch.as_tensor(s), torch.as_tensor(t)
    check((s >= t).any(), lambda: f"{what}, got s={s.tolist()} t={t.tolist()}", ScheduleError)
    return None, None


def bridge(schedule: NoiseSchedule, z_t: Tensor, z_m: Tensor, m, u, t) -> tuple[Tensor, Tensor]:
    """Mean and std of q(z_u | z_m, z_t) for m < u < t: the forward chain conditioned on both ends.

    With alphabar_{b|a} = alphabar_b / alphabar_a: var = (1 - alphabar_{t|u}) (1 - alphabar_{u|m}) /
    (1 - alphabar_{t|m}), mean = c_t z_t + (sqrt(alphabar_{u|m}) - c_t sqrt(alphabar_{t|m})) z_m with
    c_t = sqrt((1 - alphabar_{u|m} - var) / (1 - alphabar_{t|m})). At m = -1 (z_m the data) it is the
    DDPM posterior ``transition(..., eta=1)``; at u = m it returns z_m (std 0).
    """
    host = [scalar_time(v) for v in (m, u, t)]
    if None in host:
        c_t, c_m, std = _bridge_coefficients(schedule, m, u, t)
    else:  # fixed times: computed once per schedule, kept as Python numbers
        coefficients = lambda: tuple(map(float, _bridge_coefficients(schedule, *host)))  # noqa: E731
        c_t, c_m, std = schedule.memo(("bridge", *host), coefficients)
    mean = per_sample(c_t, z_t) * z_t + per_sample(c_m, z_t) * z_m
    return mean, std_like(std, mean)


def _bridge_coefficients(schedule: NoiseSchedule, m, u, t) -> tuple[Tensor, Tensor, Tensor]:
    """``bridge``'s c_t, c_m and std (float64; ScheduleError unless m <= u < t)."""
    m, u, t = torch.as_tensor(m), torch.as_tensor(u), torch.as_tensor(t)
    check((m > u).any() | (u >= t).any(), lambda: f"a bridge needs m <= u < t, got m={m.tolist()} u={u.tolist()} "
          f"t={t.tolist()}", ScheduleError)
    ab_m, ab_u, ab_t = schedule._table(m), schedule._table(u), schedule._table(t)
    ab_um, ab_tu, ab_tm = ab_u / ab_m, ab_t / ab_u, ab_t / ab_m
    var = ((1 - ab_tu) * (1 - ab_um) / (1 - ab_tm)).clamp_min(0)
    c_t = ((1 - ab_um - var).clamp_min(0) / (1 - ab_tm)).sqrt()
    return c_t, ab_um.sqrt() - c_t * ab_tm.sqrt(), var.sqrt()


def prior_transition(schedule: NoiseSchedule, z_t: Tensor, x0_hat: Tensor, s, t, eta: float = 1.0):
    """p(z_s | z_t) = q(z_s | z_t, x = x0_hat(z_t, t)) (VIPaint, Eq. 3)."""
    return transition(schedule, z_t, x0_hat, s, t, eta)


def gaussian_kl(mean_q: Tensor, std_q: Tensor, mean_p: Tensor, std_p: Tensor) -> Tensor:
    """Elementwise KL(N(mean_q, std_q^2) || N(mean_p, std_p^2)) between diagonal Gaussians."""
    var_q, var_p = std_q**2, std_p**2
    return torch.log(std_p / std_q) + (var_q + (mean_q - mean_p) ** 2) / (2 * var_p) - 0.5


def gaussian_entropy(std: Tensor) -> Tensor:
    """Elementwise differential entropy of N(., std^2)."""
    return 0.5 * math.log(2 * math.pi * math.e) + torch.log(std)


def x0_from_eps(schedule: NoiseSchedule, z_t: Tensor, eps: Tensor, t) -> Tensor:
    """Tweedie / Eq. 3: x0_hat = (z_t - sigma_t eps) / alpha_t."""
    i = scalar_time(t)
    if i is not None:  # one time on the host: alpha_t and sigma_t kept as Python numbers
        alpha, sigma = schedule.memo(("x0 from eps", i), lambda: (float(schedule.alpha(i)), float(schedule.sigma(i))))
        return x0_from_eps_at(z_t, eps, alpha, sigma)
    return x0_from_eps_at(z_t, eps, per_sample(schedule.alpha(t), z_t), per_sample(schedule.sigma(t), z_t))


def x0_from_eps_at(z_t: Tensor, eps: Tensor, alpha, sigma) -> Tensor:
    """``x0_from_eps`` from alpha_t and sigma_t already shaped to broadcast against z_t."""
    return (z_t - sigma * eps) / alpha


def eps_from_x0(schedule: NoiseSchedule, z_t: Tensor, x0: Tensor, t) -> Tensor:
    return (z_t - per_sample(schedule.alpha(t), z_t) * x0) / per_sample(schedule.sigma(t), z_t)


def diffuse(schedule: NoiseSchedule, x: Tensor, t, noise: Tensor) -> Tensor:
    """Sample q(z_t | x) = N(alpha_t x, sigma_t^2) with the given standard normal noise (Eq. 1)."""
    return per_sample(schedule.alpha(t), x) * x + per_sample(schedule.sigma(t), x) * noise


def renoise(schedule: NoiseSchedule, z_s: Tensor, s, t, noise: Tensor) -> Tensor:
    """Sample the forward kernel q(z_t | z_s) for s < t (time travel back up the chain; s = -1 is the data).

    z_t = alpha_{t|s} z_s + sigma_{t|s} noise with alpha_{t|s} = alpha_t / alpha_s and
    sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2 (VIPaint, App. B.1): one step of it is
    sqrt(1 - beta_t) z_{t-1} + sqrt(beta_t) noise.
    """
    _ordered_times(s, t, "renoising needs s < t")
    a_ts = schedule.alpha(t) / schedule.alpha(s)
    std = (schedule.sigma(t) ** 2 - a_ts**2 * schedule.sigma(s) ** 2).clamp_min(0).sqrt()
    return per_sample(a_ts, z_s) * z_s + per_sample(std, z_s) * noise
