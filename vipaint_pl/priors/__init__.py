"""Priors: one interface (``DiffusionPrior``) for exact mixtures and pretrained diffusers models."""

import json
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
DATA_STATS = "data_stats.json"  # an embedded prior's training-data statistics (scripts/train_prior.py)


def resolve_source(source: str) -> str:
    """``embedded:<name>`` names a prior that ships with the package (no download); anything else is as given."""
    if not source.startswith("embedded:"):
        return source
    name = source.split(":", 1)[1]
    if name not in EMBEDDED_PRIORS or not (EMBEDDED_DIR / name).is_dir():
        raise PriorLoadError(f"no embedded prior {name!r}; the package ships: {', '.join(sorted(EMBEDDED_PRIORS))}")
    return str(EMBEDDED_DIR / name)


def load_prior(kind: str, source: str, gradient_checkpointing: bool = False, decode_batch_size: int | None = None,
               compile_mode: str | None = None, data_std: float | None = None, **kwargs) -> DiffusionPrior:
    """Load a prior by kind ('pixel', 'latent', 'stable-diffusion') from a hub id or local folder.

    ``gradient_checkpointing`` and ``decode_batch_size`` trade time for memory (``set_memory_options``: e.g.
    Stable Diffusion's VIPaint within 16 GB); ``compile_mode`` runs the networks through ``torch.compile``
    (``compile_networks``); ``data_std``: the standard deviation of the data the denoiser was trained on, where
    known (``DiffusionPrior.data_std``; an embedded prior reads it from its ``data_stats.json``); the other keywords
    go to diffusers' ``from_pretrained``.
    """
    kinds = {"pixel": PixelDiffusersPrior, "latent": LatentDiffusersPrior, "stable-diffusion": StableDiffusionPrior}
    if kind not in kinds:
        raise ConfigError(f"unknown prior kind {kind!r}; choose one of {', '.join(kinds)}")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:  # before any weights are loaded
        raise ConfigError(f"unknown compile_mode {compile_mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    if data_std is not None and not (isinstance(data_std, (int, float)) and 0 < data_std < float("inf")):
        raise ConfigError(f"data_std must be a positive number (the data's standard deviation), got {data_std!r}")
    folder = resolve_source(source)
    prior = kinds[kind].from_pretrained(folder, **kwargs)
    stats = Path(folder) / DATA_STATS
    if data_std is None and source.startswith("embedded:") and stats.is_file():
        data_std = json.loads(stats.read_text())["data_std"]
    prior.data_std = None if data_std is None else float(data_std)
    return prior.set_memory_options(gradient_checkpointing, decode_batch_size).compile_networks(compile_mode)
