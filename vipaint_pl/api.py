"""A short Python entry point for notebooks: inpaint a batch of images with a prior, get samples back.

It builds the same data module, method module and Trainer as the ``vipaint`` command.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ShapeError
from .lightning.data import QueryDataModule
from .lightning.module import OutputConfig
from .lightning.sampler_module import SamplerModule
from .lightning.trainer import make_trainer
from .lightning.vipaint_module import VIPaintModule
from .queries import make_query
from .settings import Settings


class TensorQueries(QueryDataModule):
    """Queries given as tensors rather than files."""

    def __init__(self, images: Tensor, masks: Tensor, names: list[str] | None = None, task: str = "inpainting",
                 task_kwargs: dict | None = None, query_batch_size: int = 4):
        super().__init__(images="<tensors>", task=task, task_kwargs=task_kwargs, output_dir=None,
                         query_batch_size=query_batch_size)
        names = names or [f"query_{i:04d}" for i in range(images.shape[0])]
        if masks.ndim == 3:
            masks = masks[:, None]
        if masks.shape[0] != images.shape[0] or len(names) != images.shape[0]:
            raise ShapeError(f"{images.shape[0]} images, {masks.shape[0]} masks and {len(names)} names must agree")
        inpainting = task == "inpainting"
        self.queries = [make_query(n, im, m, im.shape[0], inpainting=inpainting) for n, im, m in zip(names, images, masks)]


def inpaint(images: Tensor, masks: Tensor, prior, method: str = "vipaint", config: Settings | dict | None = None,
            num_samples: int = 4, names: list[str] | None = None, paste_observed: bool = True, seed: int = 0,
            accelerator: str = "auto", precision="32-true") -> Tensor:
    """Samples of shape (B, num_samples, C, H, W) in [-1, 1] for each image, from any registered method.

    images: (B, C, H, W) in [-1, 1]; masks: (B, 1, H, W) or (B, H, W), 1 = observed; prior: a
    ``DiffusionPrior`` (e.g. ``load_prior("latent", "CompVis/ldm-celebahq-256")``); method: a name of
    ``vipaint_pl.methods.METHODS``; config: its settings (a config object or a dict of changes).
    VIPaint is fit with Lightning (``config.fit_steps`` steps), then sampled.
    """
    output = OutputConfig(num_samples=num_samples, paste_observed=paste_observed)
    if method == "vipaint":
        from .methods import method_config

        module = VIPaintModule(prior, method_config("vipaint", config), seed=seed, output=output,
                               log_images_every_n_steps=0)
    else:
        module = SamplerModule(prior, method, config, seed=seed, output=output)
    data = TensorQueries(images, masks, names)
    trainer = make_trainer(accelerator=accelerator, devices=1, precision=precision, logger=False,
                           enable_checkpointing=False, enable_progress_bar=False)
    if module.needs_fit:
        trainer.fit(module, datamodule=data)
    results = [r for batch in trainer.predict(module, datamodule=data) for r in batch]
    return torch.stack([r["samples"] for r in results])
