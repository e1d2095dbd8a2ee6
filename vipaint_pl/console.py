"""What the library says on the terminal: one-line warnings and notes on stderr, and a quiet third party.

Messages go to stderr as ``warning: ...`` / ``note: ...`` lines (rank 0 only under several processes),
never through Python's ``warnings`` (which print the source line too). ``quiet_third_party`` silences
the lines other packages print on every run that say nothing about the user's run (Lightning's tips and
hardware banner, repeated deprecation notices of its internals); the CLI and the Python API call it, a
plain ``import vipaint_pl`` does not.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings


def _rank_zero() -> bool:
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def warn(message: str) -> None:
    """``warning: message`` on stderr."""
    if _rank_zero():
        print(f"warning: {message}", file=sys.stderr, flush=True)


def note(message: str, all_ranks: bool = False) -> None:
    """``note: message`` on stderr (a fact the user should know about the run, e.g. skipped queries)."""
    if all_ranks or _rank_zero():
        print(f"note: {message}", file=sys.stderr, flush=True)


def error(message: str) -> None:
    """``error: message`` on stderr, whatever the rank."""
    print(f"error: {message}", file=sys.stderr, flush=True)


_IGNORED_WARNINGS = (
    r".*module\(s\) in eval mode.*",  # the prior is frozen in eval mode on purpose
    r".*infer the batch indices.*",  # predict batches are index lists
    r".*`IterableDataset` has `__len__` defined.*",  # the predict batches of one rank, no workers
    r".*isinstance\(treespec, LeafSpec\).*",  # a deprecation inside Lightning itself
    r".*`max_epochs` was not set.*",
    r".*does not have many workers.*",  # the queries are in memory; workers would not help
    r".*No seed found.*",
    r".*LightningCLI's args parameter is intended.*",  # the vipaint command passes its own argv (--debug removed)
    r".*Total length of `DataLoader` across ranks is zero.*",  # every query complete already: said in the summary
)


def quiet_third_party() -> None:
    """Silence what Lightning prints on every run: tips, the hardware banner, the seed line, and warnings
    that do not apply to per-query posteriors. Errors and our own lines are untouched."""
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.fabric.utilities.seed", "lightning.pytorch.accelerators.cuda",
                 "lightning.pytorch.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
    except ImportError:  # diffusers is a dependency, but the console must not need it
        pass
