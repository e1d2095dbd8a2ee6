"""Multi-device fitting of per-query posteriors: DDP processes that share nothing but the launch.

Every rank owns a fixed shard of the queries (``QueryDataModule.local_indices``) and its own posterior
parameters, whose shapes differ between ranks. Plain DDP would average their gradients and broadcast
rank 0's parameters, which is wrong here, so this strategy:

- never wraps the module in ``DistributedDataParallel`` and never synchronizes module states;
- writes each rank's checkpoint (posterior + optimizer state) to its own file: rank 0 to the path
  Lightning chooses, rank r > 0 to ``<path>.rank<r>``; loading reads the file of one's own rank and
  refuses a checkpoint written with a different number of ranks.

Use it as ``Trainer(strategy="per_query_ddp", devices=N)`` or ``--trainer.strategy per_query_ddp``.
"""

from __future__ import annotations

from typing_extensions import override

from pathlib import Path

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry

from ..errors import ConfigError


def rank_checkpoint_path(path, rank: int) -> Path:
    """Where rank ``rank`` keeps its part of the checkpoint ``path`` (symlinks such as last.ckpt resolved)."""
    path = Path(path)
    if rank == 0:
        return path
    return Path(str(path.resolve()) + f".rank{rank}")


class PerQueryDDPStrategy(DDPStrategy):
    """DDP launch and process group, with independent per-rank parameters and per-rank checkpoint files."""

    strategy_name = "per_query_ddp"

    @override
    def setup(self, trainer) -> None:
        names = [n for n, _ in self.model.named_parameters()] + [n for n, _ in self.model.named_buffers()]
        self.model._ddp_params_and_buffers_to_ignore = names  # nothing is broadcast from rank 0
        super().setup(trainer)

    @override
    def configure_ddp(self) -> None:
        """No DistributedDataParallel wrapper: gradients of one rank's queries stay on that rank."""

    @override
    def save_checkpoint(self, checkpoint: dict, filepath, storage_options=None) -> None:
        checkpoint["per_query_world_size"] = self.world_size
        target = rank_checkpoint_path(filepath, self.global_rank)
        self.checkpoint_io.save_checkpoint(checkpoint, target, storage_options=storage_options)

    @override
    def remove_checkpoint(self, filepath) -> None:
        target = rank_checkpoint_path(filepath, self.global_rank)
        if target.exists():
            self.checkpoint_io.remove_checkpoint(target)

    @override
    def load_checkpoint(self, checkpoint_path, weights_only=None) -> dict:
        target = rank_checkpoint_path(checkpoint_path, self.global_rank)
        if not target.is_file():
            raise ConfigError(f"rank {self.global_rank} has no checkpoint file {str(target)!r}; "
                              f"was {str(checkpoint_path)!r} written with {self.world_size} devices?")
        checkpoint = self.checkpoint_io.load_checkpoint(target, weights_only=weights_only)
        saved = checkpoint.get("per_query_world_size", 1)
        if saved != self.world_size:
            raise ConfigError(f"checkpoint {str(checkpoint_path)!r} was written by {saved} ranks, but {self.world_size} "
                              "are running: queries are sharded by rank, so use the same number of devices")
        return checkpoint


def register() -> None:
    if PerQueryDDPStrategy.strategy_name not in StrategyRegistry:
        StrategyRegistry.register(PerQueryDDPStrategy.strategy_name, PerQueryDDPStrategy,
                                  description="DDP launch with per-rank posteriors (no gradient averaging)",
                                  start_method="popen")

