"""Writes predictions: every sample as PNG, a summary grid, and the tensors, one folder per query.

Every file is written under a temporary name and renamed, and ``result.pt`` comes last: a query whose
``result.pt`` exists is complete, and a killed run leaves no half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override

from ..console import error, note
from ..image_io import save_grid, save_image
from ..metrics import completion_metrics


def relative_spread(samples: torch.Tensor) -> torch.Tensor:
    """(H, W): the per-pixel standard deviation over the samples (N, C, H, W), averaged over channels,
    divided by its largest value (0 everywhere for a single sample)."""
    std = samples.float().std(0, unbiased=False).mean(0) if samples.shape[0] > 1 else samples[0, 0].float() * 0
    return std / std.max().clamp_min(1e-8)


def std_image(samples: torch.Tensor) -> torch.Tensor:
    """Per-pixel standard deviation over samples, averaged over channels, scaled to [-1, 1] (1, H, W)."""
    return relative_spread(samples)[None] * 2 - 1


@contextlib.contextmanager
def atomic_path(path: Path):
    """A temporary path next to ``path`` (same suffix) that becomes ``path`` by one rename on success."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_result(result: dict, folder: Path) -> None:
    """[observation | samples | mean | std | truth] grid, sample PNGs, metrics.json (with a truth), then result.pt,
    for one query."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = result["samples"]
    mean = samples.float().mean(0)
    row = [result["observed"], *samples, mean, std_image(samples)]
    if result.get("truth") is not None:
        row.append(result["truth"])
    images = {f"sample_{i:02d}.png": s for i, s in enumerate(samples)} | {"mean.png": mean}
    for name, image in images.items():
        with atomic_path(folder / name) as tmp:
            save_image(image, tmp)
    with atomic_path(folder / "grid.png") as tmp:
        save_grid([row], tmp)
    if result.get("truth") is not None:  # the input image's own pixels under the mask taken as the truth
        with atomic_path(folder / "metrics.json") as tmp:
            tmp.write_text(json.dumps(completion_metrics(samples, result["truth"], result["mask"]), indent=1) + "\n")
    with atomic_path(folder / "result.pt") as tmp:  # last: its presence marks the query complete
        torch.save(dict(result), tmp)


class PredictionWriter(BasePredictionWriter):
    """Writes each batch's results under the datamodule's ``output_dir`` (or ``output_dir`` given here),
    names every query that failed, and ends with one summary line."""

    def __init__(self, output_dir: str | None = None):
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.written: list[str] = []
        self.failed: dict[str, str] = {}

    def _out(self, trainer) -> Path | None:
        out = self.output_dir or getattr(trainer.datamodule, "output_dir", None)
        return None if out is None else Path(out)

    @override
    def on_predict_start(self, trainer, pl_module) -> None:
        self.written, self.failed = [], {}

    @override
    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        out = self._out(trainer)
        for result in prediction:
            name = result["name"]
            if "failed" in result:
                self.failed[name] = result["failed"]
                error(f"query {name!r}: {result['failed']}; nothing written for it")
            elif out is not None:  # in-memory use (the Python API) writes nothing
                write_result(result, out / name)
                self.written.append(name)

    def summary(self, trainer) -> None:
        """One line: queries written, skipped (complete already), failed, and where the outputs are."""
        out = self._out(trainer)
        if out is None:
            return
        skipped = getattr(trainer.datamodule, "skipped", [])
        rank = f"rank {trainer.global_rank}: " if trainer.world_size > 1 else ""
        n = len(self.written)
        line = f"{rank}{n} {'query' if n == 1 else 'queries'} written, {len(skipped)} skipped"
        if skipped:
            line += " (complete already; --data.overwrite true redoes them)"
        line += f", {len(self.failed)} failed"
        if self.failed:
            line += f" ({', '.join(sorted(self.failed))})"
        note(f"{line}; outputs in {out}", all_ranks=True)
