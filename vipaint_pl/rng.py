"""Per-query random streams: a query's noise depends on (seed, query name, purpose) only.

This is what makes a query's result independent of the other queries in its batch, of its
device, and of the number of devices.
"""

from __future__ import annotations

import hashlib

import torch


def query_seed(seed: int, name: str, purpose: str) -> int:
    digest = hashlib.sha256(f"{seed}/{name}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generators(seed: int, names, purpose: str) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(query_seed(seed, n, purpose)) for n in names]


def randn(gens: list[torch.Generator], per_query: int, shape, like: torch.Tensor) -> torch.Tensor:
    """Standard normals (len(gens) * per_query, *shape), drawn on the CPU from each query's stream."""
    out = [torch.randn(per_query, *shape, generator=g, dtype=torch.float32) for g in gens]
    return torch.cat(out).to(like.device, like.dtype)


def rand(gens: list[torch.Generator], per_query: int, like: torch.Tensor) -> torch.Tensor:
    out = [torch.rand(per_query, generator=g, dtype=torch.float64) for g in gens]
    return torch.cat(out).to(like.device)
