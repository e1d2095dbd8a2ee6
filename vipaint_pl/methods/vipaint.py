"""VIPaint (Agarwal, Hoope & Sudderth, arXiv 2024, Sec. 4): a hierarchical Gaussian posterior over K
diffusion times, fit by the variational bound, then sampled.

Posterior (Eq. 11-12), times Te = s(K) > ... > s(1) = Ts:
    q(z_Te) = N(mu_Te, tau_Te^2)
    q(z_s | z_t) = N(g * zhat + (1 - g) * mu_s, tau_s^2),  zhat = mean of the prior p(z_s | z_t),
                                                             g = sigmoid(gamma_s)
Bound (Eq. 13-14, App. C), per query:
    -log p(y) <= E_q[-log p(y | x0hat(z_Ts))]                                    reconstruction
                 + beta * sum_i KL(q(z_s(i) | z_s(i+1)) || p(z_s(i) | z_s(i+1)))  hierarchical
                 + beta * (L_(Te,T)(z_Te) - H[q(z_Te)])                          diffusion and entropy
where L_(Te,T) bounds -log p(z_Te) by the diffusion VLB that treats z_Te as data; with beta = 1
this is the exact VLB. The entropy term keeps the top-level variance from collapsing.

The method runs in three phases, each a function here, used alike by ``vipaint_sample`` (the registry's
entry: scripts, benchmarks, ``SamplerModule``) and by ``VIPaintModule`` (Lightning fit / predict):
    1. ``init_posterior``: parameters from the encoded observation;
    2. ``fit_posterior``: ``vipaint_bound`` minimized by ``make_optimizer``'s Adam + StepLR (1. included);
    3. ``sample_posterior``: ancestral sampling through the hierarchy (``sample_ts``), then guided steps from Ts
       to 0 (``sample_below``).
Random streams: "init", "fit/<step>" (``mc_samples`` per query) and "sample" of the query's noise; inside "sample",
"lower/<j>" and "lower/pick" (``sampling.lower_draws``) and "corrector" (``sampling.corrector_steps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..schedule import (apply_transition, gaussian_entropy, gaussian_kl, jump_coefficients_at, per_sample, to_device,
                        transition, transition_std, x0_from_eps_at)
from ..settings import Settings, bounded
from . import fidelity
from .common import code_shape, report
from .guidance import (guided_reverse_diffusion, jacobian_variance, langevin_corrector,
                       tweedie_guided_reverse_diffusion)
from .time_grids import hierarchy_times


# The official code's weighting (weighting: paper): the L1 of the decoded reconstruction summed over pixels and
# scaled by 1 / (2 * 0.566^2 * 1000) (its VAE loss's log-variance and the division by 1000), beta = 100 on the
# hierarchical KL and on the diffusion term, both averaged over the latent dimensions, the diffusion term's
# single time weighted by (T - Te) / 2, and no entropy term.
PAPER_L1_SCALE = 2 * 0.566**2 * 1000
PAPER_BETA = 100.0
# The paper's sampler below Ts (the official code): 50 DDIM steps at eta 0.2, each with a DPS step of 1
PAPER_SAMPLING = {"steps": 50, "dps_step_size": 1.0, "eta": 0.2, "corrector_steps": 0}


@dataclass
class BoundConfig(Settings):
    """Weights of the bound's terms. beta = 1 and a Gaussian likelihood give the exact bound;
    ``weighting: paper`` gives the official code's weights instead (see PAPER_L1_SCALE)."""

    weighting: Literal["exact", "paper"] = "exact"
    beta: float = bounded(1.0, low=0.0, low_open=True)
    likelihood: Literal["laplace", "gaussian"] = "laplace"  # L1 (as the official code) or Gaussian
    # Laplace scale b or Gaussian sigma_y in image units ([-1, 1]); None: the operator's ``sigma_y``
    likelihood_scale: float | None = bounded(0.05, low=0.0, low_open=True)
    perceptual: Literal["none", "st-lpips", "lpips"] = "none"
    perceptual_weight: float = bounded(0.0, low=0.0)
    mc_samples: int = bounded(4, low=1)  # posterior samples per query per step (S)
    entropy: bool = True
    # "one_step": -log p(y | x0hat(z_Ts)) with the likelihood above (the paper: treats the one-step estimate
    # as the image, which biases z_Ts to overshoot y by the denoiser's shrinkage); "tweedie": -log p(y | z_Ts)
    # ~ -log N(y; A D(x0hat(z_Ts)), std^2 I + sigma_Ts^2 A A^T), the width of x0 given z_Ts added (unit-variance
    # data; the operator's ``whitened_square``, exact for inpainting and dense operators), as the "tweedie"
    # sampler below Ts has it
    reconstruction: Literal["one_step", "tweedie"] = "one_step"
    # the "tweedie" reconstruction's Var[x0 | z_Ts]: "unit-data" (sigma_Ts^2) or "jacobian" (per sample from the
    # denoiser's Jacobian, as ``PosteriorSamplingConfig.corrector_variance``; held fixed in the gradient, one more
    # backward pass through the denoiser per fit step)
    tweedie_variance: Literal["unit-data", "jacobian"] = "unit-data"
    # the diffusion term's time: "uniform" (the paper) or "importance" (drawn by the VLB's own step weights, the
    # same expectation with far less variance; ``diffusion_loss``)
    time_sampling: Literal["uniform", "importance"] = "uniform"
    # the gradient of the diffusion term (the prior's -log p(z_Te)) in the fit: "vlb" (the paper: through the
    # one-time Monte Carlo estimate of the diffusion VLB, whose spread grows with the dimension) or "score" (the
    # pathwise gradient of -log p(z_Te) itself through the prior's score at Te, (z - alpha_Te D(z)) / sigma_Te^2:
    # one denoiser evaluation, no time drawn, no backward pass through the denoiser; the bound's value is still
    # the VLB estimate; ``score_gradient``)
    prior_gradient: Literal["vlb", "score"] = "vlb"
    # the diffusion term's last piece, E_q[-log p_T(z_T)] - H[q(z_T | z_Te)]: "standard" (the DDPM VLB: p_T = N(0, I),
    # which tilts the prior by about exp(-alpha_T^2 |x|^2 / 2), several nats between data far from the origin and near
    # it) or "score" (the prior's own marginal at T from its score, ``terminal_log_ratio``: 8 more denoiser
    # evaluations per draw; the value is then known up to a constant of the prior, the same for every query and
    # component)
    terminal: Literal["standard", "score"] = "standard"


