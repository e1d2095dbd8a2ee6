"""VIPaint's bound (Eq. 13): the reconstruction term, the hierarchy's KLs and the diffusion term per query, for one
hierarchy or a mixture of them, and each mixture component's own bound and optimal weight."""

from __future__ import annotations

import torch
from torch import Tensor

from ...errors import ConfigError
from ...schedule import gaussian_entropy
from .. import fidelity
from ..guidance import jacobian_variance
from .config import PAPER_BETA, PAPER_L1_SCALE, BoundConfig
from .diffusion_term import diffusion_loss, score_gradient
from .posterior import HierarchicalPosterior, SharedAcrossComponents


def likelihood_scale(operator, cfg: BoundConfig) -> float:
    """The likelihood's scale: as configured, or the operator's known sigma_y when the config leaves it unset."""
    scale = cfg.likelihood_scale if cfg.likelihood_scale is not None else float(getattr(operator, "sigma_y", 0.0))
    if scale <= 0:
        raise ConfigError("bound.likelihood_scale is None but the operator has no sigma_y > 0; give the scale")
    return scale


def likelihood_std(operator, cfg: BoundConfig) -> float:
    """Standard deviation of the likelihood's noise: sigma_y (Gaussian) or sqrt(2) b (Laplace with scale b)."""
    return likelihood_scale(operator, cfg) * (2**0.5 if cfg.likelihood == "laplace" else 1.0)


def reconstruction_loss(operator, x: Tensor, y: Tensor, cfg: BoundConfig, perceptual=None,
                        sigma_ts: float = 0.0, x_var: Tensor | None = None) -> Tensor:
    """-log p(y | x) per sample: the configured likelihood of A(x) - y, plus an optional perceptual term; with
    ``cfg.reconstruction == "tweedie"``, a Gaussian of covariance std^2 I + r^2 A A^T instead, r^2 = ``x_var`` (per
    sample) or sigma_ts^2 (see BoundConfig; its log-determinant, constant in x, left out)."""
    if cfg.weighting == "paper":
        return fidelity.laplace_nll(operator, x, y, PAPER_L1_SCALE)
    if cfg.reconstruction == "tweedie":
        r2 = sigma_ts**2 if x_var is None else x_var
        nll = fidelity.tweedie_nll(operator, x, y, r2, likelihood_std(operator, cfg))
    else:
        nll = fidelity.LIKELIHOODS[cfg.likelihood](operator, x, y, likelihood_scale(operator, cfg))
    if perceptual is not None and cfg.perceptual_weight > 0:
        nll = nll + cfg.perceptual_weight * fidelity.perceptual(operator, x, y, perceptual)
    return nll


def _sample_terms(prior, posterior: HierarchicalPosterior, operator, y: Tensor, rows: Tensor, noise, S: int,
                  cfg: BoundConfig, perceptual, with_kl: bool):
    """S samples from each component row of ``rows`` (B, M), query-major, then component, then sample (``noise``
    draws M * S per query): z_Te, and per sample the reconstruction term, the diffusion term (its time
    stratified over the S samples), the lower levels' KL (``with_kl``) and the path."""
    M = rows.shape[1]
    operator, y = operator.repeat_interleave(noise.per_query), noise.repeat(y)
    z_top, z_s, kl, path = posterior.sample(prior, rows.repeat_interleave(S, 1).flatten(), noise, with_kl=with_kl,
                                            with_path=True)
    x0 = prior.predict_x0(z_s, posterior.times[-1])
    x = prior.decode(x0)
    x_var = None
    if cfg.reconstruction == "tweedie" and cfg.tweedie_variance == "jacobian":
        x_var = tweedie_x_variance(prior, operator, z_s, x0, x, posterior.times[-1], noise)
    recon = reconstruction_loss(operator, x, y, cfg, perceptual, float(prior.schedule.sigma(posterior.times[-1])),
                                x_var)
    # stratified t, drawn and kept on the CPU: the times index the schedule there (no device round trip)
    u = (noise.rand(torch.empty(0)).view(-1, M, S) + torch.arange(S, dtype=torch.float64)) / S
    by_score = cfg.prior_gradient == "score"  # the VLB's value only; its gradient from the score at Te
    with torch.set_grad_enabled(torch.is_grad_enabled() and not by_score):
        diff = diffusion_loss(prior, z_top, posterior.times[0], u.flatten(), noise.like(z_top), cfg.time_sampling,
                              cfg.terminal)
    if by_score:
        diff = diff + score_gradient(prior, z_top, posterior.times[0])
    return z_top, recon, diff, kl, path


