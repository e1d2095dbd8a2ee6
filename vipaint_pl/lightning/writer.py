"""Writes predictions: every sample as PNG, a summary grid, and the tensors, one folder per query."""

from __future__ import annotations

from typing_extensions import override

from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ..image_io import save_grid, save_image


def std_image(samples: torch.Tensor) -> torch.Tensor:
    """Per-pixel standard deviation over samples, averaged over channels, scaled to [-1, 1]."""
    std = samples.float().std(0, unbiased=False).mean(0, keepdim=True) if samples.shape[0] > 1 else samples[0, :1] * 0
    return (std / std.max().clamp_min(1e-8)) * 2 - 1


def write_result(result: dict, folder: Path) -> None:
    """[observation | samples | mean | std | truth] grid, sample PNGs and result.pt for one query."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = result["samples"]
    for i, s in enumerate(samples):
        save_image(s, folder / f"sample_{i:02d}.png")
    mean = samples.float().mean(0)
    save_image(mean, folder / "mean.png")
    row = [result["observed"], *samples, mean, std_image(samples)]
    if result.get("truth") is not None:
        row.append(result["truth"])
    save_grid([row], folder / "grid.png")
    torch.save({k: v for k, v in result.items()}, folder / "result.pt")


class PredictionWriter(BasePredictionWriter):
    """Writes each batch's results under the datamodule's ``output_dir`` (or ``output_dir`` given here)."""

    def __init__(self, output_dir: str | None = None):
        super().__init__(write_interval="batch")
        self.output_dir = output_dir

    @override
    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        out = self.output_dir or getattr(trainer.datamodule, "output_dir", None)
        if out is None:  # in-memory use (the Python API): nothing to write
            return
        out = Path(out)
        for result in prediction:
            write_result(result, out / result["name"])
