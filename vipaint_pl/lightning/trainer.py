"""One Trainer for the CLI and the Python API: ``VipaintTrainer`` and its defaults."""

from __future__ import annotations

from typing_extensions import override

import warnings

from lightning.pytorch import Trainer

from ..errors import ConfigError

TRAINER_DEFAULTS = {
    "inference_mode": False,  # DPS-style guidance needs gradients at predict time
    "default_root_dir": "outputs",
    "log_every_n_steps": 1,
    "enable_model_summary": False,
}


class VipaintTrainer(Trainer):
    """A Trainer with one more entry point: ``inpaint`` fits each query's posterior (if the method has
    one), then samples. Registers the ``per_query_ddp`` strategy and silences two warnings that do not
    apply here (the prior is frozen in eval mode on purpose; predict batches are index lists)."""

    def __init__(self, *args, **kwargs):
        from .strategy import register

        register()
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        warnings.filterwarnings("ignore", message=r".*infer the batch indices.*")
        super().__init__(*args, **kwargs)

    @override
    def fit(self, model, *args, **kwargs):
        if not getattr(model, "needs_fit", True):
            raise ConfigError(f"{type(model).__name__} has nothing to fit: run `vipaint predict` (or `vipaint inpaint`, "
                              "which skips the fit) with the same config")
        return super().fit(model, *args, **kwargs)

    def inpaint(self, model, datamodule=None, ckpt_path: str | None = None):
        if getattr(model, "needs_fit", True):
            self.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return self.predict(model, datamodule=datamodule)


def make_trainer(**overrides) -> VipaintTrainer:
    """The Trainer the CLI builds, with its defaults; keyword arguments override them (the Python API
    turns off logging, checkpoints and the progress bar)."""
    return VipaintTrainer(**{**TRAINER_DEFAULTS, **overrides})
