"""A short Python entry point for notebooks: inpaint a batch of images with a prior, get samples back."""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor

from .lightning.data import QueryDataModule
from .lightning.module import SamplingConfig, VIPaintModule
from .queries import make_query


class TensorQueries(QueryDataModule):
    """Queries given as tensors rather than files."""

    def __init__(self, images: Tensor, masks: Tensor, names: list[str] | None = None, task: str = "inpainting",
                 task_kwargs: dict | None = None, query_batch_size: int = 4):
        super().__init__(images="<tensors>", task=task, task_kwargs=task_kwargs, output_dir=None,
                         query_batch_size=query_batch_size)
        names = names or [f"query_{i:04d}" for i in range(images.shape[0])]
        if masks.ndim == 3:
            masks = masks[:, None]
        if masks.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {masks.shape[0]} masks")
        self.queries = [make_query(n, im, m, im.shape[0]) for n, im, m in zip(names, images, masks)]


def inpaint(images: Tensor, masks: Tensor, prior, k: int = 2, steps: int = 50, num_samples: int = 4,
            sampling: SamplingConfig | None = None, accelerator: str = "auto", precision="32-true", seed: int = 0,
            **module_kwargs) -> Tensor:
    """Fit VIPaint-K for each image and return samples of shape (B, num_samples, C, H, W) in [-1, 1].

    images: (B, C, H, W) in [-1, 1]; masks: (B, 1, H, W) or (B, H, W), 1 = observed; prior: a
    ``DiffusionPrior`` (e.g. ``load_prior("latent", "CompVis/ldm-celebahq-256")``).
    """
    sampling = sampling or SamplingConfig(num_samples=num_samples)
    module = VIPaintModule(prior, k=k, seed=seed, sampling=sampling, log_images_every_n_steps=0, **module_kwargs)
    data = TensorQueries(images, masks)
    trainer = L.Trainer(max_steps=steps, accelerator=accelerator, devices=1, precision=precision, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        inference_mode=False)
    trainer.fit(module, datamodule=data)
    results = [r for batch in trainer.predict(module, datamodule=data) for r in batch]
    return torch.stack([r["samples"] for r in results])
