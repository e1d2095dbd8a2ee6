"""Callbacks of the Lightning shell: posterior images to TensorBoard during the fit."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback
from typing_extensions import override


class PosteriorImageLogger(Callback):
    """Every ``every_n_steps`` fit steps (and at the last), the module's ``posterior_preview`` as an image grid."""

    def __init__(self, every_n_steps: int = 25):
        self.every_n_steps = every_n_steps

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        step = trainer.global_step - 1  # the step just taken
        last = step + 1 == trainer.max_steps
        if trainer.global_rank != 0 or not isinstance(trainer.logger, TensorBoardLogger):
            return
        if not (step % self.every_n_steps == 0 or last):
            return
        import torchvision

        rows = pl_module.posterior_preview(step)
        grid = torchvision.utils.make_grid((rows + 1) / 2, nrow=3)  # observation and two samples per row
        trainer.logger.experiment.add_image("posterior_samples", grid, step)
