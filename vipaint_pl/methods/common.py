"""What every sampler shares: the code shape of a query, its starting noise, and the monitoring callback.

Every method is called as ``sample(prior, operator, y, noise, cfg, callback=None)``:
- ``prior``: a ``DiffusionPrior`` (exact mixture, pixel, latent or Stable Diffusion);
- ``operator``: the measurement operator of the B queries (``operator.repeat_interleave(n)`` gives the one
  for n samples per query);
- ``y``: the B observations;
- ``noise``: a ``QueryNoise`` with B queries and ``per_query`` samples each;
- ``cfg``: the method's ``Settings``; ``callback(step, info)``, if given, sees every step.
It returns the clean codes, shape (B * per_query, *code shape), query by query (decode them on a latent prior).
"""

from __future__ import annotations

from torch import Tensor


def code_shape(prior, operator, y: Tensor) -> tuple[int, ...]:
    """Shape of one sample in the space the prior diffuses (the latent grid on latent priors)."""
    image_shape = tuple(operator.pinv(y[:1]).shape[1:])
    return tuple(prior.latent_shape(image_shape)) if prior.is_latent else image_shape


def start_noise(prior, operator, y: Tensor, noise) -> Tensor:
    """z_T ~ N(0, I): one standard normal code per sample."""
    return noise.randn(code_shape(prior, operator, y), y)


def predict_x0(prior, z: Tensor, t, clip: bool) -> Tensor:
    """E[z_0 | z_t], clipped to the prior's data range when ``clip`` and the prior has one (pixel priors:
    [-1, 1]), as the official DPS (``clip_denoised``), diffusers' RePaint (``clip_sample``) and CoPaint do;
    the gradient of a loss on x0 then flows through the clip too. Latent and Gaussian-mixture priors have no
    range: nothing is clipped."""
    x0 = prior.predict_x0(z, t)
    bounds = getattr(prior, "x0_range", None)
    return x0.clamp(*bounds) if clip and bounds is not None else x0


def prior_kind(prior) -> str:
    """"latent", "pixel" (a prior with a data range) or "mixture" (vectors without one: the Gaussian-mixture
    oracle): the key of methods' per-kind defaults."""
    if prior.is_latent:
        return "latent"
    return "pixel" if getattr(prior, "x0_range", None) is not None else "mixture"


def report(callback, step: int, **info) -> None:
    """Hand one step's state to the monitoring callback, if any, its tensors detached from any graph (detached only
    when there is a callback: no operator a step otherwise)."""
    if callback is not None:
        callback(step, {k: v.detach() if isinstance(v, Tensor) else v for k, v in info.items()})
