"""One Trainer for the CLI and the Python API: ``VipaintTrainer`` and its defaults."""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from typing_extensions import override

from ..console import quiet_third_party
from ..errors import CheckpointError, ConfigError
from .checkpoints import StepCheckpoint, resolve_ckpt_path

TRAINER_DEFAULTS = {
    "inference_mode": False,  # DPS-style guidance needs gradients at predict time
    "default_root_dir": "outputs",
    "log_every_n_steps": 1,
    "enable_model_summary": False,
    "max_epochs": -1,  # a fit is counted in optimization steps (vipaint.fit_steps), never in epochs
}

# Precisions that cast the module (and hence the per-query posterior) to 16 bits: the bound's Gaussian
# terms and the optimizer then lose their accuracy. The mixed precisions run the networks in 16 bits.
_TRUE_HALF = ("16-true", "bf16-true", "16", "bf16", 16)


class VipaintTrainer(Trainer):
    """A Trainer with one more entry point, ``inpaint`` (fit each query's posterior if the method has one,
    then sample), crash-safe fit checkpoints, a progress bar in steps and queries, and the
    ``per_query_ddp`` strategy registered.

    Args:
        checkpoint_every_n_steps: write ``<default_root_dir>/checkpoints/last.ckpt`` every N fit steps
            and at the last (``--ckpt_path last`` resumes from it). Off with ``enable_checkpointing=False``
            or when a ``ModelCheckpoint`` of your own is among the callbacks.
    """

    def __init__(self, *args, checkpoint_every_n_steps: int = 25, **kwargs):
        from .progress import StepProgressBar
        from .strategy import register

        register()
        quiet_third_party()
        if kwargs.get("precision") in _TRUE_HALF:
            raise ConfigError(f"precision={kwargs['precision']!r} casts the posterior's parameters to 16 bits; "
                              "use 'bf16-mixed' (or '16-mixed'), which runs the networks in 16 bits and keeps "
                              "the posterior and the noise schedule in full precision")
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if kwargs.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in callbacks):
            callbacks.append(StepProgressBar())
        if kwargs.get("enable_checkpointing", True) and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            root = Path(kwargs.get("default_root_dir") or TRAINER_DEFAULTS["default_root_dir"])
            callbacks.append(StepCheckpoint(root / "checkpoints", checkpoint_every_n_steps))
            kwargs["enable_checkpointing"] = False  # no second, Lightning-made checkpoint
        super().__init__(*args, callbacks=callbacks, **kwargs)

    @override
    def fit(self, model, *args, ckpt_path=None, **kwargs):
        if not getattr(model, "needs_fit", True):
            raise ConfigError(f"{type(model).__name__} has nothing to fit: run `vipaint predict` (or `vipaint inpaint`, "
                              "which skips the fit) with the same config")
        ckpt_path = resolve_ckpt_path(self, ckpt_path, "fit")
        with refuse_pickled(ckpt_path):
            return super().fit(model, *args, ckpt_path=ckpt_path, weights_only=True, **kwargs)

    @override
    def predict(self, model=None, *args, ckpt_path=None, **kwargs):
        from .writer import PredictionWriter

        ckpt_path = resolve_ckpt_path(self, ckpt_path, "predict")
        with refuse_pickled(ckpt_path):
            predictions = super().predict(model, *args, ckpt_path=ckpt_path, weights_only=True, **kwargs)
        for writer in (c for c in self.callbacks if isinstance(c, PredictionWriter)):
            writer.summary(self)
        return predictions

    def inpaint(self, model, datamodule=None, ckpt_path: str | None = None):
        if getattr(model, "needs_fit", True) and not _all_complete(datamodule):
            self.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return self.predict(model, datamodule=datamodule)


def _all_complete(datamodule) -> bool:
    """Whether every query's outputs are written already (then ``inpaint`` has nothing to fit)."""
    if datamodule is None or getattr(datamodule, "overwrite", True) or not hasattr(datamodule, "is_complete"):
        return False
    datamodule.setup("predict")
    return bool(datamodule.queries) and all(datamodule.is_complete(q.name) for q in datamodule.queries)


@contextlib.contextmanager
def refuse_pickled(ckpt_path):
    """Checkpoints are read with ``weights_only=True``: tensors and plain containers, never arbitrary
    pickled objects (which run code when loaded). Such a file is refused with a message naming it."""
    try:
        yield
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"checkpoint {str(ckpt_path)!r} holds pickled Python objects, not only tensors and "
                              "plain values; it is refused (it could run code when loaded). Use a checkpoint "
                              f"written by vipaint fit. ({str(exc).splitlines()[0]})") from exc


def make_trainer(**overrides) -> VipaintTrainer:
    """The Trainer the CLI builds, with its defaults; keyword arguments override them (the Python API
    turns off logging, checkpoints and the progress bar)."""
    return VipaintTrainer(**{**TRAINER_DEFAULTS, **overrides})
