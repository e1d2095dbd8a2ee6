"""The ``vipaint`` command: LightningCLI with ``fit``, ``predict``, ``inpaint`` (fit, then predict).

Configs compose by axis with repeated ``--config``: a method, a prior and the data, e.g.
``vipaint inpaint --config configs/method/dps.yaml --config configs/prior/digits-latent.yaml
--config configs/data/quickstart.yaml``.

``vipaint serve [--host 127.0.0.1] [--port 7860]`` starts the web page (``vipaint_pl.serve``).

Exit status: 0 when every query is done, 1 when some query failed (named on stderr; the others are
written), 2 for a user error (bad file, shape, mask, value, config, unknown model), printed as one
``error: ...`` line. ``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import re
import sys

from lightning.pytorch.cli import LightningCLI

from .console import error, quiet_third_party
from .errors import VipaintError
from .lightning.trainer import TRAINER_DEFAULTS, VipaintTrainer, refuse_pickled

SUBCOMMANDS = ("fit", "predict", "inpaint")


class VipaintCLI(LightningCLI):
    @staticmethod
    def subcommands():
        commands = dict(LightningCLI.subcommands())
        commands["inpaint"] = {"model", "datamodule"}
        return {k: v for k, v in commands.items() if k in SUBCOMMANDS}

    def _parse_ckpt_path(self) -> None:
        """LightningCLI reads the checkpoint's hyperparameters first (``weights_only=True``): a pickled
        payload is refused there, with the same message as in the Trainer."""
        subcommand = self.config.get("subcommand")
        with refuse_pickled(self.config[subcommand].get("ckpt_path") if subcommand else None):
            super()._parse_ckpt_path()


# The reasons jsonargparse gives for a rejected key, most specific first, and its lines that are not reasons.
_REASONS = (r"is not accepted", r"has no attribute|No module named", r"does not exist|No such file",
            r"must be|[Ii]nvalid|not a valid|Unable|[Uu]nknown", r"Expected")
_NOT_REASONS = re.compile(r"^(Parser key|Does not validate|Subtypes:|Errors:|Problem with given class_path|Given value|"
                          r"Expected a <class 'NoneType'>)")


def one_line(message: str) -> str:
    """A parser message on one line. jsonargparse nests the reasons of a rejected key over many lines (one
    level per class, one line per type it tried); keep the full key and the most specific reason."""
    lines = [line.strip(" -") for line in str(message).splitlines() if line.strip(" -")]
    keys = re.findall(r'Parser key "([^"]+)"', str(message))
    where = ".".join(k for i, k in enumerate(keys) if i == 0 or k != keys[i - 1])
    if where.startswith("model."):  # the model is given by class_path: its keys live under init_args
        where = "model.init_args." + where[len("model."):]
    reasons = [line for line in lines if not _NOT_REASONS.match(line)] or lines[-1:] or ["invalid arguments"]
    reason = next((line for pattern in _REASONS for line in reasons if re.search(pattern, line)), reasons[0])
    return f"{where}: {reason}" if where else reason


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user error (ours, the parser's, or one of ours wrapped by Lightning or
    jsonargparse), or None for a bug."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, VipaintError):
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, argparse.ArgumentError) or type(exc).__name__ == "ArgumentError":
            return one_line(str(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _cli(args, **kwargs) -> VipaintCLI:
    from .lightning import InpaintingModule, QueryDataModule
    from .lightning.strategy import register

    register()
    quiet_third_party()
    return VipaintCLI(InpaintingModule, QueryDataModule, trainer_class=VipaintTrainer, subclass_mode_model=True,
                      trainer_defaults=TRAINER_DEFAULTS, auto_configure_optimizers=False, args=args, **kwargs)


def build(config: dict):
    """(model, datamodule, trainer) from a config dict, parsed and checked exactly as ``vipaint inpaint
    --config <that dict as YAML>`` does; run them with ``trainer.inpaint(model, datamodule=datamodule)``."""
    cli = _cli(config, run=False, save_config_callback=None, parser_kwargs={"exit_on_error": False})
    return cli.model, cli.datamodule, cli.trainer


def main(args=None) -> int:
    """Run the command; returns the exit status (see the module docstring)."""
    from .lightning.writer import PredictionWriter

    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv[:1] == ["serve"]:
        from .serve import serve_main

        return serve_main(argv[1:])
    no_exit = {"exit_on_error": False}
    try:
        cli = _cli(argv, save_config_kwargs={"overwrite": True},
                   parser_kwargs={**no_exit, **{c: dict(no_exit) for c in SUBCOMMANDS}})
    except Exception as exc:  # noqa: BLE001  user errors become one line; anything else is a bug: re-raise
        message = user_error_message(exc)
        if message is None or debug:
            raise
        error(message)
        return 2
    writers = [c for c in cli.trainer.callbacks if isinstance(c, PredictionWriter)]
    failed = set(getattr(cli.model, "failed_queries", {})) | {n for w in writers for n in w.failed}
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
