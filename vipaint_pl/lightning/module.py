"""The shared Lightning shell: the frozen prior, the queries this rank owns, their operators, the output.

The frozen prior is rebuilt from its spec (never checkpointed); the per-query parameters of a method are
created in ``setup`` for the local queries; sampling settings stay out of the saved hyperparameters so
that ``predict --ckpt_path`` honours the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
import torch
from torch import Tensor
from typing_extensions import override

from ..console import error
from ..errors import ConfigError
from ..operators import operator_for_task
from ..priors import DiffusionPrior, load_prior
from ..rng import QueryNoise, query_seed
from ..settings import Settings, bounded
from .strategy import PerQueryDDPStrategy


@dataclass
class PriorSpec:
    """Which pretrained prior: kind (pixel | latent | stable-diffusion), hub id or folder, loader options."""

    kind: str = "latent"
    source: str = ""
    kwargs: dict = field(default_factory=dict)


@dataclass
class OutputConfig(Settings):
    """What predict returns for every query: how many samples, and whether the observed part is pasted back."""

    num_samples: int = bounded(10, low=1)
    paste_observed: bool = True  # replace the observed part: x + A^+ (y - A x)


class InpaintingModule(L.LightningModule):
    """Shared shell: frozen prior, the local queries as buffers, operators per batch, predict output.

    Subclasses set ``method_name`` (the registry name, which also names the random streams) and
    ``needs_fit`` (False: ``vipaint inpaint`` goes straight to predict).
    """

    needs_fit = True
    method_name = ""

    def __init__(self, prior: PriorSpec | DiffusionPrior, seed: int = 0, output: OutputConfig | None = None):
        super().__init__()
        self.prior = prior if isinstance(prior, DiffusionPrior) else load_prior(prior.kind, prior.source, **prior.kwargs)
        self.prior.requires_grad_(False)
        self.seed = seed
        self.output = output or OutputConfig()
        self.strict_loading = False
        self.names: list[str] = []
        self.failed_queries: dict[str, str] = {}  # query name -> why it stopped (kept in checkpoints)
        self.sigma_y = 0.0  # the data's measurement noise, set in setup
        self.step_callback = None  # callback(step, info) for every sampling step (e.g. the web page's progress)

    # ---- queries -------------------------------------------------------------------------------
    @override
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
        dev = self.device  # the strategy's device: Lightning sets it before setup, but moves the weights after
        self.prior.to(dev)  # the posterior's start runs the prior (e.g. encodes y) here
        self.register_buffer("masks", torch.stack([q.mask for q in queries]).to(dev), persistent=False)
        truth = torch.stack([q.truth if q.truth is not None else q.observed for q in queries]).to(dev)
        self.sigma_y = float(getattr(dm, "sigma_y", 0.0))
        self.register_buffer("y", self.measure(truth, getattr(dm, "seed", 0)), persistent=False)
        self.register_buffer("truth", truth, persistent=False)
        self.build_parameters(stage)

    def build_parameters(self, stage: str) -> None:
        """Create per-query parameters (methods with something to fit)."""

    def mark_failed(self, idx: Tensor, reason: str) -> None:
        """Stop the local queries ``idx`` (e.g. their bound turned NaN); the others go on."""
        for i in idx.tolist():
            name = self.names[i]
            if name not in self.failed_queries:
                self.failed_queries[name] = reason
                error(f"query {name!r}: {reason}; it is stopped, the other queries go on")

    @property
    def num_local_queries(self) -> int:
        return len(self.names)

    def operator(self, idx: Tensor):
        """The measurement operator of the local queries ``idx`` (with the data's ``sigma_y``)."""
        op = operator_for_task(self.task, self.masks[idx.cpu()], **self.task_kwargs)
        op.sigma_y = self.sigma_y
        return op

    def measure(self, truth: Tensor, data_seed: int) -> Tensor:
        """y = A x + sigma_y n for the local queries, n drawn from (data seed, query name, "measurement")."""
        y = self.operator(torch.arange(len(self.names))).forward(truth)
        if self.sigma_y > 0:
            n = torch.stack([torch.randn(y.shape[1:], generator=torch.Generator().manual_seed(
                query_seed(data_seed, name, "measurement")), dtype=y.dtype) for name in self.names]).to(y.device)
            if self.task == "inpainting":  # y lives on the observed pixels only
                n = n * self.masks
            y = y + self.sigma_y * n
        return y

    def noise(self, idx: Tensor, per_query: int = 1) -> QueryNoise:
        """The random streams of the local queries ``idx``: (seed, query name, method) and nothing else."""
        return QueryNoise(self.seed, [self.names[i] for i in idx.tolist()], self.method_name, per_query)

    def chunks(self, size: int):
        n = self.num_local_queries
        return [torch.arange(i, min(i + size, n)) for i in range(0, n, size)]

    @override
    def configure_callbacks(self):
        from .writer import PredictionWriter

        has_writer = any(isinstance(c, PredictionWriter) for c in self.trainer.callbacks)
        return [] if has_writer else [PredictionWriter()]

    # ---- checkpoints: never the prior ----------------------------------------------------------
    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        frozen = ("prior.", "perceptual.")
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(frozen)}
        checkpoint["query_names"] = list(self.names)
        checkpoint["failed_queries"] = dict(self.failed_queries)

    @override
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("query_names")
        if saved is not None and self.names and saved != self.names:
            raise ConfigError(f"checkpoint was fit on queries {saved[:5]}..., not on {self.names[:5]}...")
        self.failed_queries = dict(checkpoint.get("failed_queries", {}))

    # ---- predict ------------------------------------------------------------------------------
    def check_gradients_available(self) -> None:
        if torch.is_inference_mode_enabled():
            raise ConfigError(f"{self.method_name} needs gradients while sampling: use Trainer(inference_mode=False) "
                              "(the default of the vipaint command and of vipaint_pl.api)")

    def finish_samples(self, z0: Tensor, idx: Tensor) -> Tensor:
        """Decode, clamp to [-1, 1], paste the observed part back if asked: (B, num_samples, C, H, W)."""
        n = self.output.num_samples
        x = self.prior.decode(z0).float().clamp(-1, 1)
        if self.output.paste_observed:
            op, y = self.operator(idx).repeat_interleave(n), self.y[idx.cpu()].repeat_interleave(n, 0)
            x = (x + op.pinv(y - op(x))).clamp(-1, 1)
        return x.view(len(idx), n, *x.shape[1:])

    def package(self, idx: Tensor, samples: Tensor) -> list[dict]:
        """One result dict per query; a query stopped during the fit, or whose samples are not finite,
        carries ``failed`` (the reason) and is not written."""
        out = []
        for j, i in enumerate(idx.tolist()):
            op = self.operator(torch.tensor([i]))
            name = self.names[i]
            result = {"name": name, "samples": samples[j].cpu(), "observed": op.pinv(self.y[i : i + 1])[0].cpu(),
                      "mask": self.masks[i].cpu(), "truth": self.truth[i].cpu()}
            bad = int((~torch.isfinite(result["samples"])).sum())
            if name in self.failed_queries:
                result["failed"] = self.failed_queries[name]
            elif bad:
                result["failed"] = f"{bad} sample values are NaN or infinite"
            out.append(result)
        return out
