"""Distances between sample sets (sliced Wasserstein) and between mixtures' mode coverage."""

from __future__ import annotations

import torch
from torch import Tensor


def sliced_wasserstein(a: Tensor, b: Tensor, projections: int = 100, p: int = 2, reduce: str = "mean",
                       seed: int = 0) -> float:
    """Sliced p-Wasserstein between two sample sets (n, d) and (m, d), over random unit directions.

    Each 1-D distance compares quantiles at a common grid of max(n, m) levels. reduce: 'mean' (the
    usual SW_p) or 'max' (max-sliced over the drawn directions).
    """
    a, b = a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    n = max(a.shape[0], b.shape[0])
    levels = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    qa = torch.quantile((a @ dirs), levels, dim=0, interpolation="linear") if a.shape[0] != n else (a @ dirs).sort(0).values
    qb = torch.quantile((b @ dirs), levels, dim=0, interpolation="linear") if b.shape[0] != n else (b @ dirs).sort(0).values
    per_dir = ((qa - qb).abs() ** p).mean(0) ** (1 / p)
    return float(per_dir.mean() if reduce == "mean" else per_dir.max())


def mode_coverage_tv(samples: Tensor, means: Tensor, weights: Tensor) -> float:
    """Total variation between the share of samples nearest each component mean and the given weights."""
    x = samples.reshape(samples.shape[0], -1).double()
    nearest = torch.cdist(x, means.double()).argmin(1)
    share = torch.bincount(nearest, minlength=means.shape[0]).double() / x.shape[0]
    return float(0.5 * (share - weights.double()).abs().sum())
