"""VIPaint's settings: the bound's terms, the initialization, the optimizer and the sampler (one
``VIPaintConfig`` per query set; ``sampling`` may change between fit and predict, the rest may not)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...errors import ConfigError
from ...settings import Settings, bounded
from ..time_grids import hierarchy_times


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
