"""Where VIPaint's error on the exact-posterior grid comes from: the fitted q(z_Ts), or the chain below Ts.

For each problem of one cell of ``bench_gmm.py`` (the same problems and seeds), VIPaint is fitted with one of that
benchmark's rows (the same streams as ``run_method``, so "VIPaint" below is that row's score there), then:
- q(z_Ts) against the exact p(z_Ts | y) (x0 ~ p(x0 | y), z_Ts = alpha x0 + sigma eps; 10k draws): max-SW2, mode
  TV (each draw to the nearest alpha m_k), the stray share (draws nearest a mode of exact weight below 1e-3: a
  mode y rules out; max-SW2 is sensitive to them, 0.5 % at distance 8 alone adds about 0.57), and, inside the heaviest posterior mode, the std of q's draws over
  the exact std along the observed directions (the row space of A) and the unobserved ones (its null space),
  and the offset of their mean in exact stds (the norm over directions, divided by sqrt(d));
- the same for the final samples: VIPaint (the chain below Ts from q's draws: the benchmark's samples) and "exact
  start" (the same chain from exact p(z_Ts | y) draws): what the chain below Ts alone gives.
"exact z_Ts draws": 1,000 exact draws at Ts scored as q's are (that row's floor).
If "exact start" is near the exact floor, the fit is what is missing; if not, the chain is.

    python scripts/diagnose_vipaint_gmm.py --setting inpaint --dx 8 --dy 4 --problems 6

With --weights it reports a mixture's components instead: the exact posterior mode each one sits on, the exact
mass on the modes reached, and the total variation between the sampler's component weights (summed per mode) and
the exact mode weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics

import torch

from bench_gmm import N_EXACT, N_METHOD, PROJECTIONS, ROWS, make_problem, row_config
from vipaint_pl.methods.vipaint import bound as vipaint_bound_module
from vipaint_pl.methods.vipaint import fit_posterior, sample_below, sample_ts
from vipaint_pl.metrics import mode_coverage_tv, sliced_wasserstein
from vipaint_pl.rng import QueryNoise
from vipaint_pl.settings import merge_dicts

BEST_ROW = "VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, sampler x0 variance"


def directions(op, d_x: int):
    """Orthonormal bases (d_x, r) of A's row space (observed) and null space (unobserved)."""
    _, s, vh = torch.linalg.svd(op.as_matrix((d_x,)).double())
    r = int((s > 1e-9).sum())
    return vh[:r].T, vh[r:].T


def in_mode(samples, exact, means):
    """The draws of ``samples`` and ``exact`` nearest the heaviest exact component's mean (by exact share)."""
    near_s, near_e = torch.cdist(samples, means).argmin(1), torch.cdist(exact, means).argmin(1)
    top = torch.bincount(near_e, minlength=means.shape[0]).argmax()
    return samples[near_s == top], exact[near_e == top]


def compare(samples, exact, means, weights, obs, unobs) -> dict:
    """max-SW2, mode TV, and in the heaviest mode: std ratios (observed / unobserved) and the mean's offset."""
    samples, exact = samples.reshape(samples.shape[0], -1).double(), exact.double()
    nearest = torch.cdist(samples, means).argmin(1)
    out = {"max_sw2": sliced_wasserstein(samples, exact, PROJECTIONS, 2, "max"),
           "mode_tv": mode_coverage_tv(samples, means, weights),
           "stray": float((weights[nearest] < 1e-3).double().mean())}
    s, e = in_mode(samples, exact, means)
    if len(s) < 10:
        return out | {"std_obs": float("nan"), "std_unobs": float("nan"), "offset": float("nan")}
    for name, basis in (("obs", obs), ("unobs", unobs)):
        if basis.shape[1]:
            ps, pe = s @ basis, e @ basis
            out[f"std_{name}"] = float((ps.std(0) / pe.std(0)).mean())
    offset = (s.mean(0) - e.mean(0)) / e.std(0)
    return out | {"offset": float(offset.norm() / offset.numel() ** 0.5)}


def fitted(setting: str, d_x: int, d_y: int, p: int, row: str, changes: dict | None = None):
    """Problem ``p`` of a cell, its exact posterior, and the row's VIPaint fitted to it as ``bench_gmm.py`` fits it:
    (seed, prior, op, y, post, cfg, noise, q)."""
    seed = 1000 * d_x + 10 * d_y + p  # as bench_gmm.run_problem
    prior, op, x, y, sigma_y = make_problem(setting, d_x, d_y, seed)
    op.sigma_y = sigma_y
    post = prior.exact_posterior(op, y, sigma_y)
    cfg = row_config("vipaint", merge_dicts(next(r[2] for r in ROWS if r[0] == row), changes or {}), 100)
    noise = QueryNoise(seed, ["0"], "vipaint", N_METHOD)  # run_method's streams
    return seed, prior, op, y, post, cfg, noise, fit_posterior(prior, op, y, noise, cfg)


