"""Every time grid the methods walk, in one place (DDPM indices; -1 is the clean data).

- ``descending_times``: an even grid from a start time down to the data (DPS, Blended, PSLD, VIPaint's
  phase 2); ``training_grid``: an even grid over the training times (RED-diff).
- ``midpoint_grid``: MGPS's increasing grid from the data.
- ``hierarchy_times``: VIPaint's K keypoints Te > ... > Ts (``snr_matched`` for data not of unit variance).
- Time travel on a grid of reverse steps (RePaint's resampling schedule; Lugmayr et al., CVPR 2022, Alg. 1
  and Fig. 9-10), shared by RePaint, CoPaint-TT and (without jumps) ReSample.

The time-travel chain lives on grid positions p in {steps - 1, ..., 0, -1}; position p is the DDPM time
p * stride (stride = T // steps) and p = -1 is the clean data. Going down one position is a reverse step,
going up one is the forward kernel q(z_t | z_s). Every ``jump_length`` positions the chain goes back up
``jump_length`` positions, ``jump_n_sample - 1`` times; with ``jump_n_sample = 1`` it never does.

``jump_schedule`` is the index sequence of diffusers' ``RePaintScheduler.set_timesteps`` (and of CoPaint's
``ddim_repaint_timesteps``). The two codes read it differently, and so do the two paths here:
- ``repaint_path``: index i means "step from i" (diffusers), so the sample sits at i - 1 after it and the
  lowest stretch is travelled from the data;
- ``ddim_path``: the indices are the sample's positions (CoPaint), ending at 0, then one step to the data.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

DATA_POSITION = -1
# VIPaint's keypoints as the official code sets them for a 1000-step prior (Agarwal et al., arXiv 2024)
DEFAULT_HIERARCHY_TIMES = {1: [400], 2: [550, 400], 4: [550, 500, 450, 400], 6: [550, 520, 490, 460, 430, 400]}


def descending_times(t_start: int, steps: int, t_end: int = -1) -> list[int]:
    """``steps`` jumps from ``t_start`` down to ``t_end`` (default -1, the data), evenly spaced, strictly
    decreasing."""
    if steps < 1:
        raise ConfigError(f"a reverse chain needs at least 1 step, got {steps}")
    raw = torch.linspace(t_start, t_end, steps + 1).round().long().tolist()
    times = [raw[0]]
    for t in raw[1:]:
        if t < times[-1]:
            times.append(t)
    return times


def training_grid(num_train_timesteps: int, steps: int) -> list[int]:
    """``steps`` times evenly spaced from T - 1 down to 0 (repeats allowed when steps > T)."""
    return torch.linspace(num_train_timesteps - 1, 0, steps).round().long().tolist()


def midpoint_grid(num_train_timesteps: int, steps: int) -> list[int]:
    """MGPS's grid, increasing: the authors' ``linspace(0, T - 1, steps)`` floored, on their scale where 0 is
    the data, shifted to ours (-1 is the data); repeats dropped when steps > T."""
    raw = torch.linspace(0, num_train_timesteps - 1, steps).long() - 1
    return sorted(set(raw.tolist()))


def hierarchy_times(k: int, times: list[int] | None = None, num_train_timesteps: int = 1000, schedule=None,
                    data_std: float | None = None) -> list[int]:
    """VIPaint's K times Te > ... > Ts, given or from the official defaults (rescaled to the prior's T).

    The official times were chosen for latent codes of unit standard deviation; with ``schedule`` and the prior's
    ``data_std`` (the data's standard deviation, the statistic latent codes are scaled by), the official times move
    to where that data has the same signal-to-noise ratio (``snr_matched``). Given ``times`` are kept as they are."""
    if k < 1:
        raise ConfigError(f"the hierarchy needs K >= 1 levels, got K={k}")
    if times is None:
        base = DEFAULT_HIERARCHY_TIMES.get(k) or torch.linspace(550, 400, k).round().long().tolist()
        times = [round(t * num_train_timesteps / 1000) for t in base]
        if schedule is not None and data_std is not None:
            times = snr_matched(times, schedule, data_std)
    times = [int(t) for t in times]
    if len(times) != k:
        raise ConfigError(f"K={k} levels need {k} times, got {times}")
    if any(a <= b for a, b in zip(times, times[1:])):
        raise ConfigError(f"hierarchy times must decrease strictly from Te to Ts (Te > Ts), got {times}")
    if times[-1] < 0 or times[0] >= num_train_timesteps:
        raise ConfigError(f"hierarchy times must lie in [0, {num_train_timesteps - 1}], got {times}")
    return times


def snr_matched(times: list[int], schedule, data_std: float) -> list[int]:
    """Each time t moved to the index t' where data of standard deviation s has the signal-to-noise ratio that data of
    unit standard deviation has at t: s^2 alpha_t'^2 / sigma_t'^2 = alpha_t^2 / sigma_t^2 (nearest index on the
    schedule; as EDM's sigma_data rescales noise levels to the data, Karras et al., NeurIPS 2022). s = 1: unchanged."""
    if not data_std > 0 or data_std == float("inf"):
        raise ConfigError(f"the prior's data_std must be a positive number, got {data_std}")
    a2 = schedule.alphas_cumprod.double()
    log_snr = torch.log(a2) - torch.log1p(-a2)
    shifted = log_snr + 2 * torch.log(torch.tensor(float(data_std), dtype=torch.float64))
    return [int(torch.argmin((shifted - log_snr[t]).abs())) for t in times]


def jump_schedule(steps: int, jump_length: int, jump_n_sample: int, num_train_timesteps: int) -> list[int]:
    """Grid indices from ``steps - 1`` down to 0, going back up ``jump_length`` after every ``jump_length``."""
    if not 1 <= steps <= num_train_timesteps:
        raise ConfigError(f"steps must be in [1, {num_train_timesteps}] (the prior's training steps), got {steps}")
    if jump_length < 1 or jump_n_sample < 1:
        raise ConfigError(f"jump_length and jump_n_sample must be >= 1, got {jump_length} and {jump_n_sample}")
    jumps_left = {j: jump_n_sample - 1 for j in range(0, steps - jump_length, jump_length)}
    indices = []
    t = steps
    while t >= 1:
        t -= 1
        indices.append(t)
        if jumps_left.get(t, 0) > 0:
            jumps_left[t] -= 1
            for _ in range(jump_length):
                t += 1
                indices.append(t)
    return indices


def repaint_path(schedule: list[int]) -> list[int]:
    """Positions of the sample when index i means "the transition from i" (diffusers' RePaint)."""
    return [schedule[0]] + [i - 1 for i in schedule]


def ddim_path(schedule: list[int]) -> list[int]:
    """Positions of the sample when the indices are its positions (CoPaint), then the step to the data."""
    return schedule + [DATA_POSITION]


def position_time(position: int, stride: int) -> int:
    """DDPM time of a grid position (-1, the data, stays -1)."""
    return DATA_POSITION if position == DATA_POSITION else position * stride


def moves(path: list[int], steps: int, num_train_timesteps: int) -> list[tuple[int, int]]:
    """(t_from, t_to) DDPM-time pairs along a path: t_to < t_from is a reverse step, t_to > t_from a renoising."""
    times = [position_time(p, num_train_timesteps // steps) for p in path]
    return list(zip(times[:-1], times[1:]))
