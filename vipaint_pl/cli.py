"""The ``vipaint`` command: LightningCLI with ``fit``, ``predict``, ``inpaint`` (fit, then predict).

Configs compose by axis with repeated ``--config``: a method, a prior and the data, e.g.
``vipaint inpaint --config configs/method/dps.yaml --config configs/prior/digits-latent.yaml
--config configs/data/quickstart.yaml``.
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from .lightning.trainer import TRAINER_DEFAULTS, VipaintTrainer


class VipaintCLI(LightningCLI):
    @staticmethod
    def subcommands():
        commands = dict(LightningCLI.subcommands())
        commands["inpaint"] = {"model", "datamodule"}
        return {k: v for k, v in commands.items() if k in ("fit", "predict", "inpaint")}


def main(args=None) -> int:
    from .lightning import InpaintingModule, QueryDataModule
    from .lightning.strategy import register

    register()
    VipaintCLI(InpaintingModule, QueryDataModule, trainer_class=VipaintTrainer, subclass_mode_model=True,
               trainer_defaults=TRAINER_DEFAULTS, save_config_kwargs={"overwrite": True},
               auto_configure_optimizers=False, args=args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
