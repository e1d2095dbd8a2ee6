"""VIPaint's phases 1 and 2: each query's posterior started from the observation (or from guided or resampled
draws), then fitted by Adam on the bound."""

from __future__ import annotations

import torch
from torch import Tensor

from ...schedule import per_sample
from ..common import code_shape, report
from ..guidance import guided_reverse_diffusion, tweedie_guided_reverse_diffusion
from .bound import likelihood_std, reconstruction_loss, vipaint_bound
from .config import OptimConfig, VIPaintConfig
from .posterior import HierarchicalPosterior


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


def fit_posterior(prior, operator, y: Tensor, noise, cfg: VIPaintConfig, callback=None) -> HierarchicalPosterior:
    """Phases 1 and 2: each query's posterior, initialized and fitted for ``cfg.fit_steps`` steps (frozen)."""
    from ...perceptual import build_perceptual

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
