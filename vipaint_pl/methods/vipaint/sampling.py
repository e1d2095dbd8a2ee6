"""VIPaint's phase 3 (Sec. 4.3): ancestral sampling through the fitted hierarchy (with the Langevin corrector at
its levels), then guided steps from Ts to the data; and ``vipaint_sample``, the three phases in one call."""

from __future__ import annotations

import torch
from torch import Tensor

from .. import fidelity
from ..guidance import guided_reverse_diffusion, langevin_corrector, tweedie_guided_reverse_diffusion
from .bound import (component_bounds, component_draws, likelihood_std, log_prior_path, log_q_path,
                    optimal_mixture_weights, reconstruction_loss)
from .config import BoundConfig, PosteriorSamplingConfig, VIPaintConfig
from .fit import fit_posterior
from .posterior import HierarchicalPosterior


def sample_rows(post: HierarchicalPosterior, idx: Tensor, noise, logits: Tensor | None = None) -> Tensor:
    """The parameter row of each of the ``noise.per_query`` samples of the queries ``idx``: a component drawn
    from each query's mixture weights (``logits`` (B, M), default the fitted ones; inverse CDF of one uniform
    per sample)."""
    if post.components == 1:
        return noise.repeat(idx)
    logits = post.logits[idx] if logits is None else logits
    cdf = torch.softmax(logits.detach().double(), dim=1).cumsum(1)
    m = (noise.repeat(cdf) < noise.rand(cdf)[:, None]).sum(1).clamp_max(post.components - 1)
    return noise.repeat(idx) * post.components + m


def sample_posterior(prior, post: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                     cfg: PosteriorSamplingConfig, bound: BoundConfig, callback=None) -> Tensor:
    """Phase 3: clean codes (B * per_query, ...) for the queries ``idx`` (with their ``operator`` and ``y``).
    ``callback`` numbers the corrector's steps first (phase "corrector", level by level from the top), then the
    chain's."""
    z = sample_ts(prior, post, operator, y, idx, noise, cfg, bound, callback)
    done = cfg.corrector_steps * corrected_levels(post.k, cfg)
    below = None if callback is None else (lambda i, info: callback(done + i, info))
    return sample_below(prior, z, post.times[-1], operator, y, noise, cfg, bound, below)


def sample_ts(prior, post: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
              cfg: PosteriorSamplingConfig, bound: BoundConfig, callback=None) -> Tensor:
    """z_Ts ~ q (B * per_query, ...): a component per sample by ``cfg.component_weights``, then ancestral
    sampling through its hierarchy (``cfg.lower_draws``), then ``cfg.corrector_steps`` Langevin steps at Ts
    and, with ``cfg.corrector_levels`` "all", at the levels above it (each level's steps reported to ``callback``,
    numbered on from the top level's)."""
    corrector = None if cfg.corrector_steps == 0 else _corrector(prior, post, operator, y, noise, cfg, bound,
                                                                  callback)
    z = _sample_hierarchy(prior, post, operator, y, idx, noise, cfg, bound,
                          corrector if cfg.corrector_levels == "all" else None)
    return z if corrector is None else corrector(post.k - 1, z)


def corrected_levels(k: int, cfg: PosteriorSamplingConfig) -> int:
    """How many of a K-level hierarchy's levels the corrector runs at (0 without corrector steps)."""
    return 0 if cfg.corrector_steps == 0 else (k if cfg.corrector_levels == "all" else 1)


def _corrector(prior, post: HierarchicalPosterior, operator, y: Tensor, noise, cfg: PosteriorSamplingConfig,
               bound: BoundConfig, callback=None):
    """``correct(k, z)``: ``cfg.corrector_steps`` Langevin steps at the hierarchy's k-th time, each level with its
    own noise stream ("corrector" at Ts, as before levels were corrected, "corrector/<k>" above), reported to
    ``callback`` after the steps of the levels corrected before it."""
    operator, y, sigma_y = operator.repeat_interleave(noise.per_query), noise.repeat(y), likelihood_std(operator, bound)
    first = post.k - corrected_levels(post.k, cfg)  # the top corrected level: 0 ("all") or K - 1 ("last")

    def correct(k: int, z: Tensor) -> Tensor:
        stream = noise.stream("corrector" if k == post.k - 1 else f"corrector/{k}")
        done = (k - first) * cfg.corrector_steps
        report_level = None if callback is None else (lambda i, info: callback(done + i, info))
        kinetic = cfg.corrector_momentum_levels == "all" or k == post.k - 1
        return langevin_corrector(prior, z, post.times[k], operator, y, sigma_y, stream, cfg.corrector_steps,
                                  cfg.corrector_scale, report_level, cfg.corrector_variance,
                                  cfg.corrector_momentum if kinetic else 0.0)
    return correct


