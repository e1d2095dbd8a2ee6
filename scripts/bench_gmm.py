"""Exact-posterior benchmark: every method's samples against the true posterior of a Gaussian mixture.

Recipe (after Cardoso et al., ICLR 2024), written out so the figures can be compared:
- prior: 25 components, means (-8i, -8j) repeated over the dimension for i, j in {-2..2}, identity
  covariances, weights from squared standard normals (seeded per problem);
- operator (setting "svd"): A = U diag(s) V^T from the SVD of a Gaussian (d_y, d_x) matrix with s
  replaced by sorted U[0, 1] draws; sigma_y = u * max(s), u ~ U[0, 1];
  setting "inpaint": A keeps a random half of the coordinates, sigma_y = 0.05;
- x ~ prior, y = A x + sigma_y n; exact posterior by the closed form (a mixture again);
- diffusion: a standard DDPM schedule, 1000 steps, betas linear 1e-4 .. 2e-2; the exact denoiser;
- methods: every method of ``vipaint_pl.methods.METHODS`` with its defaults, except that a chain of more
  than 100 steps runs 100 (50 with --quick): DPS (zeta 0.5, un-squared norm; and the squared form) and
  Blended 100 DDPM steps; RePaint the same with jump 10 x 10; CoPaint 100 DDIM steps (2 steps on z_t each;
  CoPaint-TT: jump 10 x 2); ReSample 100 DDIM steps (hard data consistency every 10); PSLD 100 DDIM steps;
  RED-diff 100 Adam steps; VIPaint-K: 150 Adam steps on the bound (Gaussian likelihood with the true
  sigma_y, beta 1, 8 Monte Carlo samples), then 40 reverse steps (eta 1) from Ts, without or with DPS
  (zeta 0.5). A method added to the registry gets a row of its own with its defaults;
- metrics: sliced W2 between 1k method samples and 10k exact samples over 100 random projections,
  max over projections (max-SW2, as the published table) and mean over projections (SW2); RMSE per
  coordinate of the sample mean against the exact posterior mean; mode coverage: total variation
  between the share of samples nearest each exact posterior component mean and that component's
  exact weight. Medians over problems (and the interquartile range of max-SW2).

    python scripts/bench_gmm.py --quick                  # one small cell, under a minute
    python scripts/bench_gmm.py --out outputs/bench_gmm  # the full grid: JSON + Markdown table
    python scripts/bench_gmm.py --jobs 16 --out ...      # the same figures, problems spread over 16 processes

With --out, every finished problem is appended to OUT/problems.jsonl at once, and a run with the same --out
skips the problems (and methods) found there: a stopped run is continued by repeating its command. The
figures do not change, since every problem and every method is seeded on its own. --summarize writes the
tables from what OUT/problems.jsonl holds (cells with fewer problems than asked say how many they have).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from run_log import RunLog
from vipaint_pl.methods import METHODS, method_config, run_method
from vipaint_pl.metrics import mode_coverage_tv, sliced_wasserstein
from vipaint_pl.operators import CoordinateSubset, random_dense_operator
from vipaint_pl.priors.gmm import grid_mixture_prior
from vipaint_pl.settings import merge_dicts

N_EXACT, N_METHOD, PROJECTIONS = 10_000, 1_000, 100


def make_problem(setting: str, d_x: int, d_y: int, seed: int):
    """(prior, operator, x, y, sigma_y) of one random problem."""
    g = torch.Generator().manual_seed(seed)
    prior = grid_mixture_prior(d_x, seed=seed)
    if setting == "svd":
        op = random_dense_operator(d_x, d_y, seed=seed + 1)
        sigma_y = float(torch.rand((), generator=g, dtype=torch.float64)) * float(torch.linalg.svdvals(op.matrix).max())
    else:
        keep = torch.randperm(d_x, generator=g)[: d_x // 2].sort().values
        op, sigma_y = CoordinateSubset(keep, d_x), 0.05  # the identity's rows ``keep``, applied as an index
    x = prior.sample(1, g)
    y = op.measure(x, sigma_y, g)
    return prior, op, x, y, sigma_y


# The grid's best VIPaint configuration with 32 lower draws (the rows below that add to it build on it)
LOWER_32 = {
    "k": 2, "components": 8, "init": {"start": "mixed"},
    "optim": {"lr_weights": 0.5, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
    "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
    "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256, "steps": 100,
                 "variance": "unit-data", "lower_draws": 32}}

# The rows: (label, registry name or None for prior samples, changes to the method's defaults).
ROWS = [
    ("prior (reference)", None, {}),
    ("exact posterior (floor)", "exact", {}),  # 1k exact samples of another seed: the metrics' sampling noise
    ("VIPaint-1", "vipaint", {"k": 1}),
    ("VIPaint-2", "vipaint", {"k": 2}),
    ("VIPaint-4", "vipaint", {"k": 4}),
    ("VIPaint-2 + DPS 0.5", "vipaint", {"k": 2, "sampling": {"dps_step_size": 0.5}}),
    ("VIPaint-2 Tweedie", "vipaint", {"k": 2, "bound": {"reconstruction": "tweedie"}, "sampling": {"guidance": "tweedie"}}),
    ("VIPaint-2 mixture", "vipaint", {"k": 2, "components": 8, "init": {"start": "guided"}, "optim": {"lr_weights": 0.5},
                                      "bound": {"reconstruction": "tweedie"}, "sampling": {"guidance": "tweedie"}}),
    ("VIPaint-2 mixture, bound weights", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "guided"}, "optim": {"lr_weights": 0.5},
        "bound": {"reconstruction": "tweedie"}, "sampling": {"guidance": "tweedie", "component_weights": "bound"}}),
    ("VIPaint-2 mixture-16, bound weights", "vipaint", {
        "k": 2, "components": 16, "init": {"start": "guided"}, "optim": {"lr_weights": 0.5},
        "bound": {"reconstruction": "tweedie"}, "sampling": {"guidance": "tweedie", "component_weights": "bound"}}),
    ("VIPaint-2 mixture, optimal weights", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "mixed"}, "optim": {"lr_weights": 0.5},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256}}),
    ("VIPaint-1 mixture, optimal weights", "vipaint", {
        "k": 1, "components": 8, "init": {"start": "mixed"}, "optim": {"lr_weights": 0.5},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256}}),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "mixed"}, "optim": {"lr_weights": 0.5, "lr_gamma": 0.1},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256}}),
    ("VIPaint-2 mixture of 16, optimal weights, gate lr 0.1", "vipaint", {
        "k": 2, "components": 16, "init": {"start": "mixed", "candidates": 128},
        "optim": {"lr_weights": 0.5, "lr_gamma": 0.1},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256}}),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "mixed"},
        "optim": {"lr_weights": 0.5, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256, "steps": 100}}),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, x0 variance", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "mixed"}, "hierarchy_variance": "unit-data",
        "optim": {"lr_weights": 0.5, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256, "steps": 100}}),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, sampler x0 variance", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "mixed"},
        "optim": {"lr_weights": 0.5, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256, "steps": 100,
                     "variance": "unit-data"}}),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, sampler x0 variance, 8 lower draws", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "mixed"},
        "optim": {"lr_weights": 0.5, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256, "steps": 100,
                     "variance": "unit-data", "lower_draws": 8}}),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, sampler x0 variance, 32 lower draws", "vipaint",
     LOWER_32),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, sampler x0 variance, 32 lower draws, 256 candidates",
     "vipaint", merge_dicts(LOWER_32, {"init": {"candidates": 256}})),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, sampler x0 variance, 32 lower draws, Langevin 50",
     "vipaint", merge_dicts(LOWER_32, {"sampling": {"corrector_steps": 50}})),
    ("VIPaint-2 mixture of 16, optimal weights, gate lr 0.1, cosine, sampler x0 variance, 32 lower draws, Langevin 50",
     "vipaint", merge_dicts(LOWER_32, {"components": 16, "init": {"candidates": 128},
                                       "sampling": {"corrector_steps": 50}})),
    # every component fitted with equal weight (optim.lr_weights 0: learned weights starve the gradients of all
    # components but one), all started from 256 resampled prior draws, the prior term's gradient by the score
    ("VIPaint-2 mixture, equal weights in the fit, 256 resampled starts, score gradient, 32 lower draws, Langevin 50",
     "vipaint", merge_dicts(LOWER_32, {"init": {"start": "resampled", "candidates": 256}, "optim": {"lr_weights": 0.0},
                                       "bound": {"prior_gradient": "score"}, "sampling": {"corrector_steps": 50}})),
    # the same with 16 components and 1,024 weighing draws: more modes reached, less noise in the weights
    ("VIPaint-2 mixture of 16, equal weights in the fit, 256 resampled starts, score gradient, 32 lower draws, "
     "Langevin 50, 1024 weighing draws",
     "vipaint", merge_dicts(LOWER_32, {"components": 16, "init": {"start": "resampled", "candidates": 256},
                                       "optim": {"lr_weights": 0.0}, "bound": {"prior_gradient": "score"},
                                       "sampling": {"corrector_steps": 50, "score_samples": 1024}})),
    # the same 8 components with the diffusion term's N(0, I) at T replaced by the prior's own marginal there
    # (bound.terminal "score"): N(0, I) tilts the component bounds against modes far from the origin
    ("VIPaint-2 mixture, equal weights in the fit, 256 resampled starts, score gradient, 32 lower draws, Langevin 50, "
     "score terminal",
     "vipaint", merge_dicts(LOWER_32, {"init": {"start": "resampled", "candidates": 256}, "optim": {"lr_weights": 0.0},
                                       "bound": {"prior_gradient": "score", "terminal": "score"},
                                       "sampling": {"corrector_steps": 50}})),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, sampler x0 variance, gate per element", "vipaint", {
        "k": 2, "components": 8, "init": {"start": "mixed"}, "gamma_per_element": True,
        "optim": {"lr_weights": 0.5, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256, "steps": 100,
                     "variance": "unit-data"}}),
    ("VIPaint-2 mixture, optimal weights, gate lr 0.1, cosine, 300 steps", "vipaint", {
        "k": 2, "components": 8, "fit_steps": 300, "init": {"start": "mixed"},
        "optim": {"lr_weights": 0.5, "lr_gamma": 0.1, "lr_log_std": 0.01, "schedule": "cosine"},
        "bound": {"reconstruction": "tweedie", "time_sampling": "importance"},
        "sampling": {"guidance": "tweedie", "component_weights": "optimal", "score_samples": 256, "steps": 100}}),
    ("DPS", "dps", {}),
    ("DPS (squared)", "dps", {"loss": "squared"}),
    ("Blended (replacement)", "blended", {}),
    ("PSLD", "psld", {}),
    ("RED-diff", "red-diff", {}),
    ("RED-diff-V", "red-diff-v", {}),
    ("RePaint", "repaint", {}),
    ("CoPaint", "copaint", {}),
    ("CoPaint-TT", "copaint-tt", {}),
    ("ReSample", "resample", {}),
    ("DAPS", "daps", {"steps": 200}),  # the authors' 200 annealing steps (not capped at 100)
    # its Langevin chain run step by step, as before its closed form (2026-12-07): the same law, other draws
    ("DAPS, Langevin steps one by one", "daps", {"steps": 200, "mc_exact": False}),
    ("MGPS", "mgps", {"steps": 300}),  # the authors' 300 steps and their "gmm" context (not capped at 100)
]
# VIPaint on the oracle: the exact Gaussian likelihood (the operator's sigma_y), more fit steps and samples
# (and no Langevin corrector unless a row adds one: the rows above it were measured before it became a default; those
# that add one keep its unit-data likelihood width, measured before the width from the denoiser's Jacobian, and run it
# at Ts only, as before it ran at every level)
VIPAINT_SETTINGS = {"fit_steps": 150, "bound": {"likelihood": "gaussian", "likelihood_scale": None, "mc_samples": 8},
                    "sampling": {"steps": 40, "eta": 1.0, "dps_step_size": 0.0, "corrector_steps": 0,
                                 "corrector_variance": "unit-data", "corrector_levels": "last"}}


def rows() -> list[tuple]:
    """ROWS, then a row with its defaults for every registered method that ROWS does not name."""
    named = {name for _, name, _ in ROWS}
    return ROWS + [(name, name, {}) for name in METHODS if name not in named]


def row_config(name: str, changes: dict, chain: int):
    """The method's config on this benchmark: chains capped at ``chain`` steps, then the row's changes."""
    base = VIPAINT_SETTINGS if name == "vipaint" else {}
    cfg = method_config(name, merge_dicts(base, changes))
    if "steps" not in changes and getattr(cfg, "steps", 0) > chain:  # a row that sets its steps keeps them
        cfg = cfg.replace(steps=chain)
    return cfg


def methods(quick: bool) -> dict:
    """label -> run(prior, op, y, seed) for every row."""
    chain = 50 if quick else 100  # 100 reverse steps, as the published GMM runs use

    def sampler(name, cfg):
        return lambda prior, op, y, seed: run_method(name, prior, op, y, N_METHOD, seed, config=cfg)

    out = {}
    for label, name, changes in rows():
        if name is None:
            out[label] = lambda prior, op, y, seed: prior.sample(N_METHOD, torch.Generator().manual_seed(seed))
        elif name == "exact":
            out[label] = lambda prior, op, y, seed: prior.exact_posterior(op, y, op.sigma_y).sample(
                N_METHOD, torch.Generator().manual_seed(seed + 99))
        else:
            out[label] = sampler(name, row_config(name, changes, chain))
    return out


def score(samples: torch.Tensor, post, exact: torch.Tensor) -> dict:
    samples = samples.reshape(samples.shape[0], -1).double()
    if not torch.isfinite(samples).all():
        return {"max_sw2": float("nan"), "sw2": float("nan"), "mean_rmse": float("nan"), "mode_tv": float("nan")}
    return {"max_sw2": sliced_wasserstein(samples, exact, PROJECTIONS, 2, "max"),
            "sw2": sliced_wasserstein(samples, exact, PROJECTIONS, 2, "mean"),
            "mean_rmse": float((samples.mean(0) - post.mean()).pow(2).mean().sqrt()),
            "mode_tv": mode_coverage_tv(samples, post.means, post.weights)}


def run_problem(setting: str, d_x: int, d_y: int, p: int, quick: bool, only=None) -> dict[str, dict]:
    """Every method's scores on problem ``p`` of a cell (seeded by the cell and p alone)."""
    seed = 1000 * d_x + 10 * d_y + p
    prior, op, x, y, sigma_y = make_problem(setting, d_x, d_y, seed)
    op.sigma_y = sigma_y  # the known noise level: VIPaint's Gaussian likelihood reads it
    post = prior.exact_posterior(op, y, sigma_y)
    exact = post.sample(N_EXACT, torch.Generator().manual_seed(seed + 7)).double()
    scores = {}
    for name, fn in methods(quick).items():
        if only and name not in only:
            continue
        start = time.time()
        scores[name] = score(fn(prior, op, y, seed).detach(), post, exact) | {"seconds": time.time() - start}
    print(f"{setting} d_x={d_x} d_y={d_y} problem {p}: " +
          ", ".join(f"{n} {r['max_sw2']:.2f}" for n, r in scores.items()), flush=True)
    return scores