@dataclass
class InitConfig(Settings):
    """Initialization from the observation (as the official code: mean at the noised encoded observation)."""

    # "observation": mu_s = alpha_s enc(A^+ y) + noise_scale * sigma_s * noise (the paper);
    # "guided": each component's top mean is a draw of the Tweedie-guided chain from T to Te (close to
    # p(z_Te | y), so components start in different modes), lower means alpha_s times its x0 estimate
    start: Literal["observation", "guided", "resampled", "mixed"] = "observation"
    guided_steps: int = bounded(20, low=1)  # reverse steps from T to Te for the "guided" start
    candidates: int = bounded(64, low=1)  # prior samples per query for the "resampled" start
    noise_scale: float = bounded(0.5, low=0.0)
    lower_std_factor: float = bounded(0.7, low=0.0, low_open=True)  # tau_s = factor * std of p(z_s | z_t)
    gamma: float = 4.0  # sigmoid(4) = 0.98: start close to the prior's own transition


@dataclass
class OptimConfig(Settings):
    """Adam on the three parameter groups, StepLR on all (the official settings)."""

    lr_mean: float = bounded(0.1, low=0.0, low_open=True)
    lr_log_std: float = bounded(0.001, low=0.0, low_open=True)
    lr_gamma: float = bounded(0.01, low=0.0)  # 0 keeps gamma at its start
    # mixture weights' logits (components > 1); 0 keeps them equal, the measured best with sampling.component_weights
    # "optimal": learned weights collapse onto one component and its weight scales away the others' gradients
    lr_weights: float = bounded(0.05, low=0.0)
    betas: tuple[float, float] = (0.9, 0.99)
    # "step": StepLR(lr_step_size, lr_decay) (the official code); "cosine": cosine annealing to 0 over the fit,
    # so that the last steps average out the Monte Carlo noise of the gradients instead of jittering
    schedule: Literal["step", "cosine"] = "step"
    lr_step_size: int = bounded(10, low=1)
    lr_decay: float = bounded(0.99, low=0.0, high=1.0, low_open=True)


