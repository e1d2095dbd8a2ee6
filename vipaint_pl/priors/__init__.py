"""Priors: one interface (``DiffusionPrior``) for exact mixtures and pretrained diffusers models."""

from pathlib import Path

from ..errors import ConfigError, PriorLoadError
from .base import DiffusionPrior
from .diffusers_priors import COMPILE_MODES, LatentDiffusersPrior, PixelDiffusersPrior, StableDiffusionPrior
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
    "resolve_source",
    "EMBEDDED_PRIORS",
]

EMBEDDED_DIR = Path(__file__).resolve().parents[1] / "embedded"
EMBEDDED_PRIORS = {"digits-pixel": "pixel", "digits-latent": "latent"}  # trained by scripts/train_prior.py


def resolve_source(source: str) -> str:
    """``embedded:<name>`` names a prior that ships with the package (no download); anything else is as given."""
    if not source.startswith("embedded:"):
        return source
    name = source.split(":", 1)[1]
    if name not in EMBEDDED_PRIORS or not (EMBEDDED_DIR / name).is_dir():
        raise PriorLoadError(f"no embedded prior {name!r}; the package ships: {', '.join(sorted(EMBEDDED_PRIORS))}")
    return str(EMBEDDED_DIR / name)


def load_prior(kind: str, source: str, gradient_checkpointing: bool = False, decode_batch_size: int | None = None,
               compile_mode: str | None = None, **kwargs) -> DiffusionPrior:
    """Load a prior by kind ('pixel', 'latent', 'stable-diffusion') from a hub id or local folder.

    ``gradient_checkpointing`` and ``decode_batch_size`` trade time for memory (``set_memory_options``: e.g.
    Stable Diffusion's VIPaint within 16 GB); ``compile_mode`` runs the networks through ``torch.compile``
    (``compile_networks``); the other keywords go to diffusers' ``from_pretrained``.
    """
    kinds = {"pixel": PixelDiffusersPrior, "latent": LatentDiffusersPrior, "stable-diffusion": StableDiffusionPrior}
    if kind not in kinds:
        raise ConfigError(f"unknown prior kind {kind!r}; choose one of {', '.join(kinds)}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:  # before any weights are loaded
        raise ConfigError(f"unknown compile_mode {compile_mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    prior = kinds[kind].from_pretrained(resolve_source(source), **kwargs)
    return prior.set_memory_options(gradient_checkpointing, decode_batch_size).compile_networks(compile_mode)