def summarize(per_problem: list[dict[str, dict]]) -> dict:
    """Medians over problems (and the interquartile range of max-SW2) per method."""
    out = {}
    for name in per_problem[0]:
        rs = [scores[name] for scores in per_problem]
        out[name] = {k: float(np.nanmedian([r[k] for r in rs])) for k in rs[0]} | {
            "max_sw2_q25": float(np.nanpercentile([r["max_sw2"] for r in rs], 25)),
            "max_sw2_q75": float(np.nanpercentile([r["max_sw2"] for r in rs], 75))}
    return out


def _one_thread_worker():
    torch.set_num_threads(1)
    torch.set_grad_enabled(True)


def _run_problem_job(job):
    return run_problem(*job)


def run_problems(jobs: list[tuple], workers: int, done=None) -> list[dict]:
    """run_problem on every job, in this process or in ``workers`` processes of one torch thread each
    (problems are seeded on their own, so the figures do not depend on the number of workers). ``done(job,
    scores)`` is called as each job finishes, in the order they finish."""
    done = done or (lambda job, scores: None)
    if workers <= 1:
        results = []
        for job in jobs:
            results.append(run_problem(*job))
            done(job, results[-1])
        return results
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_one_thread_worker) as pool:
        futures = {pool.submit(_run_problem_job, job): i for i, job in enumerate(jobs)}
        results = [None] * len(jobs)
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            done(jobs[i], results[i])
        return results