def _sample_hierarchy(prior, post: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                      cfg: PosteriorSamplingConfig, bound: BoundConfig, correct=None) -> Tensor:
    """``sample_ts`` without the corrector at Ts (``correct(k, z)``: the corrector at the levels above it; the config
    rules out its combination with lower draws)."""
    logits = None
    if post.components > 1 and cfg.component_weights == "bound":
        logits = -component_bounds(prior, post, operator, y, idx, noise, bound, cfg.score_samples)
    elif post.components > 1 and cfg.component_weights == "optimal":
        logits = optimal_mixture_weights(*component_draws(prior, post, operator, y, idx, noise, bound,
                                                           cfg.score_samples))
    with torch.no_grad():
        rows = sample_rows(post, idx, noise, logits)
        z_top, z, _, path = post.sample(prior, rows, noise, with_path=True, correct=correct)
        if cfg.lower_draws == 1 or post.k == 1:
            return z
        # conditional importance resampling (PosteriorSamplingConfig.lower_draws): J lower paths per z_Te, each
        # weighted by p(y | z_Ts) p(path | z_Te) / q(path | z_Te); the weights are normalized among one z_Te's J
        # paths only, so q(z_Te) is kept as fitted and y is not counted twice
        operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
        sigma_ts = float(prior.schedule.sigma(post.times[-1]))
        candidates, log_w = [], []
        for j in range(cfg.lower_draws):
            if j > 0:
                z, path = post.sample(prior, rows, noise.stream(f"lower/{j}"), with_path=True, top=z_top)[1::2]
            x = prior.decode(prior.predict_x0(z, post.times[-1]))
            nll = reconstruction_loss(operator, x, y, bound.replace(perceptual="none"), None, sigma_ts)
            log_w.append(log_prior_path(path, nll) - log_q_path(path, post, rows) - nll)
            candidates.append(z)
        pick = _pick(torch.stack(log_w, 1), noise.stream("lower/pick"))
        return torch.stack(candidates, 1)[torch.arange(len(pick), device=pick.device), pick]


def _pick(log_w: Tensor, noise) -> Tensor:
    """One column per row of ``log_w`` (B, J), drawn with probability softmax(log_w) (inverse CDF of one uniform
    per row of ``noise``)."""
    cdf = torch.softmax(log_w.double(), dim=1).cumsum(1)
    return (cdf < noise.rand(cdf)[:, None]).sum(1).clamp_max(log_w.shape[1] - 1)


def sample_below(prior, z: Tensor, ts: int, operator, y: Tensor, noise, cfg: PosteriorSamplingConfig,
                 bound: BoundConfig, callback=None) -> Tensor:
    """Phase 3's chain from z_Ts (``noise.per_query`` rows per query of ``y``) to clean codes, guided as
    ``cfg.guidance`` says. On its own, it samples below Ts from any z_Ts (``scripts/diagnose_vipaint_gmm.py``
    feeds it exact posterior draws)."""
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    steps = cfg.steps if cfg.steps is not None else -(-ts // cfg.step_spacing)
    if cfg.guidance == "tweedie":
        return tweedie_guided_reverse_diffusion(prior, z, ts, noise, steps, cfg.eta, operator, y,
                                                likelihood_std(operator, bound), callback, variance=cfg.variance,
                                                x_var=cfg.guidance_variance)
    loss = lambda x0: fidelity.residual_norm(operator, prior.decode(x0), y)  # noqa: E731  DPS on the same y
    return guided_reverse_diffusion(prior, z, ts, noise, steps, cfg.dps_step_size, cfg.eta, loss, callback,
                                    cfg.clip_x0)


def vipaint_sample(prior, operator, y: Tensor, noise, cfg: VIPaintConfig, callback=None) -> Tensor:
    """Fit each query's posterior, then sample it: clean codes (B * per_query, ...).

    ``callback(step, {"terms": ...})`` sees every fit step; the sampling steps follow with their own numbers.
    """
    post = fit_posterior(prior, operator, y, noise, cfg, callback)  # 1. and 2.
    shifted = None if callback is None else (lambda i, info: callback(cfg.fit_steps + i, info))
    idx = torch.arange(y.shape[0], device=y.device)
    return sample_posterior(prior, post, operator, y, idx, noise.stream("sample"), cfg.sampling, cfg.bound,  # 3.
                            shifted)
