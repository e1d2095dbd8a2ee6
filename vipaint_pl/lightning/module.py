"""Lightning shells: a base that holds the frozen prior and the local queries, and VIPaint on top.

The frozen prior is rebuilt from its spec (never checkpointed); the posterior's parameters are
created in ``setup`` for the queries this rank owns; sampling settings stay out of the saved
hyperparameters so that ``predict --ckpt_path`` honours the command line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import lightning as L
import torch
from torch import Tensor

from .. import rng
from ..errors import ConfigError
from ..methods.guidance import guided_reverse_diffusion
from ..methods.vipaint import BoundConfig, HierarchicalPosterior, InitConfig, hierarchy_times, vipaint_bound
from ..perceptual import build_perceptual
from ..priors import DiffusionPrior, load_prior
from .data import make_operator
from .strategy import PerQueryDDPStrategy


@dataclass
class PriorSpec:
    """Which pretrained prior: kind (pixel | latent | stable-diffusion), hub id or folder, loader options."""

    kind: str = "latent"
    source: str = ""
    kwargs: dict = field(default_factory=dict)


@dataclass
class SamplingConfig:
    """Phase 2 (paper 000, Sec. 4.3): ancestral sampling, then DPS-guided denoising from Ts to 0."""

    num_samples: int = 10
    steps: int = 50  # reverse steps from Ts to the data
    dps_step_size: float = 1.0  # 0 disables the DPS gradient
    eta: float = 0.2  # DDIM eta of the reverse steps
    paste_observed: bool = True  # replace the observed part: x + A^+ (y - A x)


# The prior is frozen in eval mode on purpose; predict batches are index lists, not sampler indices.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
warnings.filterwarnings("ignore", message=r".*infer the batch indices.*")

# Plain-data hyperparameters: allowed in checkpoints loaded with torch.load(weights_only=True).
torch.serialization.add_safe_globals([PriorSpec, SamplingConfig, BoundConfig, InitConfig])


class InpaintingModule(L.LightningModule):
    """Shared shell: frozen prior, the local queries as buffers, operators per batch, predict output."""

    needs_fit = True  # False for methods that only sample (``vipaint inpaint`` then skips the fit)

    def __init__(self, prior: PriorSpec | DiffusionPrior, seed: int = 0, sampling: SamplingConfig | None = None):
        super().__init__()
        self.prior = prior if isinstance(prior, DiffusionPrior) else load_prior(prior.kind, prior.source, **prior.kwargs)
        self.prior.requires_grad_(False)
        self.seed = seed
        self.sampling = sampling or SamplingConfig()
        self.strict_loading = False
        self.names: list[str] = []

    # ---- queries -------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule
        world = self.trainer.world_size
        if world > 1 and not isinstance(self.trainer.strategy, PerQueryDDPStrategy):
            raise ConfigError(f"{type(self.trainer.strategy).__name__} would average the per-query posteriors of "
                              f"{world} ranks; use strategy='per_query_ddp' for several devices")
        idx = dm.local_indices(self.global_rank, world)
        if not idx:
            raise ConfigError(f"{len(dm.queries)} queries cannot be shared by {world} devices; use at most "
                              f"{len(dm.queries)} devices")
        queries = [dm.queries[i] for i in idx]
        if self.names and self.names != [q.name for q in queries]:
            raise ConfigError("the queries changed between setup calls; use one datamodule per module")
        self.names = [q.name for q in queries]
        self.task, self.task_kwargs = dm.task, dm.task_kwargs
        expected = self.prior.image_channels()
        if expected is not None and queries and queries[0].observed.shape[0] != expected:
            raise ConfigError(f"the images have {queries[0].observed.shape[0]} channels but the prior expects {expected}")
        dev = self.device
        self.register_buffer("masks", torch.stack([q.mask for q in queries]).to(dev), persistent=False)
        truth = torch.stack([q.truth if q.truth is not None else q.observed for q in queries]).to(dev)
        self.register_buffer("y", self.operator(torch.arange(len(queries))).forward(truth), persistent=False)
        self.register_buffer("truth", truth, persistent=False)
        self.build_parameters(stage)

    def build_parameters(self, stage: str) -> None:
        """Create per-query parameters (subclasses)."""

    @property
    def num_local_queries(self) -> int:
        return len(self.names)

    def operator(self, idx: Tensor, repeat: int = 1):
        return make_operator(self.task, self.masks[idx.cpu()].repeat_interleave(repeat, 0), **self.task_kwargs)

    def chunks(self, size: int):
        n = self.num_local_queries
        return [torch.arange(i, min(i + size, n)) for i in range(0, n, size)]

    def configure_callbacks(self):
        from .writer import PredictionWriter

        has_writer = any(isinstance(c, PredictionWriter) for c in self.trainer.callbacks)
        return [] if has_writer else [PredictionWriter()]

    # ---- checkpoints: never the prior ----------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("prior.")}
        checkpoint["query_names"] = list(self.names)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("query_names")
        if saved is not None and self.names and saved != self.names:
            raise ConfigError(f"checkpoint was fit on queries {saved[:5]}..., not on {self.names[:5]}...")

    # ---- predict ------------------------------------------------------------------------------
    def finish_samples(self, z0: Tensor, idx: Tensor, n: int) -> Tensor:
        x = self.prior.decode(z0).float().clamp(-1, 1)
        if self.sampling.paste_observed:
            op, y = self.operator(idx, n), self.y[idx.cpu()].repeat_interleave(n, 0)
            x = (x + op.pinv(y - op(x))).clamp(-1, 1)
        return x.view(len(idx), n, *x.shape[1:])

    def package(self, idx: Tensor, samples: Tensor) -> list[dict]:
        out = []
        for j, i in enumerate(idx.tolist()):
            op = self.operator(torch.tensor([i]))
            out.append({"name": self.names[i], "samples": samples[j].cpu(),
                        "observed": op.pinv(self.y[i : i + 1])[0].cpu(), "mask": self.masks[i].cpu(),
                        "truth": self.truth[i].cpu()})
        return out


class VIPaintModule(InpaintingModule):
    """VIPaint-K: the VLB is the training loss; predict draws samples from the fitted posterior.

    Args:
        prior: which pretrained prior to load (never trained, never checkpointed).
        k: number of hierarchy levels; times: their DDPM indices Te > ... > Ts (default: DESIGN.md).
        bound: weights of the VLB terms; init: initialization from the observation.
        lr_mean, lr_log_std, lr_gamma: Adam learning rates (betas ``adam_betas``) of the three groups;
            StepLR every ``lr_step_size`` steps by ``lr_decay``.
        query_batch_size: queries per network call during fit (does not change results).
        log_images_every_n_steps: posterior samples to TensorBoard every N steps (0: never).
        seed: every random draw of a query comes from (seed, query name), so results do not depend
            on batch composition or the number of devices.
        sampling: phase 2 settings; not saved with the checkpoint, so they can change at predict time.
    """

    def __init__(self, prior: PriorSpec | DiffusionPrior, k: int = 2, times: list[int] | None = None,
                 bound: BoundConfig | None = None, init: InitConfig | None = None, lr_mean: float = 0.1,
                 lr_log_std: float = 0.001, lr_gamma: float = 0.01, adam_betas: tuple[float, float] = (0.9, 0.99),
                 lr_step_size: int = 10, lr_decay: float = 0.99, query_batch_size: int = 4,
                 log_images_every_n_steps: int = 25, seed: int = 0, sampling: SamplingConfig | None = None):
        super().__init__(prior, seed, sampling)
        self.save_hyperparameters(ignore=["sampling"] + (["prior"] if isinstance(prior, DiffusionPrior) else []))
        self.times = hierarchy_times(k, times, self.prior.num_train_timesteps)
        self.bound = bound or BoundConfig()
        self.init_cfg = init or InitConfig()
        self.perceptual = build_perceptual(self.bound.perceptual)
        self.automatic_optimization = False
        self.posterior: HierarchicalPosterior | None = None

    def build_parameters(self, stage: str) -> None:
        if self.posterior is not None:
            return
        c, h, w = self.truth.shape[1:]
        shape = self.prior.latent_shape((c, h, w)) if self.prior.is_latent else tuple(self.truth.shape[1:])
        self.posterior = HierarchicalPosterior(self.times, self.num_local_queries, shape).to(self.device)
        with torch.no_grad():
            all_idx = torch.arange(self.num_local_queries)
            z_obs = self.prior.encode(self.operator(all_idx).pinv(self.y).to(self.device))
        self.posterior.initialize(self.prior, z_obs.float(), self.init_cfg, rng.generators(self.seed, self.names, "init"))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("perceptual.")}

    def configure_optimizers(self):
        p = self.posterior
        opt = torch.optim.Adam([{"params": [p.mu], "lr": self.hparams.lr_mean},
                                {"params": [p.log_std], "lr": self.hparams.lr_log_std},
                                {"params": [p.gamma], "lr": self.hparams.lr_gamma}], betas=tuple(self.hparams.adam_betas))
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=self.hparams.lr_step_size, gamma=self.hparams.lr_decay)
        return {"optimizer": opt, "lr_scheduler": sched}

    def training_step(self, batch, batch_idx):
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.zero_grad()
        step, sums = self.global_step, {}
        for idx in self.chunks(self.hparams.query_batch_size):
            gens = rng.generators(self.seed, [self.names[i] for i in idx], f"fit/{step}")
            terms = vipaint_bound(self.prior, self.posterior, self.operator(idx, self.bound.mc_samples), self.y[idx], idx.to(self.device),
                                  gens, self.bound, self.perceptual)
            self.manual_backward(terms["loss"].sum())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach().sum())
        opt.step()
        sched.step()
        n = self.num_local_queries
        self.log_dict({f"vlb/{k}": v / n for k, v in sums.items()}, prog_bar=False, on_step=True)
        self.log("loss", sums["loss"] / n, prog_bar=True, on_step=True)
        for name, group in zip(("mean", "log_std", "gamma"), opt.param_groups):
            self.log(f"lr/{name}", group["lr"], on_step=True)
        every = self.hparams.log_images_every_n_steps
        if every and (step % every == 0 or step + 1 == self.trainer.max_steps):
            self._log_posterior_samples(step)

    @torch.no_grad()
    def _log_posterior_samples(self, step: int) -> None:
        """Current posterior samples (one-step reconstruction at Ts), as in the paper's Figure 4."""
        from lightning.pytorch.loggers import TensorBoardLogger

        if self.global_rank != 0 or not isinstance(self.logger, TensorBoardLogger):
            return
        idx = torch.arange(min(4, self.num_local_queries))
        gens = rng.generators(self.seed, [self.names[i] for i in idx], f"log/{step}")
        _, z, _ = self.posterior.sample(self.prior, idx.to(self.device), 2, gens)
        x = self.prior.decode(self.prior.predict_x0(z, self.times[-1])).float().clamp(-1, 1)
        obs = self.operator(idx).pinv(self.y[idx]).float()
        rows = torch.cat([torch.stack([o, *x[2 * j : 2 * j + 2]]) for j, o in enumerate(obs)])
        import torchvision

        grid = torchvision.utils.make_grid((rows + 1) / 2, nrow=3)
        self.logger.experiment.add_image("posterior_samples", grid, step)

    def predict_step(self, batch, batch_idx):
        idx = torch.as_tensor(batch).long()
        n, s = self.sampling.num_samples, self.sampling
        gens = rng.generators(self.seed, [self.names[i] for i in idx], "predict")
        with torch.no_grad():
            _, z, _ = self.posterior.sample(self.prior, idx.to(self.device), n, gens)
        y = self.y[idx].repeat_interleave(n, 0)
        z0 = guided_reverse_diffusion(self.prior, z, self.times[-1], self.operator(idx, n), y, gens, n,
                                      s.steps, s.dps_step_size, s.eta)
        return self.package(idx, self.finish_samples(z0, idx, n))

