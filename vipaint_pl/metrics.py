"""Distances between sample sets (sliced Wasserstein) and between mixtures' mode coverage; a query's completions
against its truth (PSNR, and the samples' error against their spread)."""

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


def calibration_terms(s01: Tensor, t01: Tensor, missing: Tensor) -> dict:
    """Spread against skill over the missing pixels, the ensemble forecaster's check of a sampler's width (Fortin et
    al., Journal of Hydrometeorology 2014): ``squared_error`` = mean_i |x_i - t|^2 and ``squared_spread`` =
    mean_{i != j} |x_i - x_j|^2 (each per missing pixel). Samples ``s01`` (N, C, H, W), truth ``t01`` (1 or N, C, H, W),
    ``missing`` (H, W) or (1, H, W), 1 = missing. If the samples x_i and the truth t are independent draws of one
    posterior, both have expectation 2 tr Cov, so the ratio of their sums over queries is 1 for a calibrated sampler;
    above 1 its samples are too narrow (or off-centre) for the errors they make, below 1 too wide."""
    keep = missing.bool().reshape(missing.shape[-2:]).expand_as(s01[0])
    x, t = s01[:, keep].double(), t01[0][keep].double()
    n = x.shape[0]
    # sum_{i, j} |x_i - x_j|^2 = 2 n sum_i |x_i - mean|^2: no (N, N, pixels) tensor for large images
    spread = 2 * n * (x - x.mean(0)).square().mean(1).sum() / (n * (n - 1))
    return {"squared_error": float((x - t).square().mean()), "squared_spread": float(spread)}


def completion_metrics(samples: Tensor, truth: Tensor, mask: Tensor) -> dict:
    """One query's completions against its truth, images in [-1, 1] measured in [0, 1] units: ``samples`` (N, C, H, W),
    ``truth`` (C, H, W), ``mask`` (H, W) or (1, H, W) with 1 = observed. Over the missing pixels (every pixel where
    none is missing, as for super-resolution and deblurring): ``psnr`` (the mean over samples of each one's PSNR),
    the calibration terms (``calibration_terms``) and ``error_over_spread``, their ratio (N >= 2; 1: samples as wide
    as the errors they make). ``pixels``: how many pixels were measured."""
    s01, t01 = (samples.float().clamp(-1, 1) + 1) / 2, ((truth.float().clamp(-1, 1) + 1) / 2)[None]
    missing = 1 - mask.reshape(mask.shape[-2:]).float()
    if missing.sum() == 0:
        missing = torch.ones_like(missing)
    keep = missing.bool().expand_as(s01[0])
    mse = (s01[:, keep] - t01[0][keep]).double().square().mean(1)
    out = {"pixels": int(missing.sum()), "psnr": float((-10 * torch.log10(mse.clamp_min(1e-12))).mean())}
    if samples.shape[0] >= 2:
        terms = calibration_terms(s01, t01, missing)
        ratio = terms["squared_error"] / terms["squared_spread"] if terms["squared_spread"] > 0 else float("inf")
        out |= terms | {"error_over_spread": ratio}
    return out
