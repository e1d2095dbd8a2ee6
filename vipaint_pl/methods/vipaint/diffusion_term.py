"""The bound's diffusion term (Eq. 14, App. B.1): -log p(z_Te) bounded by the diffusion VLB that treats z_Te as
data, its coefficient tables and time proposal, the prior's own marginal at T, and the score-gradient form."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...schedule import apply_transition, gaussian_kl, jump_coefficients_at, per_sample, to_device, transition_std, \
    x0_from_eps_at


def diffusion_loss(prior, z_e: Tensor, te: int, u: Tensor, noise: Tensor, time_sampling: str = "uniform",
                   terminal: str = "standard") -> Tensor:
    """Unbiased one-sample estimate of -log p(z_Te) <= L_(Te,T)(z_Te) + KL(q(z_T | z_Te) || N(0, I)).

    The diffusion VLB with z_Te as the data (Eq. 14): a time t in {Te+1, ..., T-1} (from u in [0, 1)),
    z_t ~ q(z_t | z_Te); for t - 1 > Te the term is KL(q(z_{t-1} | z_t, z_Te) || p(z_{t-1} | z_t)),
    for t - 1 = Te it is -log p(z_Te | z_{Te+1}).
    - ``time_sampling="uniform"`` (the paper): t uniform, the term times the number of terms T - 1 - Te.
    - ``"importance"``: t ~ r(t) = (1 / n + sqrt(w_t) / sum sqrt(w)) / 2 with w_t = SNR(t-1) - SNR(t) relative to
      z_Te (the VLB's own weight of step t; Kingma et al., NeurIPS 2021), the term divided by r(t); the last term's
      constant, -log of p(z_Te | z_{Te+1})'s normalizer, is added exactly instead of sampled. The same
      expectation with far less variance: the steps next to Te carry most of the bound.
    ``terminal="score"``: N(0, I) at T replaced by the prior's marginal p_T, i.e. ``terminal_log_ratio`` of
    z_T ~ q(z_T | z_Te) (drawn with the same ``noise``) subtracted (see ``BoundConfig.terminal``).
    """
    sch, T = prior.schedule, prior.num_train_timesteps
    n = T - 1 - te
    view = lambda c: per_sample(c, z_e)  # noqa: E731
    a_T, sd_T = sch.memo(("diffusion term at T", te, T), lambda: _terminal_coefficients(sch, te, T))
    prior_T = gaussian_kl(a_T * z_e, sd_T, torch.zeros_like(z_e), torch.ones_like(z_e))
    prior_T = prior_T.flatten(1).sum(1)
    if terminal == "score":
        prior_T = prior_T - terminal_log_ratio(prior, a_T * z_e + sd_T * noise).to(prior_T.dtype)
    if n <= 0:
        return prior_T
    if time_sampling == "importance":
        proposal = sch.memo(("time proposal", te, T), lambda: _time_proposal(sch, te, T))
        i = torch.searchsorted(proposal.cumsum(0), u.cpu().double().clamp_max(1 - 1e-12)).clamp_max(n - 1)
        t, scale = te + 1 + i, 1 / proposal[i]
    else:
        i = torch.clamp((u * n).floor().long(), max=n - 1).cpu()
        t, scale = te + 1 + i, torch.full(i.shape, float(n), dtype=torch.float64)
    table = sch.memo(("diffusion term", te, T), lambda: _diffusion_table(sch, te, T))
    rows = to_device(table[:, i].to(z_e.dtype), z_e.device)  # every coefficient at the drawn times: one lookup and copy
    rows = rows.view(*rows.shape, *[1] * (z_e.ndim - 1)).unbind(0)  # each (B, 1, ...), as ``per_sample`` shapes it
    a_t, sd_t, a_s, gain, q_std, step_std, c_x, c_eps, alpha_t, sigma_t = rows  # DIFFUSION_COEFFICIENTS
    z_t = a_t * z_e + sd_t * noise
    x0 = x0_from_eps_at(z_t, prior.predict_eps(z_t, t).to(z_t.dtype), alpha_t, sigma_t)
    p_mean, p_std = apply_transition(step_std, c_x, c_eps, z_t, x0)  # p(z_{t-1} | z_t)
    q_mean = a_s * z_e + gain * (z_t - a_t * z_e)
    last = to_device(t - 1 == te, z_e.device)
    kl = gaussian_kl(q_mean, q_std.expand_as(q_mean), p_mean, p_std).flatten(1).sum(1)
    quadratic = (0.5 * ((z_e - p_mean) / p_std) ** 2).flatten(1).sum(1)
    if time_sampling != "importance":
        normalizer = (torch.log(p_std) + 0.9189385332).flatten(1).sum(1)  # depends on t alone
        return view(scale).flatten() * torch.where(last, quadratic + normalizer, kl) + prior_T
    d = z_e[0].numel()
    last_normalizer = d * (float(torch.log(transition_std(sch, te, te + 1, 1.0))) + 0.9189385332)
    return view(scale).flatten() * torch.where(last, quadratic, kl) + last_normalizer + prior_T


def terminal_log_ratio(prior, z: Tensor, nodes: int = 8) -> Tensor:
    """log p_T(z) - log N(z; 0, I) per sample, up to a constant of the prior (its value at z = 0), at the schedule's
    last time T: the line integral from 0 to z of the difference of the two scores,
        int_0^1 z . (grad log p_T(l z) + l z) dl,   grad log p_T(z) = (alpha_T D(z, T) - z) / sigma_T^2 (Tweedie),
    by Gauss-Legendre quadrature with ``nodes`` nodes (all in one denoiser call). At T the prior's marginal is
    close to N(0, I) and smooth along the line, so a few nodes are exact to far below a nat (tested against a
    Gaussian mixture's closed form)."""
    T = prior.num_train_timesteps - 1
    a, s2 = float(prior.schedule.alpha(T)), float(prior.schedule.sigma(T)) ** 2
    points, weights = np.polynomial.legendre.leggauss(nodes)
    lam = torch.tensor((points + 1) / 2, dtype=z.dtype, device=z.device).view(nodes, *[1] * z.ndim)  # [-1, 1] -> [0, 1]
    w = torch.tensor(weights / 2, dtype=z.dtype, device=z.device)
    on_line = (lam * z[None]).flatten(0, 1)  # (nodes * B, ...): node-major
    score = (a * prior.predict_x0(on_line, T) - on_line) / s2
    integrand = (z[None] * (score.view(nodes, *z.shape) + lam * z[None])).flatten(2).sum(2)  # (nodes, B)
    return (w[:, None] * integrand).sum(0)


def _given_te(sch, te: int):
    """t -> (a, v) of z_t | z_Te = N(a z_Te, v I) (float64; App. B.1's forward kernel from Te)."""
    a_e, v_e = sch.alpha(te), sch.sigma(te) ** 2
    return lambda t: (sch.alpha(t) / a_e, sch.sigma(t) ** 2 - (sch.alpha(t) / a_e) ** 2 * v_e)


DIFFUSION_COEFFICIENTS = ("a_t", "sd_t", "a_s", "gain", "q_std", "p_std", "c_x", "c_eps", "alpha", "sigma")


def _terminal_coefficients(sch, te: int, T: int) -> tuple[float, float]:
    """z_(T-1) | z_Te = N(a z_Te, sd^2 I): (a, sd) as Python numbers (``diffusion_loss``'s prior term)."""
    a, v = _given_te(sch, te)(torch.tensor(T - 1))
    return float(a), float(v.sqrt())


def _diffusion_coefficients(sch, te: int, T: int) -> dict[str, Tensor]:
    """``diffusion_loss``'s coefficients at every t = Te+1, ..., T-1 (float64 tables indexed by t - Te - 1; the
    schedule keeps them per Te): z_t | z_Te = N(a_t z_Te, sd_t^2) and z_{t-1} | z_Te likewise with a_s, v_s;
    q(z_{t-1} | z_t, z_Te) = N(a_s z_Te + gain (z_t - a_t z_Te), q_std^2) with gain = Cov(z_{t-1}, z_t) / v_t;
    p(z_{t-1} | z_t) = the DDPM step (p_std, c_x, c_eps of ``jump_coefficients_at``); alpha and sigma at t (Tweedie)."""
    rel = _given_te(sch, te)
    t = torch.arange(te + 1, T)
    a_t, v_t = rel(t)
    a_s, v_s = rel(t - 1)
    cov = (a_t / a_s) * v_s  # Cov(z_{t-1}, z_t | z_Te)
    p_std, c_x, c_eps = jump_coefficients_at(sch, t - 1, t, 1.0)
    return {"a_t": a_t, "sd_t": v_t.sqrt(), "a_s": a_s, "gain": cov / v_t,
            "q_std": (v_s - cov**2 / v_t).clamp_min(0).sqrt().clamp_min(1e-12), "p_std": p_std, "c_x": c_x,
            "c_eps": c_eps, "alpha": sch.alpha(t), "sigma": sch.sigma(t)}


def _diffusion_table(sch, te: int, T: int) -> Tensor:
    """``_diffusion_coefficients`` stacked in the order of ``DIFFUSION_COEFFICIENTS``: (10, T - 1 - Te)."""
    coefficients = _diffusion_coefficients(sch, te, T)
    return torch.stack([coefficients[k] for k in DIFFUSION_COEFFICIENTS])


def _time_proposal(sch, te: int, T: int) -> Tensor:
    """r(t) over t = Te+1, ..., T-1 for ``diffusion_loss``'s importance sampling (float64, sums to 1)."""
    t = torch.arange(te + 1, T)
    snr = lambda t: sch.alpha(t) ** 2 / (sch.sigma(t) ** 2 - (sch.alpha(t) / sch.alpha(te)) ** 2  # noqa: E731
                                         * sch.sigma(te) ** 2) / sch.alpha(te) ** 2
    w = torch.zeros(len(t), dtype=torch.float64)
    if len(t) > 1:
        w[1:] = (snr(t[1:] - 1) - snr(t[1:])).double()
        w[0] = w[1]  # the last term has no finite SNR step; weigh it as its neighbour
    uniform = torch.full_like(w, 1 / len(t))
    w = w.clamp_min(0).sqrt()  # the square root of the weights: measured lower variance than the weights
    return 0.5 * uniform + 0.5 * (w / w.sum() if w.sum() > 0 else uniform)


def score_gradient(prior, z: Tensor, t: int) -> Tensor:
    """Zero per sample whose gradient is that of -log p_t(z) (``BoundConfig.prior_gradient: score``): the
    pathwise gradient E_q[-grad_z log p_t(z) dz/dphi] with the prior's score by Tweedie's formula,
    grad log p_t(z) = (alpha_t D(z, t) - z) / sigma_t^2 (the score-distillation gradient of Poole et al.,
    ICLR 2023, at the hierarchy's top time, without its weighting)."""
    if not z.requires_grad:
        return z.new_zeros(z.shape[0])
    with torch.no_grad():
        a, s = float(prior.schedule.alpha(t)), float(prior.schedule.sigma(t))
        minus_score = (z - a * prior.predict_x0(z, t)) / s**2
    return (minus_score * (z - z.detach())).flatten(1).sum(1)
