"""VIPaint-K on Lightning: the bound is the training loss (manual optimization), predict samples the fit.

The three phases are those of ``vipaint_pl.methods.vipaint`` (the same functions the registry's
``vipaint_sample`` runs), so a query fit here gives the samples of ``run_method("vipaint", ...)``.
"""

from __future__ import annotations

import torch
from typing_extensions import override

from ..console import note
from ..errors import ConfigError
from ..methods.vipaint import (
    HierarchicalPosterior,
    VIPaintConfig,
    fit_noise,
    init_posterior,
    make_optimizer,
    sample_posterior,
    sample_rows,
    vipaint_bound,
)
from ..perceptual import build_perceptual
from ..priors import DiffusionPrior
from .module import InpaintingModule, OutputConfig, PriorSpec


class VIPaintModule(InpaintingModule):
    """VIPaint-K: ``vipaint fit`` optimizes each query's posterior; ``vipaint predict`` samples it.

    Args:
        prior: which pretrained prior to load (never trained, never checkpointed).
        vipaint: the hierarchy, bound, initialization, optimizer (``fit_steps`` of them) and the sampler.
            ``vipaint.sampling`` may change between fit and predict; the rest must not.
        query_batch_size: queries per network call during fit (does not change results).
        log_images_every_n_steps: posterior samples to TensorBoard every N steps (0: never).
        seed: every random draw of a query comes from (seed, query name, "vipaint"), so results do not
            depend on batch composition, the number of devices, or the entry point.
        output: how many samples per query, pasting the observed part back.
    """

    method_name = "vipaint"

    def __init__(self, prior: PriorSpec | DiffusionPrior, vipaint: VIPaintConfig | None = None,
                 query_batch_size: int = 4, log_images_every_n_steps: int = 25, seed: int = 0,
                 output: OutputConfig | None = None):
        self.cfg = vipaint if isinstance(vipaint, VIPaintConfig) else VIPaintConfig.from_dict(vipaint)
        super().__init__(prior, seed, output)
        self.save_hyperparameters(ignore=["prior", "vipaint", "output"])
        self.times = self.cfg.hierarchy(self.prior)
        if self.cfg.snr_matched_times and self.cfg.times is None and self.prior.x0_range is not None \
                and self.prior.data_std is None:  # a pixel prior: its data are rarely of unit variance
            note(f"the pixel prior has no data_std: VIPaint keeps the official times {self.times}; give the data's "
                 "standard deviation (prior kwargs data_std; EDM takes 0.5 for natural images in [-1, 1]) to place them "
                 "at the official times' signal-to-noise ratio")
        self.perceptual = build_perceptual(self.cfg.bound.perceptual)
        self.automatic_optimization = False
        self.posterior: HierarchicalPosterior | None = None

    @override
    def build_parameters(self, stage: str) -> None:
        if stage == "fit":  # the number of fit steps has one source: vipaint.fit_steps
            max_steps = self.trainer.max_steps
            if max_steps not in (-1, self.cfg.fit_steps):
                raise ConfigError(f"trainer.max_steps={max_steps} and vipaint.fit_steps={self.cfg.fit_steps} disagree; "
                                  "set the number of fit steps with vipaint.fit_steps alone")
            self.trainer.fit_loop.epoch_loop.max_steps = self.cfg.fit_steps
        if self.posterior is None:
            every = torch.arange(self.num_local_queries)
            self.posterior = init_posterior(self.prior, self.operator(every), self.y, self.noise(every), self.cfg)

    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["vipaint_times"] = list(self.times)

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("vipaint_times")
        if saved is not None and saved != self.times:
            raise ConfigError(f"the checkpoint's posterior has times {saved}, this config {self.times}: "
                              "use the vipaint.k / vipaint.times of the fit (a fit on a prior with a data_std made "
                              "before snr_matched_times existed: vipaint.snr_matched_times false)")

    @override
    def configure_callbacks(self):
        from .callbacks import PosteriorImageLogger

        every = self.hparams.log_images_every_n_steps
        present = any(isinstance(c, PosteriorImageLogger) for c in self.trainer.callbacks)
        return super().configure_callbacks() + ([PosteriorImageLogger(every)] if every and not present else [])

    @override
    def configure_optimizers(self):
        opt, sched = make_optimizer(self.posterior, self.cfg.optim, self.cfg.fit_steps)
        return {"optimizer": opt, "lr_scheduler": sched}

    @override
    def training_step(self, batch, batch_idx):
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.zero_grad()
        step, sums, kept = self.global_step, {}, 0
        for idx in self.chunks(self.hparams.query_batch_size):
            terms = vipaint_bound(self.prior, self.posterior, self.operator(idx), self.y[idx], idx.to(self.device),
                                  fit_noise(self.noise(idx), step, self.cfg), self.cfg.bound, self.perceptual)
            ok = self.finite_queries(idx, terms["loss"], step)
            self.manual_backward(torch.where(ok, terms["loss"], torch.zeros_like(terms["loss"])).sum())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()[ok].sum())
            kept += int(ok.sum())
        for p in self.posterior.parameters():  # a stopped query's NaN gradients must not reach its neighbours
            if p.grad is not None:
                p.grad.nan_to_num_(0.0, 0.0, 0.0)
        opt.step()
        sched.step()
        n = max(kept, 1)
        self.log_dict({f"vlb/{k}": v / n for k, v in sums.items()}, prog_bar=False, on_step=True)
        self.log("loss", sums["loss"] / n, prog_bar=True, on_step=True)
        for name, group in zip(("mean", "log_std", "gamma"), opt.param_groups):
            self.log(f"lr/{name}", group["lr"], on_step=True)

    def finite_queries(self, idx: torch.Tensor, loss: torch.Tensor, step: int) -> torch.Tensor:
        """Which queries of ``idx`` are still fitting: a query whose bound turns NaN or infinite is stopped
        (named on stderr, not sampled, not written) and the others go on."""
        stopped = torch.tensor([self.names[i] in self.failed_queries for i in idx.tolist()], device=loss.device)
        bad = ~torch.isfinite(loss.detach()) & ~stopped
        if bad.any():
            self.mark_failed(idx[bad.cpu()], f"the bound is not finite at fit step {step}")
        return ~(bad | stopped)

    @torch.no_grad()
    def posterior_preview(self, step: int, queries: int = 4, per_query: int = 2) -> torch.Tensor:
        """Rows [observation | samples] of the current posterior's one-step reconstructions at Ts (the
        paper's Figure 4), for the first ``queries`` local queries; images in [-1, 1]."""
        idx = torch.arange(min(queries, self.num_local_queries))
        noise = self.noise(idx, per_query).stream(f"log/{step}")
        _, z, _ = self.posterior.sample(self.prior, sample_rows(self.posterior, idx.to(self.device), noise), noise)
        x = self.prior.decode(self.prior.predict_x0(z, self.times[-1])).float().clamp(-1, 1)
        obs = self.operator(idx).pinv(self.y[idx]).float()
        return torch.cat([torch.stack([o, *x[per_query * j : per_query * (j + 1)]]) for j, o in enumerate(obs)])

    @override
    def predict_step(self, batch, batch_idx):
        idx = torch.as_tensor(batch).long()
        self.check_gradients_available()
        noise = self.noise(idx, self.output.num_samples).stream("sample")
        z0 = sample_posterior(self.prior, self.posterior, self.operator(idx), self.y[idx], idx.to(self.device), noise,
                              self.cfg.sampling, self.cfg.bound, self.step_callback)
        return self.package(idx, self.finish_samples(z0, idx))
