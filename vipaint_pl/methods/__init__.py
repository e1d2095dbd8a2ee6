"""Every inpainting / inverse-problem method, registered once.

``METHODS[name]`` is a ``Method``: its sampler, called as
``sample(prior, operator, y, noise, cfg, callback=None)`` (see ``common.py``), and its config class.
The Lightning modules, the CLI, ``vipaint_pl.api`` and the benchmark scripts read this registry and
nothing else: a method added here appears everywhere.

>>> sorted(METHODS)[:3]
['blended', 'copaint', 'copaint-tt']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError
from ..rng import QueryNoise
from ..settings import Settings
from .blended import BlendedConfig, blended_sample
from .copaint import CoPaintConfig, CoPaintTTConfig, copaint_sample
from .daps import DAPSConfig, daps_sample
from .dps import DPSConfig, GMLDPSConfig, PSLDConfig, dps_sample
from .mgps import MGPSConfig, mgps_sample
from .red_diff import REDDiffConfig, REDDiffVConfig, red_diff_sample
from .repaint import RePaintConfig, repaint_sample
from .resample import ReSampleConfig, resample_sample
from .vipaint import VIPaintConfig, vipaint_sample


@dataclass(frozen=True)
class Method:
    """A registered method: ``sample`` with the shared signature, its ``config`` class, whether it needs
    gradients while sampling (its gradient policy), and a one-line summary."""

    sample: object
    config: type[Settings]
    needs_grad: bool
    summary: str


METHODS: dict[str, Method] = {
    "vipaint": Method(vipaint_sample, VIPaintConfig, True, "VIPaint-K: hierarchical variational posterior, then DPS"),
    "dps": Method(dps_sample, DPSConfig, True, "DPS / latent-DPS (Chung et al., ICLR 2023)"),
    "gml-dps": Method(dps_sample, GMLDPSConfig, True, "GML-DPS (Rout et al., NeurIPS 2023)"),
    "psld": Method(dps_sample, PSLDConfig, True, "PSLD (Rout et al., NeurIPS 2023)"),
    "blended": Method(blended_sample, BlendedConfig, False, "replacement; Blended Latent Diffusion on latent priors"),
    "red-diff": Method(red_diff_sample, REDDiffConfig, True, "RED-diff (Mardani et al., ICLR 2024)"),
    "red-diff-v": Method(red_diff_sample, REDDiffVConfig, True, "RED-diff with random times"),
    "repaint": Method(repaint_sample, RePaintConfig, False, "RePaint (Lugmayr et al., CVPR 2022)"),
    "copaint": Method(copaint_sample, CoPaintConfig, True, "CoPaint (Zhang et al., ICLR 2023)"),
    "copaint-tt": Method(copaint_sample, CoPaintTTConfig, True, "CoPaint with time travel"),
    "resample": Method(resample_sample, ReSampleConfig, True, "ReSample (Song et al., ICLR 2024)"),
    "daps": Method(daps_sample, DAPSConfig, True, "DAPS (Zhang et al., CVPR 2025)"),
    "mgps": Method(mgps_sample, MGPSConfig, True, "MGPS (Moufad et al., ICLR 2025)"),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def method_config(name: str, config: Settings | dict | None = None) -> Settings:
    """The checked config of method ``name``: its defaults, a dict of changes, or a config object."""
    cls = get_method(name).config
    if config is None or isinstance(config, dict):
        return cls.from_dict(config)
    if not isinstance(config, cls):
        raise ConfigError(f"method {name!r} takes a {cls.__name__}, got a {type(config).__name__}")
    return config


def run_method(name: str, prior, operator, y: Tensor, num_samples: int, seed: int = 0, names=None,
               config: Settings | dict | None = None, callback=None) -> Tensor:
    """Clean codes (B * num_samples, ...) of method ``name`` for the B observations ``y``.

    Each query's random stream depends only on (seed, its name, the method): the CLI, the Python API
    and the benchmarks give the same samples for the same seed. ``names`` default to "0", "1", ...
    """
    method, cfg = get_method(name), method_config(name, config)
    names = [str(i) for i in range(y.shape[0])] if names is None else list(names)
    if len(names) != y.shape[0]:
        raise ConfigError(f"{y.shape[0]} observations but {len(names)} query names")
    if method.needs_grad and torch.is_inference_mode_enabled():
        raise ConfigError(f"method {name!r} needs gradients while sampling; run it outside torch.inference_mode "
                          "(with Lightning: Trainer(inference_mode=False), the vipaint default)")
    noise = QueryNoise(seed, names, name, num_samples)
    with torch.set_grad_enabled(method.needs_grad):
        return method.sample(prior, operator, y, noise, cfg, callback)


__all__ = ["METHODS", "Method", "get_method", "method_config", "run_method"]
