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

The method runs in three phases, each a function, used alike by ``vipaint_sample`` (the registry's entry:
scripts, benchmarks, ``SamplerModule``) and by ``VIPaintModule`` (Lightning fit / predict):
    1. ``init_posterior`` (``fit``): parameters from the encoded observation;
    2. ``fit_posterior`` (``fit``): ``vipaint_bound`` (``bound``) minimized by ``make_optimizer``'s Adam + StepLR
       (1. included);
    3. ``sample_posterior`` (``sampling``): ancestral sampling through the hierarchy (``sample_ts``), then guided
       steps from Ts to 0 (``sample_below``).
Modules: ``config`` (the settings), ``posterior`` (the variational family), ``diffusion_term`` (the bound's
-log p(z_Te)), ``bound`` (Eq. 13), ``fit`` (phases 1-2), ``sampling`` (phase 3).
Random streams: "init", "fit/<step>" (``mc_samples`` per query) and "sample" of the query's noise; inside "sample",
"lower/<j>" and "lower/pick" (``sampling.lower_draws``) and "corrector" (``sampling.corrector_steps``).
"""

from .bound import (component_bounds, likelihood_scale, likelihood_std, optimal_mixture_weights, reconstruction_loss,
                    vipaint_bound)
from .config import (PAPER_BETA, PAPER_L1_SCALE, PAPER_SAMPLING, BoundConfig, InitConfig, OptimConfig,
                     PosteriorSamplingConfig, VIPaintConfig)
from .diffusion_term import diffusion_loss
from .fit import fit_noise, fit_posterior, init_posterior, make_optimizer
from .posterior import HierarchicalPosterior
from .sampling import sample_below, sample_posterior, sample_rows, sample_ts, vipaint_sample

__all__ = ["PAPER_BETA", "PAPER_L1_SCALE", "PAPER_SAMPLING", "BoundConfig", "HierarchicalPosterior", "InitConfig",
           "OptimConfig", "PosteriorSamplingConfig", "VIPaintConfig", "component_bounds", "diffusion_loss",
           "fit_noise", "fit_posterior", "init_posterior", "likelihood_scale", "likelihood_std", "make_optimizer",
           "optimal_mixture_weights", "reconstruction_loss", "sample_below", "sample_posterior", "sample_rows",
           "sample_ts", "vipaint_bound", "vipaint_sample"]