@dataclass
class PosteriorSamplingConfig(Settings):
    """Phase 3 (Sec. 4.3): ancestral sampling through the hierarchy, then DPS-guided steps from Ts to 0."""

    # Defaults: the best configuration measured on held-out digits (BENCHMARKS.md, "Which VIPaint for the
    # defaults", "The Langevin corrector becomes the image default" and "The corrector's likelihood width from the
    # denoiser", "Spread against fidelity"): 50 Langevin corrector steps at every level (likelihood width from the
    # denoiser's Jacobian), then DDPM steps (eta 1) with DPS 0.5 at a spacing of 4; the paper's sampler is
    # PAPER_SAMPLING (no corrector, 50 steps, DPS 1, DDIM eta 0.2; configs/method/vipaint_paper.yaml)
    # reverse steps from Ts to the data; None: ceil(Ts / step_spacing), 100 from Ts = 400, so that the chain keeps
    # its spacing where the hierarchy's times move (``VIPaintConfig.snr_matched_times``: 78 from the pixel prior's 310)
    steps: int | None = bounded(None, low=1)
    step_spacing: int = bounded(4, low=1)
    # "dps": z_s -= dps_step_size * grad ||y - A(D(x0))|| (the paper); "tweedie": every step conditioned on y
    # by Tweedie's formula with the bound's likelihood width (no step size to tune)
    guidance: Literal["dps", "tweedie"] = "dps"
    dps_step_size: float = bounded(0.5, low=0.0)  # 0 disables the DPS gradient
    # the "tweedie" steps' variance: "plug-in" (E[x0 | z_t, y] in place of x0) or "unit-data" (x0 integrated out with
    # Var[x0 | z_t] = sigma_t^2; ``tweedie_guided_reverse_diffusion``)
    variance: Literal["plug-in", "unit-data"] = "plug-in"
    # the "tweedie" steps' likelihood Var[x0 | z_t] (as ``corrector_variance``): "unit-data" (sigma_t^2) or "jacobian"
    # (estimated per sample from the denoiser's Jacobian, one more backward pass a step)
    guidance_variance: Literal["unit-data", "jacobian"] = "unit-data"
    eta: float = bounded(1.0, low=0.0, high=1.0)  # DDIM eta of the reverse steps (1: DDPM)
    # A mixture's component weights at sampling time: "learned" (the fitted logits) or "bound" (pi_m proportional
    # to exp(-bound of component m alone), each bound estimated with ``score_samples`` draws: the weights that
    # maximize a lower bound on the mixture's bound, exact when the components do not overlap)
    # "optimal": the weights that maximize the mixture's bound for the fitted components (``optimal_mixture_weights``:
    # as "bound" for separate components, and components on the same mode share its weight)
    component_weights: Literal["learned", "bound", "optimal"] = "learned"
    score_samples: int = bounded(64, low=1)
    # J draws of the lower levels for every draw of z_Te, one of them kept with probability proportional to
    # p(y | z_Ts) p(lower levels | z_Te) / q(lower levels | z_Te) (``sample_ts``): conditional importance
    # resampling towards p(lower levels | z_Te, y), the transitions q's gate cannot condition on y. 1: plain
    # ancestral sampling (the paper)
    lower_draws: int = bounded(1, low=1)
    # then N unadjusted Langevin steps at Ts (and above it: corrector_levels) on p(z_Ts | y) with the Tweedie
    # likelihood, step h = corrector_scale * sigma_Ts^2 (``guidance.langevin_corrector``): they move q's draws
    # towards p(z_Ts | y), from where the chain
    # below Ts is calibrated. 0: none (the paper)
    corrector_steps: int = bounded(50, low=0)
    corrector_scale: float = bounded(0.05, low=0.0, high=1.0, low_open=True)
    # > 0: the corrector as underdamped Langevin with this velocity retention per step (``langevin_corrector``):
    # the same gradients, faster along the data's wide directions. 0: overdamped (the default)
    corrector_momentum: float = bounded(0.0, low=0.0, high=0.999)
    # where the momentum applies: "all" (every corrected level) or "last" (at Ts only; the levels above it overdamped)
    corrector_momentum_levels: Literal["last", "all"] = "all"
    # where the corrector runs: "all" (at every level of the hierarchy, each draw moved towards p(z_t | y) before the
    # next level is drawn from it; K times the corrector's cost; the default since 2026-11-29, BENCHMARKS.md "Spread
    # against fidelity") or "last" (at Ts only). "all" needs lower_draws 1
    corrector_levels: Literal["last", "all"] = "all"
    # the corrector likelihood's Var[x0 | z_Ts] (``guidance.tweedie_shift``): "jacobian" (estimated per sample from
    # the denoiser's Jacobian, one more backward pass a step; the default since 2026-11-28, BENCHMARKS.md "The
    # corrector's likelihood width from the denoiser") or "unit-data" (sigma_Ts^2: data of unit variance)
    corrector_variance: Literal["unit-data", "jacobian"] = "jacobian"
    # clip x0 to the prior's data range in the DPS chain below Ts, as DPS does (``DPSConfig.clip_x0``; the
    # official DPS's clip_denoised). Pixel priors only (latent and Gaussian-mixture priors have no range), and with
    # guidance "dps" only: the "tweedie" steps do not clip
    clip_x0: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.corrector_steps > 0 and self.corrector_levels == "all" and self.lower_draws > 1:
            raise ConfigError("sampling.corrector_levels: all cannot be combined with sampling.lower_draws > 1 (the "
                              "lower paths' importance weights assume q's own draws); set corrector_levels: last")


