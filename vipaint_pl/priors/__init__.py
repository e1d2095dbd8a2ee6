"""Priors: one interface (``DiffusionPrior``) for exact mixtures and pretrained diffusers models."""

from .base import DiffusionPrior
from .diffusers_priors import LatentDiffusersPrior, PixelDiffusersPrior, StableDiffusionPrior
from .gmm import GaussianMixture, GaussianMixturePrior, grid_mixture_prior

__all__ = [
    "DiffusionPrior",
    "GaussianMixture",
    "GaussianMixturePrior",
    "grid_mixture_prior",
    "PixelDiffusersPrior",
    "LatentDiffusersPrior",
    "StableDiffusionPrior",
    "load_prior",
]


def load_prior(kind: str, source: str, **kwargs) -> DiffusionPrior:
    """Load a prior by kind ('pixel', 'latent', 'stable-diffusion') from a hub id or local folder."""
    kinds = {"pixel": PixelDiffusersPrior, "latent": LatentDiffusersPrior, "stable-diffusion": StableDiffusionPrior}
    if kind not in kinds:
        raise ValueError(f"unknown prior kind {kind!r}; choose one of {', '.join(kinds)}")
    return kinds[kind].from_pretrained(source, **kwargs)