def run(setting: str, d_x: int, d_y: int, p: int, row: str, changes: dict | None = None) -> dict[str, dict]:
    seed, prior, op, y, post, cfg, noise, q = fitted(setting, d_x, d_y, p, row, changes)
    g = torch.Generator().manual_seed(seed + 7)
    exact_x0 = post.sample(N_EXACT, g)
    obs, unobs = directions(op, d_x)
    ts, idx, sample_noise = q.times[-1], torch.zeros(1, dtype=torch.long), noise.stream("sample")
    a, s = float(prior.schedule.alpha(ts)), float(prior.schedule.sigma(ts))
    exact_z = a * exact_x0 + s * torch.randn(exact_x0.shape, generator=g, dtype=torch.float64)
    z_q = sample_ts(prior, q, op, y, idx, sample_noise, cfg.sampling, cfg.bound)
    z_exact = (a * post.sample(N_METHOD, torch.Generator().manual_seed(seed + 11))
               + s * torch.randn(N_METHOD, d_x, generator=torch.Generator().manual_seed(seed + 12), dtype=torch.float64))
    # VIPaint's chain goes on with the stream sample_ts drew from (as run_method: the benchmark's samples); the
    # exact start's chain has a stream of its own
    vipaint = sample_below(prior, z_q, ts, op, y, sample_noise, cfg.sampling, cfg.bound)
    from_exact = sample_below(prior, z_exact.float(), ts, op, y, noise.stream("below"), cfg.sampling, cfg.bound)
    return {"exact z_Ts draws": compare(z_exact, exact_z, a * post.means, post.weights, obs, unobs),
            "q(z_Ts)": compare(z_q, exact_z, a * post.means, post.weights, obs, unobs),
            "VIPaint": compare(vipaint, exact_x0, post.means, post.weights, obs, unobs),
            "exact start": compare(from_exact, exact_x0, post.means, post.weights, obs, unobs)}


@contextlib.contextmanager
def exact_prior_term(prior):
    """Inside: VIPaint's diffusion term takes the value -log p_Te(z_Te) of the mixture's exact marginal instead of its
    estimate (the weights the estimate should give; a diagnosis only)."""
    original = vipaint_bound_module.diffusion_loss
    vipaint_bound_module.diffusion_loss = lambda _, z, te, *args: -prior.marginal(te).log_prob(z.flatten(1)).to(z.dtype)
    try:
        yield
    finally:
        vipaint_bound_module.diffusion_loss = original


