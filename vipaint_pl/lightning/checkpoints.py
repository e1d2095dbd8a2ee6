"""Fit checkpoints that survive a kill: ``<default_root_dir>/checkpoints/last.ckpt`` every N steps.

The file is written under a temporary name and renamed, so a process killed while writing leaves the
previous checkpoint intact. Under ``per_query_ddp`` every rank renames its own part
(``last.ckpt.rank<r>``). ``--ckpt_path last`` resumes from it (or starts from step 0 if there is none yet).
"""

from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from ..console import note
from ..errors import ConfigError
from .strategy import rank_checkpoint_path

LAST = "last.ckpt"


class StepCheckpoint(Callback):
    """Saves the fit state (posterior, optimizer, scheduler, step) every ``every_n_steps`` steps and at the last."""

    def __init__(self, dirpath: str | Path, every_n_steps: int = 25):
        if every_n_steps < 1:
            raise ConfigError(f"checkpoint_every_n_steps must be >= 1, got {every_n_steps}")
        self.dirpath, self.every_n_steps = Path(dirpath), every_n_steps

    @property
    def last_path(self) -> Path:
        return self.dirpath / LAST

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0 or (trainer.max_steps > 0 and step >= trainer.max_steps):
            self.save(trainer)

    def save(self, trainer) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / f".{LAST}.tmp"
        trainer.save_checkpoint(tmp, weights_only=False)  # the full state: optimizer, step
        rank = trainer.global_rank
        written = rank_checkpoint_path(tmp, rank)
        if written.is_file():  # strategies that save on rank 0 only write nothing on the others
            os.replace(written, rank_checkpoint_path(self.last_path, rank))


def resolve_ckpt_path(trainer, ckpt_path, stage: str):
    """``"last"``: the StepCheckpoint's file if there is one; otherwise fit starts from step 0 (with a note)
    and predict refuses. Any other value is returned as is."""
    if ckpt_path != "last":
        return ckpt_path
    saver = next((c for c in trainer.callbacks if isinstance(c, StepCheckpoint)), None)
    if saver is not None and saver.last_path.is_file():
        note(f"resuming from {saver.last_path}")
        return str(saver.last_path)
    where = saver.last_path if saver is not None else "(checkpointing is off)"
    if stage == "fit":
        note(f"no checkpoint at {where} yet: fitting from step 0")
        return None
    raise ConfigError(f"--ckpt_path last: no checkpoint at {where}; fit first or give the checkpoint's path")
