"""Image benchmark on the embedded digit priors, with the paper's protocol (Table 1).

For each held-out digit and mask, every method draws 10 samples. Reported, as means over images of the
mean over samples: PSNR and SSIM (torchmetrics, images in [0, 1]); ST-LPIPS (shift-tolerant LPIPS,
AlexNet, images upsampled to 64x64; not comparable with published LPIPS); LPIPS (AlexNet, same
upsampling) where its ImageNet weights can be loaded, n/a otherwise; diversity = mean pairwise
RMSE between the samples of one query (pixels in [0, 1]); digit accuracy = the share of samples that a
small CNN, trained here on the train split, assigns to the true digit; distinct digits = how many different
digits that CNN sees among the 10 samples of one query (1: every completion is the same digit); diversity within a
digit = the mean pairwise RMSE over the pairs of samples that CNN reads as the same digit (the spread that is not a
change of digit; n/a where no two samples agree); error / spread = the summed squared error of the samples to the
truth over their summed squared spread, both per missing pixel (``calibration_terms``; 1 for samples that are as
wide as the errors they make, above 1 too narrow, below 1 too wide). Masks (white = missing): small (<= 20 %
missing), random (40-80 %), half (a half-plane at a random angle), seeded per image.

Methods: every method of ``vipaint_pl.methods.METHODS`` with its defaults, chains capped at 250 steps:
VIPaint-2 and VIPaint-4 (100 Adam steps on the bound, then 100 DDPM steps from Ts with DPS 0.5; "paper
sampling": 50 DDIM steps at eta 0.2 with DPS 1),
DPS (the gradient goes through the decoder on the latent prior: latent-DPS), replacement (Blended;
Blended Latent Diffusion on the latent prior), PSLD (250 DDIM steps, omega 1, gamma 0.1), RED-diff
(100 Adam steps, lr 0.25, lambda 0.25, descending times), RePaint (250 steps, jump 10 x 10), CoPaint
(250 DDIM steps, 2 steps on z_t each; CoPaint-TT adds jump 10 x 2) and ReSample (250 DDIM steps instead
of the authors' 500, latent prior only, for its cost), DAPS (the authors' 200 annealing steps) and MGPS (250 of
the authors' 300 steps). A method added to the registry gets a row.

    python scripts/evaluate.py --images 10 --out outputs/evaluate

With --out, every image's metrics go to OUT/images.jsonl as soon as they are measured, and a run with the same
--out skips the images found there: a stopped run is continued by repeating its command (each query's noise
depends on its index only, so the figures do not change).
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
import torch.nn.functional as F
from run_log import RunLog
from torch import nn

from vipaint_pl import rng
from vipaint_pl.datasets import digits
from vipaint_pl.masks import make_mask
from vipaint_pl.methods import METHODS, method_config, run_method
from vipaint_pl.methods.vipaint import PAPER_SAMPLING
from vipaint_pl.metrics import calibration_terms
from vipaint_pl.operators import Inpainting
from vipaint_pl.perceptual import PerceptualDistance
from vipaint_pl.priors import load_prior
from vipaint_pl.settings import merge_dicts

PRIORS = {"digits-latent": ("latent", 32), "digits-pixel": ("pixel", 16)}
MASKS = ("small", "random", "half")
NUM_SAMPLES = 10
IMAGE_KEY = ("prior", "mask", "method", "image")  # the fields of a line of OUT/images.jsonl


# ---- the digit classifier ----------------------------------------------------------------------
def classifier(size: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * (size // 4) ** 2, 10))


def train_classifier(size: int, steps: int = 600, seed: int = 0) -> tuple[nn.Module, float]:
    """A small CNN on the train split (random 1-pixel shifts); returns it and its held-out accuracy."""
    torch.manual_seed(seed)
    x, labels = digits(size, "train")
    net = classifier(size)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(steps):
        i = torch.randint(0, len(x), (128,))
        shift = tuple(torch.randint(-1, 2, (2,)).tolist())
        loss = F.cross_entropy(net(torch.roll(x[i], shift, dims=(2, 3))), labels[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    xt, lt = digits(size, "test")
    with torch.no_grad():
        acc = float((net(xt).argmax(1) == lt).float().mean())
    return net.eval(), acc


# ---- rows: (label, registry name, changes to the method's defaults) ---------------------------------
ROWS = [("VIPaint-2", "vipaint", {"k": 2}), ("VIPaint-4", "vipaint", {"k": 4}),
        ("VIPaint-2 mixture", "vipaint", {"k": 2, "components": 4, "init": {"start": "guided"},
                                          "optim": {"lr_weights": 0.5}, "bound": {"reconstruction": "tweedie"},
                                          "sampling": {"guidance": "tweedie", "eta": 1.0}}),
        ("VIPaint-2 mixture, resampled", "vipaint", {"k": 2, "components": 4, "init": {"start": "resampled"},
                                                     "bound": {"time_sampling": "importance"},
                                                     "sampling": {"component_weights": "optimal"}}),
        ("VIPaint-2 importance-sampled term", "vipaint", {"k": 2, "bound": {"time_sampling": "importance"}}),
        ("VIPaint-2 cosine, std lr 0.01", "vipaint", {"k": 2, "optim": {"schedule": "cosine", "lr_log_std": 0.01}}),
        ("VIPaint-2 Tweedie", "vipaint", {"k": 2, "bound": {"reconstruction": "tweedie"},
                                          "sampling": {"guidance": "tweedie", "eta": 1.0}}),
        ("VIPaint-2 paper sampling", "vipaint", {"k": 2, "sampling": PAPER_SAMPLING}),
        ("VIPaint-2 eta 1", "vipaint", {"k": 2, "sampling": {**PAPER_SAMPLING, "eta": 1.0}}),
        ("VIPaint-2 eta 1, 100 steps, DPS 0.5", "vipaint", {"k": 2, "sampling": {"eta": 1.0, "steps": 100,
                                                                                  "dps_step_size": 0.5}}),
        ("VIPaint-2 paper weighting", "vipaint", {"k": 2, "bound": {"weighting": "paper"}}),
        ("VIPaint-2 8 lower draws", "vipaint", {"k": 2, "sampling": {"lower_draws": 8}}),
        ("VIPaint-2 Langevin 50", "vipaint", {"k": 2, "sampling": {"corrector_steps": 50}}),
        ("VIPaint-2 Langevin 50, score gradient", "vipaint", {"k": 2, "sampling": {"corrector_steps": 50},
                                                              "bound": {"prior_gradient": "score"}}),
        ("VIPaint-2 Langevin 50, mixture of 4 fitted with equal weights", "vipaint", {
            "k": 2, "components": 4, "init": {"start": "resampled"}, "optim": {"lr_weights": 0.0},
            "bound": {"prior_gradient": "score"},
            "sampling": {"corrector_steps": 50, "component_weights": "optimal"}}),
        ("VIPaint-2 Langevin 50, clipped x0", "vipaint", {"k": 2, "sampling": {"corrector_steps": 50,
                                                                                 "clip_x0": True}}),
        ("VIPaint-2 Langevin 100", "vipaint", {"k": 2, "sampling": {"corrector_steps": 100}}),
        ("VIPaint-2 Langevin 50, 200 fit steps", "vipaint", {"k": 2, "fit_steps": 200,
                                                             "sampling": {"corrector_steps": 50}}),
        ("VIPaint-2 Langevin 50, Jacobian variance", "vipaint", {"k": 2, "sampling": {
            "corrector_steps": 50, "corrector_variance": "jacobian"}}),
        ("VIPaint-2 Langevin 20, Jacobian variance", "vipaint", {"k": 2, "sampling": {"corrector_steps": 20}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, mixture of 4 fitted with equal weights", "vipaint", {
            "k": 2, "components": 4, "init": {"start": "resampled"}, "optim": {"lr_weights": 0.0},
            "bound": {"prior_gradient": "score"}, "sampling": {"component_weights": "optimal"}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, times 390 230", "vipaint", {"k": 2, "times": [390, 230]}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times", "vipaint", {"k": 2}),  # the defaults
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, Tweedie bound", "vipaint", {
            "k": 2, "bound": {"reconstruction": "tweedie"}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, Tweedie bound with Jacobian variance",
         "vipaint", {"k": 2, "bound": {"reconstruction": "tweedie", "tweedie_variance": "jacobian"}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, lower std factor 1", "vipaint", {
            "k": 2, "init": {"lower_std_factor": 1.0}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, 78 steps", "vipaint", {
            "k": 2, "sampling": {"steps": 78}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level", "vipaint", {
            "k": 2, "sampling": {"corrector_levels": "all"}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, Tweedie bound with "
         "Jacobian variance, step spacing 4", "vipaint", {
            "k": 2, "bound": {"reconstruction": "tweedie", "tweedie_variance": "jacobian"},
            "sampling": {"corrector_levels": "all", "step_spacing": 4}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4",
         "vipaint", {"k": 2, "sampling": {"corrector_levels": "all", "step_spacing": 4}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4, "
         "mixture of 4 fitted with equal weights", "vipaint", {
            "k": 2, "components": 4, "init": {"start": "resampled"}, "optim": {"lr_weights": 0.0},
            "bound": {"prior_gradient": "score"}, "sampling": {"corrector_levels": "all", "step_spacing": 4,
                                                               "component_weights": "optimal"}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4, "
         "Tweedie steps", "vipaint", {"k": 2, "sampling": {"corrector_levels": "all", "step_spacing": 4,
                                                           "guidance": "tweedie", "guidance_variance": "jacobian"}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4, "
         "corrector scale 0.1", "vipaint", {"k": 2, "sampling": {"corrector_levels": "all", "step_spacing": 4,
                                                                 "corrector_scale": 0.1}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4, "
         "corrector steps 100", "vipaint", {"k": 2, "sampling": {"corrector_levels": "all", "step_spacing": 4,
                                                                 "corrector_steps": 100}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4, "
         "kinetic corrector 0.8", "vipaint", {"k": 2, "sampling": {"corrector_levels": "all", "step_spacing": 4,
                                                                   "corrector_momentum": 0.8}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4, "
         "kinetic corrector 0.8, corrector scale 0.025", "vipaint", {"k": 2, "sampling": {
             "corrector_levels": "all", "step_spacing": 4, "corrector_momentum": 0.8, "corrector_scale": 0.025}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4, "
         "kinetic corrector 0.8 at Ts only", "vipaint", {"k": 2, "sampling": {
             "corrector_levels": "all", "step_spacing": 4, "corrector_momentum": 0.8,
             "corrector_momentum_levels": "last"}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, corrector at Ts only, step spacing 4, "
         "kinetic corrector 0.8", "vipaint", {"k": 2, "sampling": {"corrector_levels": "last", "steps": None,
                                                                   "step_spacing": 4, "corrector_momentum": 0.8}}),
        ("VIPaint-4 Langevin 50, Jacobian variance, SNR-matched times, corrector at every level, step spacing 4",
         "vipaint", {"k": 4, "sampling": {"corrector_levels": "all", "step_spacing": 4}}),
        ("VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times, Tweedie steps", "vipaint", {
            "k": 2, "sampling": {"guidance": "tweedie", "guidance_variance": "jacobian"}}),
        ("DPS", "dps", {}), ("DPS (1000 steps)", "dps", {"steps": 1000}),
        ("Blended (replacement)", "blended", {}), ("PSLD", "psld", {}), ("RED-diff", "red-diff", {}),
        ("RePaint", "repaint", {}), ("CoPaint", "copaint", {}), ("CoPaint-TT", "copaint-tt", {}),
        ("ReSample", "resample", {}), ("DAPS", "daps", {}), ("MGPS", "mgps", {})]
# The VIPaint rows above "VIPaint-2 Langevin 50" were measured before the corrector became a default (2026-11-28):
# they keep it off, so that their figures in BENCHMARKS.md stay reproducible. The "Langevin 50" rows were measured
# before its likelihood width came from the denoiser's Jacobian (later the same day) and keep the unit-data width;
# "VIPaint-2 Langevin 50, Jacobian variance" was the default until "SNR-matched times" (below).
PRE_CORRECTOR, PRE_JACOBIAN = {"sampling": {"corrector_steps": 0}}, {"sampling": {"corrector_variance": "unit-data"}}
ROWS = [(label, name, changes if name != "vipaint" or "Jacobian" in label else
         merge_dicts(PRE_JACOBIAN if label.startswith("VIPaint-2 Langevin 50") else PRE_CORRECTOR, changes))
        for label, name, changes in ROWS]
# Every VIPaint row but the "SNR-matched" ones was measured with the official times on every prior (before
# 2026-11-29); "VIPaint-2 Langevin 50, Jacobian variance, SNR-matched times" is the default since.
ROWS = [(label, name, changes if name != "vipaint" or "SNR-matched" in label else
         merge_dicts({"snr_matched_times": False}, changes)) for label, name, changes in ROWS]
# Every VIPaint row but the "corrector at every level" ones was measured with the corrector at Ts only and 100 steps
# below Ts on every prior (before the evening of 2026-11-29); "..., corrector at every level, step spacing 4" is the
# default since (BENCHMARKS.md, "Spread against fidelity")
PRE_LEVELS = {"sampling": {"corrector_levels": "last", "steps": 100}}
ROWS = [(label, name, changes if name != "vipaint" or "corrector at every level" in label else
         merge_dicts(PRE_LEVELS, changes)) for label, name, changes in ROWS]
ROWS += [(name, name, {}) for name in METHODS if name not in {r[1] for r in ROWS}]
DEFAULT_ROWS = [r[0] for r in ROWS if r[0] != "DPS (1000 steps)"]  # the 1000-step chain: for timing, on request
CHAIN = 250
LATENT_ONLY = {"resample"}  # published for latent priors only (and costly): not run on the pixel prior


def run_row(name: str, changes: dict, prior, mask, y, qname: str) -> torch.Tensor:
    """NUM_SAMPLES decoded samples (N, C, H, W) of one method for one query, with the query's own noise."""
    cfg = method_config(name, changes)
    if "steps" not in changes and getattr(cfg, "steps", 0) > CHAIN:  # a row that sets its steps keeps them
        cfg = cfg.replace(steps=CHAIN)
    z = run_method(name, prior, Inpainting(mask[None]), y, NUM_SAMPLES, seed=0, names=[qname], config=cfg)
    return prior.decode(z)