class ProblemLog(RunLog):
    """OUT/problems.jsonl: one line per finished problem (its cell, index, and every method's scores), so a
    stopped run keeps what it computed and the same command continues it."""

    def __init__(self, folder: str | None):
        super().__init__(folder, "problems.jsonl", ("quick", "setting", "d_x", "d_y", "problem"), "scores")

    def missing(self, job: tuple, names: list[str]) -> list[str]:
        """The methods of ``names`` that have no scores for ``job`` yet."""
        have = self.get(self._key(job))
        return [n for n in names if n not in have]

    def add_job(self, job: tuple, scores: dict[str, dict]) -> None:
        self.add(self._key(job), scores)

    def scores(self, job: tuple, names: list[str]) -> dict[str, dict] | None:
        """The scores of ``names`` on ``job`` in that order, or None if any is missing."""
        have = self.get(self._key(job))
        return {n: have[n] for n in names} if all(n in have for n in names) else None

    @staticmethod
    def _key(job: tuple) -> tuple:
        setting, d_x, d_y, p, quick = job[:5]
        return (quick, setting, d_x, d_y, p)


def markdown(results: list[dict], problems: int | None = None) -> str:
    """The table; a cell with fewer than ``problems`` problems says how many it has after its method's name."""
    lines = ["| setting | d_x | d_y | method | max-SW2 (median [IQR]) | SW2 | mean RMSE | mode TV | s / problem |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cell in results:
        short = problems is not None and cell["problems"] < problems
        for n, m in cell["methods"].items():
            label = f"{n} ({cell['problems']} of {problems} problems)" if short else n
            lines.append(f"| {cell['setting']} | {cell['d_x']} | {cell['d_y']} | {label} | {m['max_sw2']:.2f} "
                         f"[{m['max_sw2_q25']:.2f}, {m['max_sw2_q75']:.2f}] | {m['sw2']:.2f} | {m['mean_rmse']:.2f} | "
                         f"{m['mode_tv']:.2f} | {m['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one cell (svd, d_x 8, d_y 2), 2 problems, short chains")
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 80, 800])
    parser.add_argument("--obs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--settings", nargs="+", default=["svd", "inpaint"], choices=["svd", "inpaint"])
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (names as in the table)")
    parser.add_argument("--out", default=None, help="folder for results.json and results.md")
    parser.add_argument("--jobs", type=int, default=1, help="problems run in this many processes, one torch thread each")
    parser.add_argument("--summarize", action="store_true",
                        help="run nothing: the tables of what OUT/problems.jsonl holds for these cells and methods")
    args = parser.parse_args(argv)
    unknown = set(args.methods or []) - set(methods(True))
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {list(methods(True))}")
    if args.summarize and not args.out:
        parser.error("--summarize reads OUT/problems.jsonl: give --out")
    torch.set_grad_enabled(True)
    cells = [("svd", 8, 2)] if args.quick else (
        [("svd", d, m) for d in args.dims for m in args.obs] * ("svd" in args.settings) +
        [("inpaint", d, d // 2) for d in args.dims] * ("inpaint" in args.settings))
    problems = 2 if args.quick else args.problems
    names = args.methods or list(methods(args.quick))
    log = ProblemLog(args.out)
    start = time.time()
    jobs = [(setting, d_x, d_y, p, args.quick) for setting, d_x, d_y in cells for p in range(problems)]
    todo = [] if args.summarize else [job + (missing,) for job in jobs if (missing := log.missing(job, names))]
    if len(todo) < len(jobs) and not args.summarize:
        print(f"{len(jobs) - len(todo)} of {len(jobs)} problems already in {log.path}: running the rest", flush=True)
    run_problems(todo, args.jobs, done=log.add_job)
    results = []
    for setting, d_x, d_y in cells:
        per_problem = [sc for job in jobs if job[:3] == (setting, d_x, d_y) for sc in [log.scores(job, names)] if sc]
        if per_problem:
            results.append({"setting": setting, "d_x": d_x, "d_y": d_y, "problems": len(per_problem),
                            "methods": summarize(per_problem),
                            "seconds": sum(r["seconds"] for sc in per_problem for r in sc.values())})
    print(f"wall time {time.time() - start:.0f} s with {args.jobs} worker(s)")
    if not results:
        raise SystemExit(f"no finished problems of these cells and methods in {log.path}")
    table = markdown(results, problems)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"date": str(date.today()), "machine": f"{platform.processor() or platform.machine()}, "
                f"{torch.get_num_threads()} torch threads, {args.jobs} worker(s)", "torch": torch.__version__,
                "quick": args.quick,
                "n_exact": N_EXACT, "n_method": N_METHOD, "projections": PROJECTIONS}
        (out / "results.json").write_text(json.dumps({"meta": meta, "cells": results}, indent=2))
        (out / "results.md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