@dataclass
class VIPaintConfig(Settings):
    """VIPaint-K: the hierarchy, the bound, its fit and the sampler."""

    k: int = bounded(2, low=1)  # hierarchy levels
    components: int = bounded(1, low=1)  # M: a mixture of M hierarchies with learned weights (1: the paper)
    # the prior's transitions p(z_s | z_t) between levels: DDIM-family eta (1: the DDPM posterior; the official
    # code's step has the DDPM std times sqrt(0.2), i.e. eta 0.447)
    hierarchy_eta: float = bounded(1.0, low=0.0, high=1.0, low_open=True)
    # the variance of those transitions: "plug-in" (the paper: x0 replaced by its estimate, which drops Var[x0 | z_t]
    # and so makes a long jump too narrow) or "unit-data" (x0 integrated out with Var[x0 | z_t] = sigma_t^2, exact
    # for unit-variance data; ``schedule.transition``'s x_var)
    hierarchy_variance: Literal["plug-in", "unit-data"] = "plug-in"
    gamma_per_element: bool = False  # one gate per level and query (False) or per latent element (official)
    times: list[int] | None = None  # DDPM indices Te > ... > Ts; default [550, 400] for K = 2 (rescaled to T)
    # True: the default times, chosen by the official code for latent codes of unit standard deviation, moved to the
    # same signal-to-noise ratio for a prior whose ``data_std`` is known (``time_grids.snr_matched``; e.g. the
    # embedded pixel digits, std 0.64: [469, 310]); priors without a data_std (latent, Stable Diffusion, hub pixel
    # models unless given one) keep the official indices. False: the official indices whatever the data (the paper;
    # the default until 2026-11-29, BENCHMARKS.md "The hierarchy's times for pixel data")
    snr_matched_times: bool = True
    fit_steps: int = bounded(100, low=1)  # optimization steps on the bound
    bound: BoundConfig = field(default_factory=BoundConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: PosteriorSamplingConfig = field(default_factory=PosteriorSamplingConfig)

    def hierarchy(self, prior) -> list[int]:
        """The hierarchy's times Te > ... > Ts on ``prior`` (see ``times`` and ``snr_matched_times``)."""
        data_std = getattr(prior, "data_std", None) if self.snr_matched_times else None
        return hierarchy_times(self.k, self.times, prior.num_train_timesteps, prior.schedule, data_std)


class HierarchicalPosterior(nn.Module):
    """Variational parameters for Q queries, each a mixture of M hierarchies (M = 1: the paper's family).

    Row ``q * M + m`` of ``mu`` / ``log_std`` (per level, over the latent grid) and ``gamma`` (per level)
    is component m of query q; ``logits`` (Q, M) give the mixture weights pi = softmax(logits).
    """

    def __init__(self, times: list[int], num_queries: int, latent_shape: tuple[int, ...], components: int = 1,
                 gamma_per_element: bool = False, eta: float = 1.0, variance: str = "plug-in"):
        super().__init__()
        self.times, self.components, self.eta, self.variance = list(times), components, eta, variance
        k, rows = len(times), num_queries * components
        self.mu = nn.Parameter(torch.zeros(k, rows, *latent_shape))
        self.log_std = nn.Parameter(torch.zeros(k, rows, *latent_shape))
        self.gamma = nn.Parameter(torch.zeros(k - 1, rows, *(latent_shape if gamma_per_element else ())))
        self.logits = nn.Parameter(torch.zeros(num_queries, components))

    @property
    def k(self) -> int:
        return len(self.times)

    def component_rows(self, idx: Tensor) -> Tensor:
        """The parameter rows of the queries ``idx``: (len(idx), M)."""
        return idx[:, None] * self.components + torch.arange(self.components, device=idx.device)

    @torch.no_grad()
    def initialize(self, prior, z_obs: Tensor, cfg: InitConfig, noise) -> None:
        """z_obs: each row's anchor in code space, (Q * M, *latent_shape) (the encoded observation, or a
        component's x0 estimate); noise: one draw per row."""
        sch = prior.schedule
        for k, s in enumerate(self.times):
            a, sg = float(sch.alpha(s)), float(sch.sigma(s))
            self.mu[k] = a * z_obs + cfg.noise_scale * sg * noise.like(z_obs)
            if k == 0:
                std = sg
            else:
                std = cfg.lower_std_factor * float(transition_std(sch, s, self.times[k - 1], 1.0))
            self.log_std[k] = torch.log(torch.tensor(std))
        self.gamma.fill_(cfg.gamma)

    def sample(self, prior, rows: Tensor, noise, with_kl: bool = False, with_path: bool = False,
               top: Tensor | None = None, correct=None):
        """Ancestral sampling through the hierarchy (Eq. 11), one sample per entry of ``rows``: returns z_Te,
        z_Ts, the per-sample KLs of the lower levels, and (``with_path``) every level's (prior mean, prior std,
        z_s, q's mean) for mixture densities. ``top``: a given z_Te per sample (only the lower levels drawn).
        ``correct(k, z)``: applied to each level's draw but the last before the next is drawn from it."""
        mu, std = self.mu[:, rows], self.log_std[:, rows].exp()
        z = mu[0] + std[0] * noise.randn(mu.shape[2:], mu) if top is None else top
        if correct is not None and self.k > 1:
            z = correct(0, z)
        z_top, kl, path = z, z.new_zeros(z.shape[0]), []
        for k in range(1, self.k):
            t, s = self.times[k - 1], self.times[k]
            x_var = float(prior.schedule.sigma(t)) ** 2 if self.variance == "unit-data" else 0.0
            p_mean, p_std = transition(prior.schedule, z, prior.predict_x0(z, t), s, t, eta=self.eta, x_var=x_var)
            g = per_sample(torch.sigmoid(self.gamma[k - 1, rows]), z)
            q_mean = g * p_mean + (1 - g) * mu[k]  # Eq. 12
            if with_kl:
                kl = kl + gaussian_kl(q_mean, std[k], p_mean, p_std).flatten(1).sum(1)
            z_next = q_mean + std[k] * noise.like(q_mean)
            if correct is not None and k < self.k - 1:
                z_next = correct(k, z_next)
            path.append((p_mean, p_std, z_next, q_mean))
            z = z_next
        return (z_top, z, kl, path) if with_path else (z_top, z, kl)

    def log_density(self, rows: Tensor, z_top: Tensor, path) -> Tensor:
        """log q_m(z) of each sample's whole hierarchy under every component m of its query: (B, M).

        ``rows`` (B, M): the parameter rows of each sample's query. The prior means along the path are shared
        by all components, so this costs no network call.
        """
        def log_normal(x, mean, std):  # summed over the event, broadcast over the M components
            return (-0.5 * ((x[:, None] - mean) / std) ** 2 - torch.log(std) - 0.9189385332).flatten(2).sum(2)

        mu, std = self.mu[:, rows], self.log_std[:, rows].exp()  # (K, B, M, ...)
        logq = log_normal(z_top, mu[0], std[0])
        for k, (p_mean, _, z_s, _) in enumerate(path, start=1):
            g = torch.sigmoid(self.gamma[k - 1, rows])
            g = g.view(*g.shape, *([1] * (mu.ndim - 1 - g.ndim)))  # (B, M) or per element (B, M, ...)
            logq = logq + log_normal(z_s, g * p_mean[:, None] + (1 - g) * mu[k], std[k])
        return logq


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


class SharedAcrossComponents:
    """Common random numbers for a mixture: every component of a query gets the same S draws, so that the
    components' bounds differ by their parameters, not by their noise (low-variance weight gradients).
    Rows are laid out query by query, then component, then sample."""

    def __init__(self, noise, components: int):
        self.noise, self.components = noise, components
        self.per_query = noise.per_query * components

    def _tile(self, draws: Tensor) -> Tensor:
        q, s = self.noise.num_queries, self.noise.per_query
        return draws.view(q, 1, s, *draws.shape[1:]).expand(q, self.components, s, *draws.shape[1:]).reshape(
            q * self.components * s, *draws.shape[1:])

    def randn(self, shape, like: Tensor) -> Tensor:
        return self._tile(self.noise.randn(shape, like))

    def like(self, tensor: Tensor) -> Tensor:
        return self.randn(tensor.shape[1:], tensor)

    def rand(self, like: Tensor) -> Tensor:
        return self._tile(self.noise.rand(like))

    def repeat(self, tensor: Tensor) -> Tensor:
        return tensor.repeat_interleave(self.per_query, 0)


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


def _log_normal(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, std^2 I) per sample (summed over the event)."""
    return -(0.5 * ((x - mean) / std) ** 2 + torch.log(std) + 0.9189385332).flatten(1).sum(1)


def _log_prior_path(path, like: Tensor) -> Tensor:
    """log p(lower levels | z_Te) of each sample along its path (the prior's transitions)."""
    if not path:
        return torch.zeros_like(like)
    return sum(_log_normal(z, m, sd) for m, sd, z, _ in path)


def _log_q_path(path, post: HierarchicalPosterior, rows: Tensor) -> Tensor:
    """log q(lower levels | z_Te) of each sample along its path, under the component it was drawn from."""
    std = post.log_std[1:, rows].exp()
    return sum(_log_normal(z, m, sd) for (_, _, z, m), sd in zip(path, std))


def _pick(log_w: Tensor, noise) -> Tensor:
    """One column per row of ``log_w`` (B, J), drawn with probability softmax(log_w) (inverse CDF of one uniform
    per row of ``noise``)."""
    cdf = torch.softmax(log_w.double(), dim=1).cumsum(1)
    return (cdf < noise.rand(cdf)[:, None]).sum(1).clamp_max(log_w.shape[1] - 1)


def _component_draws(prior, posterior: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
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
        energies.append((recon + diff - _log_prior_path(path, recon)).view(len(idx), M, S))
        log_qs.append(logq.view(len(idx), M, S, M))
    return torch.cat(energies, 2), torch.cat(log_qs, 2)


@torch.no_grad()
def component_bounds(prior, posterior: HierarchicalPosterior, operator, y: Tensor, idx: Tensor, noise,
                     cfg: BoundConfig, samples: int) -> Tensor:
    """Each component's own bound (Eq. 13 for q_m alone, beta = 1), (B, M): the mean over ``samples`` draws of
    -log p(y | z) + log q_m(z) - log p(z), drawn in chunks of ``cfg.mc_samples`` with the same draws for every
    component (so that the components' bounds differ by their parameters, not by their noise)."""
    energy, log_q = _component_draws(prior, posterior, operator, y, idx, noise, cfg, samples)
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
        log_p_lower = _log_prior_path(path, log_q_mix)
        pi = log_pi.exp()
        per_query = lambda v: (pi * v.view(-1, M, S).mean(2)).sum(1)  # noqa: E731  stratified over components
        terms = {"reconstruction": per_query(recon), "hierarchical_kl": per_query(log_q_mix - log_p_lower),
                 "diffusion": per_query(diff), "entropy": torch.zeros(len(idx), device=y.device)}
    if cfg.weighting == "paper":
        if M > 1:
            raise ConfigError("bound.weighting 'paper' is the paper's single-hierarchy bound; use components: 1")
        d, te, T = z_top[0].numel(), posterior.times[0], prior.num_train_timesteps
        per_time = (T - te) / 2 / max(T - 1 - te, 1)  # (T - Te) / 2 on one time, not T - 1 - Te
        terms["loss"] = terms["reconstruction"] + PAPER_BETA / d * (terms["hierarchical_kl"] + per_time * terms["diffusion"])
        return terms
    terms["loss"] = terms["reconstruction"] + cfg.beta * (terms["hierarchical_kl"] + terms["diffusion"]
                                                          - terms["entropy"])
    return terms


@torch.no_grad()
def init_posterior(prior, operator, y: Tensor, noise, cfg: VIPaintConfig) -> HierarchicalPosterior:
    """Phase 1: a posterior for the B queries of ``y`` (``cfg.components`` rows each), started as
    ``cfg.init.start`` says."""
    M, times = cfg.components, cfg.hierarchy(prior)
    with torch.device(y.device):  # made where it runs: no copy from the host
        post = HierarchicalPosterior(times, y.shape[0], code_shape(prior, operator, y), M, cfg.gamma_per_element,
                                     cfg.hierarchy_eta, cfg.hierarchy_variance)
    init = noise.stream("init", per_query=M)
    if cfg.init.start == "observation":
        anchors = init.repeat(prior.encode(operator.pinv(y)).float())
        post.initialize(prior, anchors, cfg.init, init)
        return post
    if cfg.init.start in ("resampled", "mixed"):
        n = M if cfg.init.start == "resampled" else M - M // 2  # "mixed": the last M - M // 2 components
        candidates = noise.stream("init/candidates", per_query=cfg.init.candidates)
        resampled = resampled_starts(prior, operator, y, candidates, n, cfg)
        resampled = torch.cat([resampled.new_zeros(y.shape[0], M - n, *resampled.shape[1:]),
                               resampled.view(y.shape[0], n, *resampled.shape[1:])], 1).flatten(0, 1)
        if cfg.init.start == "resampled":
            post.initialize(prior, resampled, cfg.init, init)
            return post
    # "guided": M draws of the Tweedie-guided chain from T - 1 to Te per query; each component is centred on
    # one draw at Te and on alpha_s times that draw's x0 estimate below
    z_top = tweedie_guided_reverse_diffusion(prior, init.randn(post.mu.shape[2:], y), prior.num_train_timesteps - 1,
                                             init, cfg.init.guided_steps, 1.0, operator.repeat_interleave(M),
                                             init.repeat(y), likelihood_std(operator, cfg.bound), t_end=times[0])
    anchors = prior.predict_x0(z_top, times[0]).float()
    post.initialize(prior, anchors, cfg.init.replace(noise_scale=0.0), init)
    post.mu[0] = z_top.float()
    if cfg.init.start == "mixed":  # the second half of each query's components from the resampled starts
        half = torch.arange(M, device=y.device).repeat(y.shape[0]) >= M // 2
        guided = post.mu.detach().clone()
        post.initialize(prior, resampled, cfg.init, init)
        post.mu.copy_(torch.where(per_sample(half, guided[0])[None] > 0, post.mu, guided))
    return post


def tempered(log_w: Tensor, ess: float, iterations: int = 40) -> Tensor:
    """lambda * log_w per row, with the largest lambda in (0, 1] whose weights keep an effective sample size
    (sum w)^2 / sum w^2 of at least ``ess`` (bisection on log lambda): a sharp likelihood then still leaves
    ``ess`` distinct candidates to resample (the bound's weights correct the tempering's bias later)."""
    def ess_of(lam):
        w = torch.softmax(lam[:, None] * log_w, dim=1)
        return 1 / w.pow(2).sum(1)

    lo = torch.full(log_w.shape[:1], -30.0, dtype=log_w.dtype, device=log_w.device)  # log lambda
    hi = torch.zeros_like(lo)
    ok = ess_of(hi.exp()) >= ess
    for _ in range(iterations):
        mid = (lo + hi) / 2
        good = ess_of(mid.exp()) >= ess
        lo, hi = torch.where(good, mid, lo), torch.where(good, hi, mid)
    return torch.where(ok, hi, lo).exp()[:, None] * log_w


@torch.no_grad()
def resampled_starts(prior, operator, y: Tensor, candidates, M: int, cfg: VIPaintConfig) -> Tensor:
    """M anchors per query by sampling importance resampling: ``candidates.per_query`` prior samples (the
    unguided chain from T, ``init.guided_steps`` steps), weighted by the likelihood p(y | x) of the bound, M of
    them kept by systematic resampling. Returns (B * M, *latent_shape)."""
    B, P = y.shape[0], candidates.per_query
    shape = code_shape(prior, operator, y)
    z0 = guided_reverse_diffusion(prior, candidates.randn(shape, y), prior.num_train_timesteps - 1, candidates,
                                  cfg.init.guided_steps, 0.0, 1.0, None)
    nll = reconstruction_loss(operator.repeat_interleave(P), prior.decode(z0), candidates.repeat(y),
                              cfg.bound.replace(reconstruction="one_step", perceptual="none"))
    cdf = torch.softmax(tempered(-nll.view(B, P).double(), M), dim=1).cumsum(1)
    u = (candidates.stream("resample", per_query=1).rand(cdf)[:, None] + torch.arange(M, device=y.device)) / M
    pick = torch.searchsorted(cdf, u.to(cdf.dtype)).clamp_max(P - 1)  # (B, M)
    return z0.view(B, P, *shape)[torch.arange(B, device=y.device)[:, None], pick].flatten(0, 1).float()


def make_optimizer(post: HierarchicalPosterior, cfg: OptimConfig, steps: int):
    """Phase 2's optimizer: Adam with one learning rate per parameter group, StepLR or cosine annealing over
    ``steps`` on all."""
    groups = [{"params": [post.mu], "lr": cfg.lr_mean}, {"params": [post.log_std], "lr": cfg.lr_log_std},
              {"params": [post.gamma], "lr": cfg.lr_gamma}]
    if post.components > 1:
        groups.append({"params": [post.logits], "lr": cfg.lr_weights})
    opt = torch.optim.Adam(groups, betas=tuple(cfg.betas))
    if cfg.schedule == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_size, gamma=cfg.lr_decay)


def fit_noise(noise, step: int, cfg: VIPaintConfig):
    """The random stream of fit step ``step``: ``mc_samples`` draws per query (shared by its components)."""
    return noise.stream(f"fit/{step}", per_query=cfg.bound.mc_samples)


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
        logits = optimal_mixture_weights(*_component_draws(prior, post, operator, y, idx, noise, bound,
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
            log_w.append(_log_prior_path(path, nll) - _log_q_path(path, post, rows) - nll)
            candidates.append(z)
        pick = _pick(torch.stack(log_w, 1), noise.stream("lower/pick"))
        return torch.stack(candidates, 1)[torch.arange(len(pick), device=pick.device), pick]


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


def fit_posterior(prior, operator, y: Tensor, noise, cfg: VIPaintConfig, callback=None) -> HierarchicalPosterior:
    """Phases 1 and 2: each query's posterior, initialized and fitted for ``cfg.fit_steps`` steps (frozen)."""
    from ..perceptual import build_perceptual

    post = init_posterior(prior, operator, y, noise, cfg)
    perceptual = build_perceptual(cfg.bound.perceptual)
    if perceptual is not None:
        perceptual = perceptual.to(y.device)
    opt, sched = make_optimizer(post, cfg.optim, cfg.fit_steps)
    idx = torch.arange(y.shape[0], device=y.device)
    for step in range(cfg.fit_steps):
        with torch.enable_grad():
            terms = vipaint_bound(prior, post, operator, y, idx, fit_noise(noise, step, cfg), cfg.bound, perceptual)
            opt.zero_grad()
            terms["loss"].sum().backward()
        opt.step()
        sched.step()
        if callback is not None:
            report(callback, step, terms={k: v.detach() for k, v in terms.items()})
    return post.requires_grad_(False)
