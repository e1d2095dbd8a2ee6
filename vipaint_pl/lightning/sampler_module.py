"""Any registered method as a predict-only LightningModule: ``method`` names it, ``config`` sets it."""

from __future__ import annotations

import torch
from typing_extensions import override

from ..methods import get_method, method_config, run_method
from ..priors import DiffusionPrior
from .module import InpaintingModule, OutputConfig, PriorSpec


class SamplerModule(InpaintingModule):
    """A method of ``vipaint_pl.methods.METHODS`` on the queries, seeds and writer every method shares.

    Args:
        prior: which pretrained prior to load (never trained, never checkpointed).
        method: the registry name (dps, psld, gml-dps, blended, red-diff, red-diff-v, repaint, copaint,
            copaint-tt, resample, vipaint; ``vipaint`` here fits inside predict, ``VIPaintModule`` fits
            with Lightning).
        config: the method's settings, changes to its defaults (checked when the module is built: an
            unknown key or an impossible value is a ``ConfigError`` naming it).
        seed: every random draw of a query comes from (seed, query name, method).
        output: how many samples per query, pasting the observed part back.
    """

    needs_fit = False

    def __init__(self, prior: PriorSpec | DiffusionPrior, method: str = "dps", config: dict | None = None,
                 seed: int = 0, output: OutputConfig | None = None):
        cfg = method_config(method, config)
        super().__init__(prior, seed, output)  # the config is checked first: no prior loaded for a typo
        self.method_name, self.config = method, cfg

    @override
    def predict_step(self, batch, batch_idx):
        idx = torch.as_tensor(batch).long()
        if get_method(self.method_name).needs_grad:
            self.check_gradients_available()
        z0 = run_method(self.method_name, self.prior, self.operator(idx), self.y[idx.cpu()], self.output.num_samples,
                        self.seed, [self.names[i] for i in idx.tolist()], self.config, self.step_callback)
        return self.package(idx, self.finish_samples(z0, idx))
