"""Quick check of VIPaint on the exact Gaussian-mixture posterior (one problem; not the full benchmark).

Recipe: 25-component grid prior (Cardoso et al. 2024) in d=8, linear DDPM schedule (1000 steps,
betas 1e-4..2e-2); y = 4 observed coordinates (0, 1, 4, 5) + N(0, 0.5^2); Gaussian likelihood with
sigma_y = 0.5, beta = 1, 8 Monte Carlo samples, 150 Adam steps; 1000 samples with 40 reverse steps
(eta 1) from Ts: the paper's form (one-step reconstruction, DPS 0 or 0.5), the Tweedie form (Tweedie
reconstruction term and Tweedie-guided sampler), the same with x0 integrated out in every sampler step
(``sampling.variance: unit-data``) and the mixture (8 components, guided start, Tweedie).
Metric: mean-sliced W2 over 100 random projections, 1000 method vs 10000 exact samples.

    python scripts/oracle_quick.py
    python scripts/oracle_quick.py --variants "x0 integrated out"   # only the variants whose label has this
"""

import argparse

import torch

from vipaint_pl.methods import method_config, run_method
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.operators import DenseLinear
from vipaint_pl.priors.gmm import grid_mixture_prior
from vipaint_pl.settings import merge_dicts

OBS = [0, 1, 4, 5]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="", help="run only the variants whose label contains this")
    args = parser.parse_args(argv)
    prior = grid_mixture_prior(8, seed=0)
    op = DenseLinear(torch.eye(8)[OBS])
    x = prior.sample(1, torch.Generator().manual_seed(3))
    y = op.measure(x, 0.5, torch.Generator().manual_seed(4))
    post = prior.exact_posterior(op, y, 0.5)
    exact = post.sample(10_000, torch.Generator().manual_seed(5)).float()
    std = exact.std(0)
    prior_samples = prior.sample(1000, torch.Generator().manual_seed(9))
    print(f"prior samples: SW2 {sliced_wasserstein(prior_samples, exact):.3f}")
    print("K  variant                     SW2    std ratio observed / unobserved (method / exact)")
    base = {"fit_steps": 150, "bound": {"likelihood": "gaussian", "likelihood_scale": 0.5, "mc_samples": 8},
            "sampling": {"steps": 40, "eta": 1.0, "corrector_steps": 0,  # no corrector unless a variant adds it,
                         "corrector_levels": "last"}}  # and then at Ts only (as measured)
    tweedie = {"bound": {"reconstruction": "tweedie"}, "sampling": {"guidance": "tweedie"}}
    variants = [(k, f"paper, DPS {dps}", {"k": k, "sampling": {"dps_step_size": dps}}) for k in (1, 2, 4)
                for dps in (0.0, 0.5)]
    variants += [(k, "Tweedie", merge_dicts(tweedie, {"k": k})) for k in (1, 2, 4)]
    variants += [(k, "Tweedie, x0 integrated out", merge_dicts(tweedie, {"k": k, "sampling": {"variance": "unit-data"}}))
                 for k in (1, 2, 4)]
    variants += [(2, "mixture (8)", merge_dicts(tweedie, {"k": 2, "components": 8, "init": {"start": "guided"},
                                                     "optim": {"lr_weights": 0.5}}))]
    for k, label, changes in [v for v in variants if args.variants in v[1]]:
        xs = run_method("vipaint", prior, op, y, 1000, config=method_config("vipaint", merge_dicts(base, changes)))
        ratio = xs.std(0) / std
        unobs = [i for i in range(8) if i not in OBS]
        print(f"{k}  {label:26s}  {sliced_wasserstein(xs, exact):.3f}  {ratio[OBS].mean():.2f} / {ratio[unobs].mean():.2f}")


if __name__ == "__main__":
    main()
