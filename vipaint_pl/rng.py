"""Per-query random streams: a query's noise depends on (seed, query name, method, purpose) only.

This is what makes a query's result independent of the other queries in its batch, of its device, of
the number of devices, and of the entry point (CLI, Python API or benchmark script).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from .schedule import to_device


def query_seed(seed: int, name: str, purpose: str) -> int:
    digest = hashlib.sha256(f"{seed}/{name}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class QueryNoise:
    """The random streams of a batch of queries, each drawing ``per_query`` samples.

    Draws are made on the CPU from each query's own generator, then concatenated query by query: a
    tensor of ``batch = num_queries * per_query`` rows holds query 0's samples first, as
    ``Tensor.repeat_interleave(per_query, 0)`` lays them out.

    >>> a = QueryNoise(0, ["x", "y"], "dps", per_query=2)
    >>> b = QueryNoise(0, ["y"], "dps", per_query=2)
    >>> torch.equal(a.randn((3,), torch.zeros(1))[2:], b.randn((3,), torch.zeros(1)))
    True
    """

    def __init__(self, seed: int, names: Sequence[str], method: str, per_query: int = 1, purpose: str = ""):
        self.seed, self.names, self.method = int(seed), [str(n) for n in names], method
        self.per_query, self.purpose = int(per_query), purpose
        key = f"{method}/{purpose}" if purpose else method
        self.generators = [torch.Generator().manual_seed(query_seed(self.seed, n, key)) for n in self.names]

    @classmethod
    def from_generators(cls, generators: Sequence[torch.Generator], per_query: int = 1) -> "QueryNoise":
        """Streams from given generators, one per query (e.g. to replay another library's noise)."""
        noise = cls(0, [str(i) for i in range(len(generators))], "external", per_query)
        noise.generators = list(generators)
        return noise

    @property
    def num_queries(self) -> int:
        return len(self.names)

    @property
    def batch(self) -> int:
        """Rows of every draw: queries x samples per query."""
        return self.num_queries * self.per_query

    def stream(self, purpose: str, per_query: int | None = None) -> "QueryNoise":
        """A fresh, independent stream of the same queries for one purpose (e.g. ``"init"``, ``"fit/3"``)."""
        full = f"{self.purpose}/{purpose}" if self.purpose else purpose
        return QueryNoise(self.seed, self.names, self.method, self.per_query if per_query is None else per_query, full)

    def randn(self, shape: Sequence[int], like: Tensor) -> Tensor:
        """Standard normals of shape (batch, *shape) on ``like``'s device and dtype."""
        out = [torch.randn(self.per_query, *shape, generator=g, dtype=torch.float32) for g in self.generators]
        return to_device((out[0] if len(out) == 1 else torch.cat(out)).to(like.dtype), like.device)  # no copy for one

    def like(self, tensor: Tensor) -> Tensor:
        """Standard normals shaped like ``tensor`` (whose first dimension is ``batch``)."""
        return self.randn(tensor.shape[1:], tensor)

    def rand(self, like: Tensor, draws: int | None = None) -> Tensor:
        """Uniforms on [0, 1), one per row: shape (batch,), float64; with ``draws`` (draws, batch): the same numbers
        as ``draws`` calls without it, stacked, from one generator call per query."""
        shape = (self.per_query,) if draws is None else (draws, self.per_query)
        out = [torch.rand(shape, generator=g, dtype=torch.float64) for g in self.generators]
        return to_device(out[0] if len(out) == 1 else torch.cat(out, -1), like.device)

    def repeat(self, tensor: Tensor) -> Tensor:
        """A per-query tensor (num_queries, ...) repeated to one row per sample (batch, ...)."""
        return tensor.repeat_interleave(self.per_query, 0)