# ---- metrics -------------------------------------------------------------------------------------
def lpips_or_none():
    """LPIPS (AlexNet) when its ImageNet backbone weights can be loaded here; None (reported as n/a) otherwise."""
    from vipaint_pl.errors import ConfigError

    try:
        return PerceptualDistance("lpips")
    except ConfigError as exc:
        print(f"LPIPS not reported: {exc}")
        return None


def image_metrics(samples: torch.Tensor, truth: torch.Tensor, label: int, net: nn.Module, stlpips, lpips=None,
                  missing: torch.Tensor | None = None) -> dict:
    """The metrics of one query's samples against its truth. Given the ``missing`` pixels (H, W; 1 = missing), also
    the squared error to the truth and the squared spread between samples there: for samples and a truth drawn
    from one posterior both estimate 2 tr Cov / n_missing (``calibration_terms``)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    s01, t01 = (samples.clamp(-1, 1) + 1) / 2, ((truth + 1) / 2).expand_as(samples)
    psnr = peak_signal_noise_ratio(s01, t01, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(s01, t01, data_range=1.0, reduction="none")
    up = lambda v: F.interpolate(v, size=(64, 64), mode="bilinear", align_corners=False)  # noqa: E731
    perceptual = stlpips(up(samples.clamp(-1, 1)), up(truth.expand_as(samples)))
    flat = s01.flatten(1)
    pair = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    n = flat.shape[0]
    with torch.no_grad():
        predicted = net(samples.clamp(-1, 1)).argmax(1)
    acc = (predicted == label).float().mean()
    lp = float(lpips(up(samples.clamp(-1, 1)), up(truth.expand_as(samples))).mean()) if lpips else float("nan")
    same = (predicted[:, None] == predicted[None, :]) & ~torch.eye(n, dtype=torch.bool)
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "st_lpips": float(perceptual.mean()), "lpips": lp,
            "diversity": float(pair.sum() / (n * (n - 1))), "digit_accuracy": float(acc),
            "distinct_digits": float(predicted.unique().numel()),
            "diversity_same_digit": float(pair[same].mean()) if same.any() else float("nan")} | (
        calibration_terms(s01, t01, missing) if missing is not None else {})


def cell_mean(values: list[float]) -> float:
    """The mean over a cell's images of a metric, over the images that have a value (NaN if none has)."""
    present = [v for v in values if v == v]
    return float(np.mean(present)) if present else float("nan")


