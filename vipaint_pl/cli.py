"""The ``vipaint`` command: LightningCLI with ``fit``, ``predict``, ``inpaint`` (fit, then predict)."""

from __future__ import annotations

import sys

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI


class VipaintTrainer(Trainer):
    """A Trainer with one more entry point: ``inpaint`` fits each query's posterior (if the method has
    one), then samples."""

    def fit(self, model, *args, **kwargs):
        if not getattr(model, "needs_fit", True):
            from .errors import ConfigError

            raise ConfigError(f"{type(model).__name__} has nothing to fit: run `vipaint predict` (or `vipaint inpaint`, "
                              "which skips the fit) with the same config")
        return super().fit(model, *args, **kwargs)

    def inpaint(self, model, datamodule=None, ckpt_path: str | None = None):
        if getattr(model, "needs_fit", True):
            self.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return self.predict(model, datamodule=datamodule)


class VipaintCLI(LightningCLI):
    @staticmethod
    def subcommands():
        commands = dict(LightningCLI.subcommands())
        commands["inpaint"] = {"model", "datamodule"}
        return {k: v for k, v in commands.items() if k in ("fit", "predict", "inpaint")}


TRAINER_DEFAULTS = {
    "max_steps": 50,
    "inference_mode": False,  # DPS needs gradients at predict time
    "default_root_dir": "outputs",
    "log_every_n_steps": 1,
    "enable_model_summary": False,
}


def main(args=None) -> int:
    from .lightning import InpaintingModule, QueryDataModule

    VipaintCLI(InpaintingModule, QueryDataModule, trainer_class=VipaintTrainer, subclass_mode_model=True,
               trainer_defaults=TRAINER_DEFAULTS, save_config_kwargs={"overwrite": True},
               auto_configure_optimizers=False, args=args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
