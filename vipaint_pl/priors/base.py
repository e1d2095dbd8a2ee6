"""The one interface every prior offers to the methods.

A method never asks which kind of prior it has: it calls ``predict_eps`` / ``predict_x0`` at
(z_t, t), ``encode`` / ``decode`` (the identity for pixel priors), and reads ``schedule``.
A prior knows nothing of masks or operators.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import PriorLoadError
from ..schedule import NoiseSchedule, eps_from_x0, per_sample, to_device, x0_from_eps


class DiffusionPrior(nn.Module):
    """A frozen denoiser with its noise schedule. Subclasses implement ``_eps``."""

    is_latent: bool = False
    x0_range: tuple[float, float] | None = None  # the data's range where it has one (pixel priors: [-1, 1])
    # the standard deviation of the data the denoiser was trained on, where it is known (``load_prior``'s data_std, or
    # an embedded prior's data_stats.json); None: not known, taken as 1 (latent codes are scaled to it)
    data_std: float | None = None

    def __init__(self, schedule: NoiseSchedule):
        super().__init__()
        # A plain, non-persistent buffer: moves with the module, never enters a checkpoint.
        self.register_buffer("alphas_cumprod", schedule.alphas_cumprod.to(torch.float64), persistent=False)
        self._schedule = NoiseSchedule(schedule.alphas_cumprod)  # its table stays on the CPU (see NoiseSchedule)

    @property
    def schedule(self) -> NoiseSchedule:
        return self._schedule

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.numel()

    def train(self, mode: bool = True):  # a prior stays in eval mode, whatever its parent does
        return super().train(False)

    def _apply(self, fn, recurse=True):
        """``.to(device)`` moves the ``alphas_cumprod`` buffer; ``.to(dtype)`` (e.g. a "bf16-true" Trainer) does not
        cast it: in bfloat16, sigma(t) rounds to 0 or 1 near the ends. The methods read ``schedule``, whose table
        stays on the CPU in float64 whatever the module's device and dtype."""
        schedule = self.alphas_cumprod
        out = super()._apply(fn, recurse)
        self.alphas_cumprod = schedule.to(device=self.alphas_cumprod.device, dtype=torch.float64)
        return out

    def _eps(self, z_t: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def predict_eps(self, z_t: Tensor, t) -> Tensor:
        """Noise prediction eps_hat(z_t, t); ``t`` is an int or a per-sample integer tensor."""
        if isinstance(t, Tensor):
            t = to_device(t.long(), z_t.device)
            t = t.expand(z_t.shape[0]) if t.ndim == 0 else t
        else:  # filled on the device once per time, batch size and device (no copy from the host), then kept
            key = ("timesteps", int(t), z_t.shape[0], z_t.device)
            t = self.schedule.memo(key, lambda: torch.full((key[2],), key[1], dtype=torch.long, device=key[3]))
        return self._eps(z_t, t)

    def predict_x0(self, z_t: Tensor, t) -> Tensor:
        """Tweedie estimate E[z_0 | z_t] (VIPaint, Agarwal et al., arXiv 2024, Eq. 3)."""
        return x0_from_eps(self.schedule, z_t, self.predict_eps(z_t, t).to(z_t.dtype), t)

    def encode(self, x: Tensor) -> Tensor:
        """Image -> the space the diffusion runs in (identity for pixel priors)."""
        return x

    def decode(self, z: Tensor) -> Tensor:
        """Diffusion space -> image in [-1, 1] (identity for pixel priors)."""
        return z

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape (C, H, W) of the diffusion variable for an image of shape (C, H, W)."""
        return tuple(image_shape)

    def image_channels(self) -> int | None:
        """Number of image channels the prior expects, or None if any."""
        return None


def convert_prediction(kind: str, out: Tensor, z_t: Tensor, schedule: NoiseSchedule, t: Tensor) -> Tensor:
    """Turn a network output of the given diffusers ``prediction_type`` into a noise prediction."""
    if kind == "epsilon":
        return out
    if kind == "sample":
        return eps_from_x0(schedule, z_t, out, t)
    if kind == "v_prediction":  # v = alpha eps - sigma x  =>  eps = sigma z_t + alpha v
        return per_sample(schedule.sigma(t), z_t) * z_t + per_sample(schedule.alpha(t), z_t) * out
    raise PriorLoadError(f"unsupported prediction_type {kind!r}")