def evaluate_prior(prior_name: str, images: int, methods: list[str], log, first: int = 0, masks=MASKS,
                   done: RunLog | None = None) -> dict:
    """Every cell (mask kind, method) of one prior; the images already in ``done`` are not run again."""
    done = done or RunLog(None, "images.jsonl", IMAGE_KEY, "metrics")
    kind, size = PRIORS[prior_name]
    prior = load_prior(kind, f"embedded:{prior_name}")
    net, clean_acc = train_classifier(size)
    stlpips, lpips = PerceptualDistance("st-lpips"), lpips_or_none()
    x, labels = digits(size, "test")
    table: dict = {"classifier_test_accuracy": clean_acc, "cells": {}}
    for mask_kind in masks:
        for label, name, changes in ROWS:
            if label not in methods or (name in LATENT_ONLY and not prior.is_latent):
                continue
            rows = []
            for i in range(first, first + images):
                qname = f"{prior_name}/{i}"
                if finished := done.get((prior_name, mask_kind, label, i)):
                    rows.append(finished)
                    continue
                mask = make_mask(mask_kind, size, size, np.random.default_rng(rng.query_seed(0, qname, mask_kind)))
                y = Inpainting(mask[None])(x[i : i + 1])
                start = time.time()
                samples = run_row(name, changes, prior, mask, y, qname).detach().float()
                seconds = time.time() - start
                metrics = image_metrics(samples, x[i : i + 1], int(labels[i]), net, stlpips, lpips, 1 - mask)
                rows.append(metrics | {"seconds": seconds})
                done.add((prior_name, mask_kind, label, i), rows[-1])
            keys = dict.fromkeys(k for r in rows for k in r)  # rows logged before a metric existed lack it
            table["cells"][f"{mask_kind}/{label}"] = {k: cell_mean([r.get(k, np.nan) for r in rows]) for k in keys}
            if all("squared_error" in r and "squared_spread" in r for r in rows):  # 1: calibrated (calibration_terms)
                table["cells"][f"{mask_kind}/{label}"]["error_over_spread"] = (
                    sum(r["squared_error"] for r in rows) / sum(r["squared_spread"] for r in rows))
            table.setdefault("per_image", {})[f"{mask_kind}/{label}"] = rows
            log(f"{prior_name} {mask_kind} {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                            table["cells"][f"{mask_kind}/{label}"].items()))
    return table


def markdown(results: dict) -> str:
    lines = ["| prior | mask | method | PSNR | SSIM | ST-LPIPS | LPIPS | diversity | digit acc. | distinct digits | "
             "diversity within a digit | error / spread | s / image |", "|" + "---|" * 13]
    for prior, table in results.items():
        for key, m in table["cells"].items():
            mask, method = key.split("/", 1)
            lp = m.get("lpips", float("nan"))
            lp = "n/a" if lp != lp else f"{lp:.3f}"
            distinct = f"{m['distinct_digits']:.2f}" if "distinct_digits" in m else "n/a"  # not in runs before it
            within = m.get("diversity_same_digit", float("nan"))
            within = "n/a" if within != within else f"{within:.3f}"
            calibration = f"{m['error_over_spread']:.2f}" if "error_over_spread" in m else "n/a"
            lines.append(f"| {prior} | {mask} | {method} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['st_lpips']:.3f} | "
                         f"{lp} | {m['diversity']:.3f} | {m['digit_accuracy']:.2f} | {distinct} | {within} | "
                         f"{calibration} | {m['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10, help="held-out digits per mask kind")
    parser.add_argument("--priors", nargs="+", default=list(PRIORS), choices=list(PRIORS))
    parser.add_argument("--methods", nargs="+", default=DEFAULT_ROWS, choices=[r[0] for r in ROWS])
    parser.add_argument("--masks", nargs="+", default=list(MASKS), choices=list(MASKS))
    parser.add_argument("--first", type=int, default=0,
                        help="index of the first held-out digit: --first 10 --images 10 runs digits 10-19, so a run can "
                             "be extended (each query's noise depends on its index only; see scripts/merge_evaluate.py)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    done = RunLog(args.out, "images.jsonl", IMAGE_KEY, "metrics")
    if done.values:
        print(f"{len(done.values)} images already in {done.path}: they are not run again", flush=True)
    results = {p: evaluate_prior(p, args.images, args.methods, lambda s: print(s, flush=True), args.first,
                                 args.masks, done) for p in args.priors}
    table = markdown(results)
    print(table)
    for p, r in results.items():
        print(f"{p}: classifier accuracy on clean held-out digits {r['classifier_test_accuracy']:.3f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"date": str(date.today()), "machine": platform.machine(), "torch_threads": torch.get_num_threads(),
                "images": args.images, "first": args.first, "masks": args.masks, "samples": NUM_SAMPLES}
        (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        (out / "results.md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    main()
