"""A progress bar that counts what a run is made of: optimization steps during fit, queries during predict."""

from __future__ import annotations

from lightning.pytorch.callbacks import TQDMProgressBar
from typing_extensions import override


class StepProgressBar(TQDMProgressBar):
    """``fit: steps 40/100`` (not Lightning's endless epochs) and ``predict: queries 3/8``."""

    @property
    def train_description(self) -> str:
        return "fit: steps"

    @property
    def predict_description(self) -> str:
        return "predict: queries"

    @override
    def on_train_epoch_start(self, trainer, *_) -> None:
        if self._leave or self._train_progress_bar is None:
            self.train_progress_bar = self.init_train_tqdm()
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps if trainer.max_steps > 0 else None)
        bar.n = bar.initial = trainer.global_step  # a resumed fit starts where it stopped
        bar.set_description(self.train_description)

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._train_progress_bar is not None and not self.train_progress_bar.disable:
            self.train_progress_bar.n = trainer.global_step
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar

    @override
    def on_predict_start(self, trainer, pl_module) -> None:
        super().on_predict_start(trainer, pl_module)
        self._queries_done = 0

    @override
    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if batch_idx == 0 and self._predict_progress_bar is not None:
            dataset = getattr(trainer.predict_dataloaders, "dataset", None)
            self.predict_progress_bar.total = getattr(dataset, "num_queries", None)
            self.predict_progress_bar.set_description(self.predict_description)

    @override
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._queries_done += len(batch)
        if self._predict_progress_bar is not None and not self.predict_progress_bar.disable:
            self.predict_progress_bar.n = self._queries_done
            self.predict_progress_bar.refresh()

    @override
    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