def component_weights(setting: str, d_x: int, d_y: int, p: int, row: str, changes: dict | None = None,
                      streams: tuple[str, ...] = ("sample",), draws: int = 256, exact_prior: bool = False) -> dict:
    """The fitted mixture against the exact posterior's modes: the mode of each component (its top level's x0
    estimate, nearest exact component mean), the sampler's weights (``component_weights: optimal``, ``draws`` draws
    of each random stream in ``streams``; "sample" is the sampler's own) summed per mode, the exact mass on the
    modes reached, and the total variation between the two weightings (per stream; the first stream's is
    "weight_tv"). The same fit weighed with other streams tells Monte Carlo noise from a bias of the bounds;
    ``exact_prior`` weighs it with the exact -log p_Te(z_Te) in place of the diffusion term's estimate."""
    from vipaint_pl.methods.vipaint.bound import component_draws, optimal_mixture_weights

    _, prior, op, y, post, cfg, noise, q = fitted(setting, d_x, d_y, p, row, changes)
    weighing = exact_prior_term(prior) if exact_prior else contextlib.nullcontext()
    mode = torch.cdist(prior.predict_x0(q.mu[0], q.times[0]).double(), post.means).argmin(1)
    reached = torch.zeros_like(post.weights).index_fill_(0, mode, 1.0)
    modes = sorted(set(mode.tolist()))
    tvs, per_modes, bounds = [], [], []
    for stream in streams:
        with weighing:
            energy, log_q = component_draws(prior, q, op, y, torch.zeros(1, dtype=torch.long),
                                            noise.stream(stream), cfg.bound, draws)
        weights = optimal_mixture_weights(energy, log_q)[0].exp()
        per_modes.append(torch.zeros_like(post.weights).index_add_(0, mode, weights))
        tvs.append(float(0.5 * (per_modes[-1] - post.weights).abs().sum()))
        own = (energy + torch.diagonal(log_q, dim1=1, dim2=3).transpose(1, 2)).mean(2)[0]  # each component's bound
        bounds.append([float(own[mode == k].mean()) for k in modes])
    return {"modes": modes, "weight_tv": tvs[0], "weight_tv_per_stream": tvs,
            "exact_mass_reached": float((reached * post.weights).sum()),
            "exact_weights": [float(post.weights[k]) for k in modes],
            "weights_per_stream": [[float(w[k]) for k in modes] for w in per_modes],
            "bounds_per_stream": bounds}  # the mean of the components' own bounds on each mode (nats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", default="inpaint", choices=["svd", "inpaint"])
    parser.add_argument("--dx", type=int, default=8)
    parser.add_argument("--dy", type=int, default=4)
    parser.add_argument("--problems", type=int, default=6)
    parser.add_argument("--first", type=int, default=0, help="index of the first problem of the cell")
    parser.add_argument("--row", default=BEST_ROW, choices=[r[0] for r in ROWS if r[1] == "vipaint"])
    parser.add_argument("--changes", type=json.loads, default=None,
                        help='changes to the row\'s config, as JSON: \'{"sampling": {"lower_draws": 32}}\'')
    parser.add_argument("--weights", action="store_true",
                        help="only the mixture's components against the exact modes (``component_weights``)")
    parser.add_argument("--streams", nargs="+", default=["sample"],
                        help="with --weights: weigh the same fit with draws of these random streams")
    parser.add_argument("--draws", type=int, default=256, help="with --weights: draws per stream")
    parser.add_argument("--exact-prior-term", action="store_true",
                        help="with --weights: weigh with the exact -log p_Te(z_Te) instead of the diffusion term")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    if args.weights:
        tvs, reached = [], []
        for p in range(args.first, args.first + args.problems):
            r = component_weights(args.setting, args.dx, args.dy, p, args.row, args.changes, tuple(args.streams),
                                  args.draws, args.exact_prior_term)
            tvs.append(r["weight_tv"])
            reached.append(r["exact_mass_reached"])
            print(f"problem {p}: modes {r['modes']}, exact mass reached {r['exact_mass_reached']:.3f}, "
                  f"weight TV {r['weight_tv']:.3f}", flush=True)
            if len(args.streams) > 1:
                print(f"  exact weights {[round(w, 3) for w in r['exact_weights']]}; per stream: " + "; ".join(
                    f"{s} TV {tv:.3f} weights {[round(w, 3) for w in ws]} bounds {[round(b, 1) for b in bs]}"
                    for s, tv, ws, bs in zip(args.streams, r["weight_tv_per_stream"], r["weights_per_stream"],
                                             r["bounds_per_stream"])), flush=True)
        print(f"\n{args.setting} {args.dx}/{args.dy}, {args.problems} problems, row {args.row!r}"
              f"{f' with {args.changes}' if args.changes else ''}"
              f"{' (exact prior term)' if args.exact_prior_term else ''}: median weight TV {statistics.median(tvs):.2f}, "
              f"median exact mass reached {statistics.median(reached):.2f}")
        return
    results = []
    for p in range(args.first, args.first + args.problems):
        r = run(args.setting, args.dx, args.dy, p, args.row, args.changes)
        results.append(r)
        print(f"problem {p}: " + "; ".join(f"{k} " + " ".join(f"{m} {v:.3f}" for m, v in r[k].items()) for k in r),
              flush=True)
    print(f"\n{args.setting} {args.dx}/{args.dy}, {args.problems} problems, row {args.row!r}"
          f"{f' with {args.changes}' if args.changes else ''}: medians")
    print("| samples | max-SW2 | mode TV | stray share (mean) | std ratio observed | std ratio unobserved | "
          "mean offset (exact stds) |")
    print("|---|---|---|---|---|---|---|")
    for k in results[0]:
        med = {m: statistics.median(r[k].get(m, float("nan")) for r in results)
               for m in ("max_sw2", "mode_tv", "std_obs", "std_unobs", "offset")}
        stray = statistics.mean(r[k]["stray"] for r in results)
        print(f"| {k} | {med['max_sw2']:.3f} | {med['mode_tv']:.3f} | {stray:.4f} | {med['std_obs']:.2f} | "
              f"{med['std_unobs']:.2f} | {med['offset']:.3f} |")


if __name__ == "__main__":
    main()