def tweedie_x_variance(prior, operator, z: Tensor, x0: Tensor, x: Tensor, t: int, noise) -> Tensor:
    """Var[x0 | z_t] per sample (B,) from the denoiser's Jacobian (``guidance.jacobian_variance``, its probe drawn
    from ``noise``), detached: the bound's "tweedie" likelihood width held fixed in the gradient. Where z has no
    graph (no gradients), x0 is computed again from a z that has one."""
    alpha, sigma = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
    with torch.enable_grad():
        if not z.requires_grad:
            z = z.detach().requires_grad_(True)
            x0 = prior.predict_x0(z, t)
            x = prior.decode(x0)
        return jacobian_variance(operator, z, x0, x, alpha, sigma, noise)


def _log_normal(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, std^2 I) per sample (summed over the event)."""
    return -(0.5 * ((x - mean) / std) ** 2 + torch.log(std) + 0.9189385332).flatten(1).sum(1)


def log_prior_path(path, like: Tensor) -> Tensor:
    """log p(lower levels | z_Te) of each sample along its path (the prior's transitions)."""
    if not path:
        return torch.zeros_like(like)
    return sum(_log_normal(z, m, sd) for m, sd, z, _ in path)


def log_q_path(path, post: HierarchicalPosterior, rows: Tensor) -> Tensor:
    """log q(lower levels | z_Te) of each sample along its path, under the component it was drawn from."""
    std = post.log_std[1:, rows].exp()
    return sum(_log_normal(z, m, sd) for (_, _, z, m), sd in zip(path, std))


def component_draws(prior, posterior: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                     cfg: BoundConfig, samples: int):
    """``samples`` draws from every component of the queries ``idx`` (the same draws for every component, in
    chunks of ``cfg.mc_samples``): per draw, the estimate of -log p(y, z) and log q_j(z) under every component j
    of its query. Returns (B, M, S) and (B, M, S, M)."""
    M, S = posterior.components, cfg.mc_samples
    rows = posterior.component_rows(idx)
    energies, log_qs = [], []
    for c in range(-(-samples // S)):
        shared = SharedAcrossComponents(noise.stream(f"score/{c}", per_query=S), M)
        z_top, recon, diff, _, path = _sample_terms(prior, posterior, operator, y, rows, shared, S, cfg, None, False)
        logq = posterior.log_density(rows.repeat_interleave(shared.per_query, 0), z_top, path)
        energies.append((recon + diff - log_prior_path(path, recon)).view(len(idx), M, S))
        log_qs.append(logq.view(len(idx), M, S, M))
    return torch.cat(energies, 2), torch.cat(log_qs, 2)


@torch.no_grad()
def component_bounds(prior, posterior: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                     cfg: BoundConfig, samples: int) -> Tensor:
    """Each component's own bound (Eq. 13 for q_m alone, beta = 1), (B, M): the mean over ``samples`` draws of
    -log p(y | z) + log q_m(z) - log p(z), drawn in chunks of ``cfg.mc_samples`` with the same draws for every
    component (so that the components' bounds differ by their parameters, not by their noise)."""
    energy, log_q = component_draws(prior, posterior, operator, y, idx, noise, cfg, samples)
    return (energy + torch.diagonal(log_q, dim1=1, dim2=3).transpose(1, 2)).mean(2)


@torch.no_grad()
def optimal_mixture_weights(energy: Tensor, log_q: Tensor, iterations: int = 50) -> Tensor:
    """The log-weights that maximize the mixture's bound for fixed components, (B, M).

    With F_m(pi) = E_{q_m}[log p(y, z) - log sum_j pi_j q_j(z)], the bound sum_m pi_m F_m(pi) is largest where
    F_m is the same for every component with weight (its Lagrange condition), the fixed point of
    log pi_m <- log pi_m + F_m(pi), normalized. Components that do not overlap get pi_m proportional to
    exp(ELBO_m) in one step; c components on the same mode share that mode's weight instead of multiplying it.
    ``energy`` (B, M, S): -log p(y, z) of draws from each component; ``log_q`` (B, M, S, M): log q_j of each.
    """
    log_pi = torch.full(energy.shape[:2], -float(torch.log(torch.tensor(float(energy.shape[1])))),
                        dtype=torch.float64, device=energy.device)
    energy, log_q = energy.double(), log_q.double()
    for _ in range(iterations):
        log_q_pi = torch.logsumexp(log_pi[:, None, None, :] + log_q, dim=3)  # (B, M, S)
        log_pi = torch.log_softmax(log_pi - (energy + log_q_pi).mean(2), dim=1)
    return log_pi


def vipaint_bound(prior, posterior: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                  cfg: BoundConfig, perceptual=None) -> dict[str, Tensor]:
    """Per-query Monte Carlo estimates of every term of the bound (Eq. 13), averaged over the samples.

    ``operator`` and ``y`` are those of the queries ``idx`` (B of them); ``noise`` draws S = ``noise.per_query``
    samples per query, from each of the M components with a mixture (stratified; the same draws for every
    component). Returns tensors of shape (B,).

    Mixture (M > 1): q(z) = sum_m pi_m q_m(z) and the bound is sum_m pi_m E_{q_m}[-log p(y, z) + log q(z)],
    with log q(z) = logsumexp_m' (log pi_m' + log q_m'(z)) per sample; "hierarchical_kl" then holds the
    Monte Carlo E[log q(z) - log p(lower levels | z_Te)] and "entropy" is 0 (it is inside that term).
    """
    M, S = posterior.components, noise.per_query
    if M > 1:
        noise = SharedAcrossComponents(noise, M)
    rows = posterior.component_rows(idx)  # (B, M)
    z_top, recon, diff, kl, path = _sample_terms(prior, posterior, operator, y, rows, noise, S, cfg, perceptual, M == 1)
    if M == 1:
        entropy = gaussian_entropy(posterior.log_std[0, idx].exp()).flatten(1).sum(1) if cfg.entropy else \
            torch.zeros(len(idx), device=y.device)  # H[q(z_Te)], constants included: bounds compare across M
        per_query = lambda v: v.view(-1, S).mean(1)  # noqa: E731
        terms = {"reconstruction": per_query(recon), "hierarchical_kl": per_query(kl),
                 "diffusion": per_query(diff), "entropy": entropy}
    else:
        log_pi = torch.log_softmax(posterior.logits[idx], dim=1)  # (B, M)
        logq = posterior.log_density(rows.repeat_interleave(noise.per_query, 0), z_top, path)  # (B*M*S, M)
        log_q_mix = torch.logsumexp(log_pi.repeat_interleave(noise.per_query, 0) + logq, dim=1)
        log_p_lower = log_prior_path(path, log_q_mix)
        pi = log_pi.exp()
        per_query = lambda v: (pi * v.view(-1, M, S).mean(2)).sum(1)  # noqa: E731  stratified over components
        terms = {"reconstruction": per_query(recon), "hierarchical_kl": per_query(log_q_mix - log_p_lower),
                 "diffusion": per_query(diff), "entropy": torch.zeros(len(idx), device=y.device)}
    if cfg.weighting == "paper":
        if M > 1:
            raise ConfigError("bound.weighting 'paper' is the paper's single-hierarchy bound; use components: 1")
        d, te, T = z_top[0].numel(), posterior.times[0], prior.num_train_timesteps
        per_time = (T - te) / 2 / max(T - 1 - te, 1)  # (T - Te) / 2 on one time, not T - 1 - Te
        kl_and_diffusion = terms["hierarchical_kl"] + per_time * terms["diffusion"]
        terms["loss"] = terms["reconstruction"] + PAPER_BETA / d * kl_and_diffusion
        return terms
    terms["loss"] = terms["reconstruction"] + cfg.beta * (terms["hierarchical_kl"] + terms["diffusion"]
                                                          - terms["entropy"])
    return terms
