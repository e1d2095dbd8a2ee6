"""Time travel on a grid of reverse steps (RePaint's resampling schedule; Lugmayr et al., CVPR 2022, Alg. 1
and Fig. 9-10), shared by RePaint and CoPaint-TT.

The chain lives on grid positions p in {steps - 1, ..., 0, -1}; position p is the DDPM time p * stride
(stride = T // steps) and p = -1 is the clean data. Going down one position is a reverse step, going up
one is the forward kernel q(z_t | z_s). Every ``jump_length`` positions the chain goes back up
``jump_length`` positions, ``jump_n_sample - 1`` times; with ``jump_n_sample = 1`` it never does.
This is the schedule of diffusers' ``RePaintScheduler.set_timesteps``, read as positions of the sample.
"""

from __future__ import annotations

from ..errors import ConfigError

DATA_POSITION = -1


def jump_positions(steps: int, jump_length: int, jump_n_sample: int, num_train_timesteps: int) -> list[int]:
    """The positions the chain visits, from ``steps - 1`` (pure noise) to -1 (the data); neighbours differ by 1."""
    if not 1 <= steps <= num_train_timesteps:
        raise ConfigError(f"steps must be in [1, {num_train_timesteps}] (the prior's training steps), got {steps}")
    if jump_length < 1 or jump_n_sample < 1:
        raise ConfigError(f"jump_length and jump_n_sample must be >= 1, got {jump_length} and {jump_n_sample}")
    jumps_left = {j: jump_n_sample - 1 for j in range(0, steps - jump_length, jump_length)}
    visited = []  # the step index whose transition is taken next (diffusers' timesteps / stride)
    t = steps
    while t >= 1:
        t -= 1
        visited.append(t)
        if jumps_left.get(t, 0) > 0:
            jumps_left[t] -= 1
            for _ in range(jump_length):
                t += 1
                visited.append(t)
    # a reverse step at index i moves the sample from position i to i - 1; going up to index i moves it to i - 1
    return [visited[0]] + [i - 1 for i in visited]


def position_time(position: int, stride: int) -> int:
    """DDPM time of a grid position (-1, the data, stays -1)."""
    return DATA_POSITION if position == DATA_POSITION else position * stride


def moves(steps: int, jump_length: int, jump_n_sample: int, num_train_timesteps: int):
    """(t_from, t_to) DDPM-time pairs of every move: t_to < t_from is a reverse step, t_to > t_from a renoising."""
    stride = num_train_timesteps // steps
    path = [position_time(p, stride) for p in jump_positions(steps, jump_length, jump_n_sample, num_train_timesteps)]
    return list(zip(path[:-1], path[1:]))
