"""Methods with nothing to fit across steps (DPS, Blended, RePaint, RED-diff, CoPaint, ReSample): LightningModules that only predict, on the same queries,
operators, seeds and writer as VIPaint. ``vipaint predict`` runs them; ``vipaint inpaint`` skips the fit.
"""

from __future__ import annotations

import torch

from .. import rng
from ..methods.blended import BlendedConfig, blended_sample
from ..methods.copaint import CoPaintConfig, copaint_sample
from ..methods.dps import DPSConfig, dps_sample
from ..methods.red_diff import REDDiffConfig, red_diff_sample
from ..methods.repaint import RePaintConfig, repaint_sample
from ..methods.resample import ReSampleConfig, resample_sample
from ..priors import DiffusionPrior
from .module import InpaintingModule, PriorSpec, SamplingConfig


class SamplerModule(InpaintingModule):
    """Base of the predict-only methods: subclasses implement ``sample_codes``."""

    needs_fit = False
    method_name = "sampler"

    def code_shape(self) -> tuple[int, ...]:
        shape = tuple(self.truth.shape[1:])
        return self.prior.latent_shape(shape) if self.prior.is_latent else shape

    def sample_codes(self, operator, y, shape, n: int, gens):
        raise NotImplementedError

    def predict_step(self, batch, batch_idx):
        idx = torch.as_tensor(batch).long()
        n = self.sampling.num_samples
        gens = rng.generators(self.seed, [self.names[i] for i in idx], self.method_name)
        z0 = self.sample_codes(self.operator(idx, n), self.y[idx], self.code_shape(), n, gens)
        return self.package(idx, self.finish_samples(z0, idx, n))


class DPSModule(SamplerModule):
    """DPS (Chung et al. 2023); on a latent prior the gradient flows through the decoder (latent-DPS).

    Args:
        prior: which pretrained prior to load. dps: steps, step size zeta, eta, squared or not.
        sampling: ``num_samples`` and ``paste_observed`` are used; the rest belongs to VIPaint.
    """

    method_name = "dps"

    def __init__(self, prior: PriorSpec | DiffusionPrior, dps: DPSConfig | None = None, seed: int = 0,
                 sampling: SamplingConfig | None = None):
        super().__init__(prior, seed, sampling)
        self.dps = dps or DPSConfig()

    def sample_codes(self, operator, y, shape, n, gens):
        return dps_sample(self.prior, operator, y, shape, n, gens, self.dps)


class BlendedModule(SamplerModule):
    """Replacement (Blended; Blended Latent Diffusion on latent priors): the observed part is overwritten
    by its noised version after every reverse step."""

    method_name = "blended"

    def __init__(self, prior: PriorSpec | DiffusionPrior, blended: BlendedConfig | None = None, seed: int = 0,
                 sampling: SamplingConfig | None = None):
        super().__init__(prior, seed, sampling)
        self.blended = blended or BlendedConfig()

    def sample_codes(self, operator, y, shape, n, gens):
        with torch.no_grad():
            return blended_sample(self.prior, operator, y, shape, n, gens, self.blended)


class REDDiffModule(SamplerModule):
    """RED-diff (descending times) or RED-diff-V (``red_diff.times: random``): each sample is its own
    optimization of mu, run inside predict (so predict needs ``inference_mode=False``, the CLI default)."""

    method_name = "red_diff"

    def __init__(self, prior: PriorSpec | DiffusionPrior, red_diff: REDDiffConfig | None = None, seed: int = 0,
                 sampling: SamplingConfig | None = None):
        super().__init__(prior, seed, sampling)
        self.red_diff = red_diff or REDDiffConfig()

    def sample_codes(self, operator, y, shape, n, gens):
        return red_diff_sample(self.prior, operator, y, shape, n, gens, self.red_diff)


class RePaintModule(SamplerModule):
    """RePaint (Lugmayr et al. 2022): replacement with time travel (``jump_length`` / ``jump_n_sample``);
    on a latent prior the observation is encoded and the mask downsampled, as for Blended."""

    method_name = "repaint"

    def __init__(self, prior: PriorSpec | DiffusionPrior, repaint: RePaintConfig | None = None, seed: int = 0,
                 sampling: SamplingConfig | None = None):
        super().__init__(prior, seed, sampling)
        self.repaint = repaint or RePaintConfig()

    def sample_codes(self, operator, y, shape, n, gens):
        with torch.no_grad():
            return repaint_sample(self.prior, operator, y, shape, n, gens, self.repaint)


class CoPaintModule(SamplerModule):
    """CoPaint (Zhang et al. 2023): z_t optimized before each DDIM step so that its one-step estimate fits y;
    ``copaint.time_travel: true`` is CoPaint-TT. Runs inside predict with gradients (``inference_mode=False``)."""

    method_name = "copaint"

    def __init__(self, prior: PriorSpec | DiffusionPrior, copaint: CoPaintConfig | None = None, seed: int = 0,
                 sampling: SamplingConfig | None = None):
        super().__init__(prior, seed, sampling)
        self.copaint = copaint or CoPaintConfig()

    def sample_codes(self, operator, y, shape, n, gens):
        return copaint_sample(self.prior, operator, y, shape, n, gens, self.copaint)


class ReSampleModule(SamplerModule):
    """ReSample (Song et al. 2024): latent-DPS steps, hard data consistency by optimization in the middle and
    last thirds, stochastic resampling. Runs inside predict with gradients (``inference_mode=False``)."""

    method_name = "resample"

    def __init__(self, prior: PriorSpec | DiffusionPrior, resample: ReSampleConfig | None = None, seed: int = 0,
                 sampling: SamplingConfig | None = None):
        super().__init__(prior, seed, sampling)
        self.resample = resample or ReSampleConfig()

    def sample_codes(self, operator, y, shape, n, gens):
        return resample_sample(self.prior, operator, y, shape, n, gens, self.resample)
