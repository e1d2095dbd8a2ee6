"""Speed and memory of every method against its network-evaluation floor.

Every method's cost is network evaluations. For each run this script records the wall time, the evaluations
counted per network and direction (``vipaint_pl.profiling.NetworkCounter``), the floor (every counted
evaluation timed alone at its own batch size, summed), the overhead = wall / floor, and the peak memory (CUDA
allocator on a GPU; the process's resident set, sampled every 2 ms, on a CPU). Parts:

- ``methods``: every registered method on both embedded priors, one query of 10 samples, the method's defaults
  with chains capped at ``--chain`` steps (VIPaint: its 100 fit steps, then its sampling steps);
- ``cost``: VIPaint-2 with the paper's settings against DPS with the authors' 1000 steps and PSLD (1000 DDIM
  steps), side by side on the latent prior, one query of 10 samples each;
- ``batch``: VIPaint-2 and DPS with 1, 2, 4, 8 queries of 10 samples (throughput against one query), and
  VIPaint's fit step with 1-16 Monte Carlo samples;
- ``options``: DPS and VIPaint-2 on the latent prior in float32, under bf16 autocast, and with the networks compiled
  (``compile_mode``; ``--compile-mode`` also runs the ``methods`` part compiled);
- ``real-size``: Stable Diffusion 1.5 (UNet + VAE at 512x512), a CompVis LDM (UNet on 64x64x3 VQ latents, 256x256
  images) and a 256x256 pixel DDPM UNet, built from their published diffusers configs with random weights (no
  downloads): one evaluation of each network timed alone, and DPS / VIPaint-2 with a few steps for the overhead;
- ``syncs``: every method on the embedded priors with 5 steps under ``torch.cuda.set_sync_debug_mode``: the
  host-device synchronizations each run makes (each one stalls the GPU until the host queues more work), counted
  per source line of this library (CUDA only);
- ``ops``: every method on the embedded priors (as ``methods``), the operators each run dispatches
  (``vipaint_pl.profiling.OpCounter``; forward and backward, host scalars included) against those of its network
  evaluations replayed alone (``floor_ops``): the difference is the work around the networks, which a GPU pays per
  kernel launch. Counts are exact (no timing noise); a first run (the schedule's coefficients not yet kept) and a
  second;
- ``sd-memory``: the peak memory of Stable Diffusion VIPaint-2 (one fit step with its 4 Monte Carlo samples,
  one sampling step of 10 samples: every step frees its graph, so a run's peak is the larger of the two), with
  and without ``gradient_checkpointing`` + ``decode_batch_size: 1``, each in a fresh process.

    python scripts/bench_speed.py --parts methods cost batch --out outputs/bench_speed
    python scripts/bench_speed.py --parts real-size sd-memory --out outputs/bench_speed_real
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

from vipaint_pl.masks import make_mask
from vipaint_pl.methods import METHODS, method_config, run_method
from vipaint_pl.methods.vipaint import PAPER_SAMPLING
from vipaint_pl.operators import Inpainting
from vipaint_pl.priors import load_prior
from vipaint_pl.priors.diffusers_priors import COMPILE_MODES
from vipaint_pl.profiling import NetworkCounter, OpCounter, PeakMemory
from vipaint_pl.settings import merge_dicts

EMBEDDED = {"digits-latent": ("latent", 32), "digits-pixel": ("pixel", 16)}
SAMPLES = 10
# VIPaint's rows run without the Langevin corrector (``sampling.corrector_steps: 0``), as measured before it became a
# default (2026-11-28): its steps cost what as many DPS steps cost (a denoiser and decoder forward and backward each)
VIPAINT_2 = {"k": 2, "sampling": {"corrector_steps": 0, "steps": 100}}
# the corrector rows were measured with its unit-data likelihood width, before the width from the denoiser's Jacobian,
# at Ts only and with 100 steps below Ts (before the corrector ran at every level, 2026-11-29)
PRE_JACOBIAN = {"k": 2, "sampling": {"corrector_variance": "unit-data", "corrector_levels": "last", "steps": 100}}
ROWS = [("VIPaint-2", "vipaint", VIPAINT_2)] + [(name, name, {}) for name in METHODS if name != "vipaint"]
# DAPS's Langevin chain on a pixel prior as it ran before its closed form (2026-12-07): the steps one by one
ROWS += [("daps, Langevin steps one by one", "daps", {"mc_exact": False})]
# as the papers run them; DAPS's steps one by one differ from its closed form on pixel priors only
PIXEL_ONLY = {"copaint", "copaint-tt", "daps, Langevin steps one by one"}
LATENT_ONLY = {"resample", "psld", "gml-dps"}


def runs_on(prior_name: str, label: str, name: str) -> bool:
    """Whether the row (label, method name) runs on this embedded prior."""
    excluded = PIXEL_ONLY if prior_name == "digits-latent" else LATENT_ONLY
    return name not in excluded and label not in excluded
GB = 1024**3


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def query(prior, size: int, channels: int, queries: int = 1):
    """``queries`` half-plane masks on a grey image: (operator, y)."""
    masks = torch.stack([make_mask("half", size, size, seed=i).expand(channels, -1, -1) for i in range(queries)])
    op = Inpainting(masks.to(device()))
    return op, op(torch.zeros(queries, channels, size, size, device=device()))


def capped(name: str, changes: dict, chain: int):
    cfg = method_config(name, changes)
    if "steps" not in changes and getattr(cfg, "steps", 0) > chain:
        cfg = cfg.replace(steps=chain)
    return cfg


def timed_run(prior, name: str, cfg, op, y, samples: int) -> float:
    dev = device()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run_method(name, prior, op, y, samples, seed=0, names=[f"q{i}" for i in range(y.shape[0])], config=cfg)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(prior, name: str, cfg, op, y, samples: int = SAMPLES, floor: bool = True, repeats: int = 1,
            floor_repeats: int = 5) -> dict:
    """Wall seconds (the fastest of ``repeats`` runs, as the floor takes the fastest of its evaluations),
    evaluations, floor seconds, overhead, peak memory."""
    with NetworkCounter(prior) as counter, PeakMemory(device()) as memory:
        wall = timed_run(prior, name, cfg, op, y, samples)
    for _ in range(repeats - 1):
        wall = min(wall, timed_run(prior, name, cfg, op, y, samples))
    out = {"seconds": wall, "evaluations": counter.evaluations(), "rows": counter.samples_evaluated(),
           "peak_memory_gb": memory.peak_bytes / GB, "memory_increase_gb": memory.increase_bytes / GB}
    if floor:
        out["floor_seconds"] = counter.floor_seconds(floor_repeats)
        out["overhead"] = wall / out["floor_seconds"] if out["floor_seconds"] > 0 else float("nan")
    return out


def embedded(name: str, compile_mode: str | None = None):
    """An embedded prior on the device (its networks compiled with ``compile_mode``), warmed up by a short DPS run
    (first calls allocate), and its image size."""
    kind, size = EMBEDDED[name]
    prior = load_prior(kind, f"embedded:{name}", compile_mode=compile_mode).to(device())
    op, y = query(prior, size, 1)
    run_method("dps", prior, op, y, SAMPLES, config={"steps": 3})
    return prior, size


def method_queries(args, compile_mode: str | None = None):
    """(prior name, prior, operator, y, row label, method name, changes) for every row of ``args.methods`` (all by
    default) that runs on each prior of ``args.priors`` (one half-mask query per prior)."""
    for prior_name in args.priors:
        prior, size = embedded(prior_name, compile_mode)
        op, y = query(prior, size, 1)
        for label, name, changes in ROWS:
            if args.methods and label not in args.methods:
                continue
            if not runs_on(prior_name, label, name):
                continue
            yield prior_name, prior, op, y, label, name, changes


def part_methods(args, log) -> list[dict]:
    rows = []
    for prior_name, prior, op, y, label, name, changes in method_queries(args, args.compile_mode):
        r = {"part": "methods", "prior": prior_name, "method": label, "compile_mode": args.compile_mode}
        try:
            if args.compile_mode:  # compiles every shape the run meets, so that the timed runs do not
                timed_run(prior, name, capped(name, changes, args.chain), op, y, SAMPLES)
            r.update(measure(prior, name, capped(name, changes, args.chain), op, y, repeats=args.repeats))
        except (RuntimeError, ValueError) as err:  # one row's failure keeps the others
            r["error"] = f"{type(err).__name__}: {str(err)[:300]}"
        rows.append(r)
        log(r)
    return rows


def part_ops(args, log) -> list[dict]:
    rows = []
    for prior_name, prior, op, y, label, name, changes in method_queries(args):
        cfg = capped(name, changes, args.chain)
        prior.schedule.clear_memo()
        r = {"part": "ops", "prior": prior_name, "method": label}
        for run in ("first", "second"):
            with NetworkCounter(prior) as counter, OpCounter() as ops:
                run_method(name, prior, op, y, SAMPLES, seed=0, names=["q0"], config=cfg)
            network = counter.floor_ops()
            evaluations = sum(counter.evaluations().values())
            r.update({f"{run}_ops": ops.ops, f"{run}_outside": ops.ops - network,
                      f"{run}_outside_per_evaluation": (ops.ops - network) / max(evaluations, 1)})
        r.update({"network_ops": network, "evaluations": evaluations})
        rows.append(r)
        log(r)
    return rows


def part_cost(args, log) -> list[dict]:
    prior, size = embedded("digits-latent")
    op, y = query(prior, size, 1)
    rows = []
    for label, name, changes in [("VIPaint-2", "vipaint", {"k": 2, "sampling": PAPER_SAMPLING}),
                                 ("DPS (1000 steps)", "dps", {"steps": 1000}),
                                 ("PSLD (1000 steps)", "psld", {"steps": 1000})]:
        r = {"part": "cost", "prior": "digits-latent", "method": label,
             **measure(prior, name, method_config(name, changes), op, y, floor=False)}
        rows.append(r)
        log(r)
    return rows


def part_batch(args, log) -> list[dict]:
    prior, size = embedded("digits-latent")
    rows = []
    for label, name, changes in [("VIPaint-2", "vipaint", VIPAINT_2), ("DPS", "dps", {})]:
        for q in (1, 2, 4, 8):
            op, y = query(prior, size, 1, q)
            r = {"part": "batch", "prior": "digits-latent", "method": label, "queries": q,
                 **measure(prior, name, capped(name, changes, args.chain), op, y, floor=False)}
            r["queries_per_second"] = q / r["seconds"]
            rows.append(r)
            log(r)
    op, y = query(prior, size, 1)
    for s in (1, 2, 4, 8, 16):  # fit steps only: one sampling step
        cfg = method_config("vipaint", merge_dicts(VIPAINT_2, {"fit_steps": 20, "bound": {"mc_samples": s},
                                                               "sampling": {"steps": 1}}))
        r = {"part": "mc", "prior": "digits-latent", "method": "VIPaint-2 fit", "mc_samples": s,
             **measure(prior, "vipaint", cfg, op, y, samples=1, floor=False)}
        r["seconds_per_fit_step"] = r["seconds"] / 20
        rows.append(r)
        log(r)
    return rows


def part_options(args, log) -> list[dict]:
    """DPS (``--chain`` steps) and VIPaint-2 on the latent prior: as is, under bf16 autocast, and with the
    networks compiled (``compile_mode``: ``--compile-mode``, or "default"; the first run, which compiles, is timed
    apart). The three options run in turn, ``--repeats`` rounds, the fastest of each kept."""
    prior, size = embedded("digits-latent")
    compiled, _ = embedded("digits-latent", args.compile_mode or "default")
    op, y = query(prior, size, 1)
    dev = device()
    bf16 = lambda: torch.autocast(dev.type, dtype=torch.bfloat16)  # noqa: E731
    options = {"fp32": (prior, contextlib.nullcontext), "bf16 autocast": (prior, bf16),
               "torch.compile": (compiled, contextlib.nullcontext)}
    rows = []
    for label, name, changes in [("DPS", "dps", {}), ("VIPaint-2", "vipaint", PRE_JACOBIAN)]:
        cfg = capped(name, changes, args.chain)
        first = timed_run(compiled, name, cfg, op, y, SAMPLES)
        seconds = dict.fromkeys(options, float("inf"))
        for _ in range(args.repeats):  # interleaved: a change of machine load reaches every option alike
            for option, (p, context) in options.items():
                with context():
                    seconds[option] = min(seconds[option], timed_run(p, name, cfg, op, y, SAMPLES))
        for option in options:
            r = {"part": "options", "prior": "digits-latent", "method": label, "option": option, "seconds": seconds[option]}
            if option == "torch.compile":
                r |= {"compile_mode": args.compile_mode or "default", "first_run_seconds": first}
            rows.append(r)
            log(r)
    return rows


# ---- real-size architectures, random weights ------------------------------------------------------
def real_size_prior(arch: str):
    """A prior of the published architecture ``arch`` with random weights (seeded), and its image size; the
    weights are made on the device (a GPU initializes them in a fraction of the CPU's time)."""
    with torch.device(device()):
        return _real_size_prior(arch)


def _real_size_prior(arch: str):
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet2DModel, VQModel

    from vipaint_pl.priors.diffusers_priors import LatentDiffusersPrior, PixelDiffusersPrior, StableDiffusionPrior

    torch.manual_seed(0)
    if arch == "sd15":  # runwayml/stable-diffusion-v1-5: unet/, vae/, scheduler/ configs
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2, sample_size=512, scaling_factor=0.18215)
        sched = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
        embeds = torch.randn(1, 77, 768)
        return StableDiffusionPrior(unet, vae, sched, embeds, embeds), 512
    if arch == "ldm-256":  # CompVis/ldm-celebahq-256: unet/, vqvae/, scheduler/ configs
        unet = UNet2DModel(sample_size=64, in_channels=3, out_channels=3, layers_per_block=2,
                           block_out_channels=(224, 448, 672, 896),
                           down_block_types=("DownBlock2D",) + ("AttnDownBlock2D",) * 3,
                           up_block_types=("AttnUpBlock2D",) * 3 + ("UpBlock2D",), attention_head_dim=32)
        vq = VQModel(in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(128, 256, 512),
                     down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                     layers_per_block=2, num_vq_embeddings=8192, vq_embed_dim=3)
        sched = {"num_train_timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195, "beta_schedule": "scaled_linear"}
        return LatentDiffusersPrior(unet, vq, sched), 256
    if arch == "ddpm-256":  # google/ddpm-ema-church-256
        unet = UNet2DModel(sample_size=256, in_channels=3, out_channels=3, layers_per_block=2,
                           block_out_channels=(128, 128, 256, 256, 512, 512),
                           down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4, attention_head_dim=None)
        sched = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}
        return PixelDiffusersPrior(unet, sched), 256
    raise ValueError(arch)


def real_runs(steps: int) -> list[tuple]:
    """(label, method, measured run, warm-up run, bf16 autocast): DPS with ``steps`` steps, VIPaint-2 with
    ``steps`` fit steps (one MC sample) and ``steps`` sampling steps. The warm-up runs the same shapes once, so
    that first-call costs stay out of the figure."""
    vipaint = merge_dicts(PRE_JACOBIAN, {"fit_steps": steps, "bound": {"mc_samples": 1}, "sampling": {"steps": steps}})
    dps = {"steps": steps}
    return [("DPS", "dps", dps, {"steps": 1}, False), ("VIPaint-2", "vipaint", vipaint, vipaint, False),
            ("DPS, bf16 autocast", "dps", dps, {"steps": 1}, True)]


def autocast_if(enabled: bool):
    dev = device()
    if enabled and (dev.type == "cpu" or torch.cuda.is_bf16_supported()):
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def part_real_size(args, log) -> list[dict]:
    rows = []
    for arch in args.archs:
        prior, size = real_size_prior(arch)
        prior = prior.to(device())
        op, y = query(prior, size, 3)
        params = {n: sum(p.numel() for p in m.parameters()) / 1e6 for n, m in
                  (("denoiser", prior.unet), ("autoencoder", getattr(prior, "autoencoder", None))) if m is not None}
        for label, name, changes, warm, bf16 in real_runs(args.real_steps):
            if bf16 and not args.real_bf16:
                continue
            r = {"part": "real-size", "arch": arch, "method": label, "samples": 1, "parameters_m": params}
            try:
                with autocast_if(bf16):
                    run_method(name, prior, op, y, 1, config=method_config(name, warm))
                    r.update(measure(prior, name, method_config(name, changes), op, y, samples=1, floor_repeats=2))
            except (RuntimeError, ValueError) as err:  # one row's failure (e.g. out of memory) keeps the others
                r["error"] = f"{type(err).__name__}: {str(err)[:300]}"
            rows.append(r)
            log(r)
        del prior
    return rows


def sd_memory_child(saving: bool, stage: str, limit_gb: float) -> dict:
    """One stage of SD VIPaint-2 in this process: "fit" (one fit step, 4 MC samples) or "sample" (one DPS-guided
    sampling step of 10 samples). Allocations past ``limit_gb`` of address space fail (a clean error, not the
    machine's out-of-memory killer)."""
    limit = int(limit_gb * GB)
    if device().type == "cuda":  # the allocator refuses past the limit (CUDA needs far more address space)
        torch.cuda.set_per_process_memory_fraction(min(limit / torch.cuda.get_device_properties(0).total_memory, 1.0))
    else:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    prior, size = real_size_prior("sd15")
    if saving:
        prior.set_memory_options(gradient_checkpointing=True, decode_batch_size=1)
    prior = prior.to(device())
    op, y = query(prior, size, 3)
    if stage == "fit":
        cfg, samples = method_config("vipaint", merge_dicts(VIPAINT_2, {"fit_steps": 1, "sampling": {"steps": 1}})), 1
    else:  # the posterior at its start, then one guided step of 10 samples
        cfg, samples = method_config("vipaint", merge_dicts(VIPAINT_2, {"fit_steps": 1, "bound": {"mc_samples": 1},
                                                                        "sampling": {"steps": 1}})), 10
    return measure(prior, "vipaint", cfg, op, y, samples=samples, floor=False)


def part_sd_memory(args, log) -> list[dict]:
    rows = []
    for saving in map(bool, args.memory_saving):
        for stage in ("fit", "sample"):
            cmd = [sys.executable, __file__, "--sd-memory-child", f"{int(saving)},{stage},{args.memory_limit_gb}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            r = {"part": "sd-memory", "memory_saving": saving, "stage": stage}
            if proc.returncode == 0:
                r.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                r["error"] = (proc.stderr.strip().splitlines() or ["killed"])[-1][:300]
                r["returncode"] = proc.returncode
            rows.append(r)
            log(r)
    return rows


def part_syncs(args, log) -> list[dict]:
    """Synchronizing CUDA calls per run, by the innermost ``vipaint_pl`` source line that made them."""
    import traceback
    import warnings

    if device().type != "cuda":
        log({"part": "syncs", "error": "needs a CUDA device"})
        return []
    short = {"steps": 5}
    vipaint_short = merge_dicts(VIPAINT_2, {"fit_steps": 5, "sampling": {"steps": 5}})
    rows = []
    for prior_name in args.priors:
        prior, size = embedded(prior_name)
        op, y = query(prior, size, 1)
        for label, name, changes in ROWS:
            if not runs_on(prior_name, label, name):
                continue
            has_steps = "steps" in method_config(name).__dataclass_fields__
            cfg = method_config(name, vipaint_short if name == "vipaint" else short if has_steps else {})
            sites: dict[str, int] = {}

            def record(message, category, filename, lineno, file=None, line=None):
                if "synchronizing" not in str(message):
                    return
                frames = [f for f in traceback.extract_stack()[:-1] if "vipaint_pl" in f.filename]
                where = f"{frames[-1].filename.split('vipaint_pl/')[-1]}:{frames[-1].lineno}" if frames else filename
                sites[where] = sites.get(where, 0) + 1

            with warnings.catch_warnings():
                warnings.simplefilter("always")
                warnings.showwarning = record
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    run_method(name, prior, op, y, SAMPLES, seed=0, names=["q0"], config=cfg)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            top = dict(sorted(sites.items(), key=lambda kv: -kv[1])[:8])
            r = {"part": "syncs", "prior": prior_name, "method": label, "steps": 5, "syncs": sum(sites.values()),
                 "sites": top}
            rows.append(r)
            log(r)
    return rows


PARTS = {"methods": part_methods, "ops": part_ops, "syncs": part_syncs, "cost": part_cost, "batch": part_batch, "options": part_options, "real-size": part_real_size,
         "sd-memory": part_sd_memory}


def markdown(rows: list[dict]) -> str:
    out = []
    methods = [r for r in rows if r["part"] == "methods"]
    if methods:
        out += ["| prior | method | s / query | floor s | overhead | evaluations (forward / backward) | peak RSS GB |",
                "|---|---|---|---|---|---|---|"]
        for r in methods:
            if "error" in r:
                out.append(f"| {r['prior']} | {r['method']} | {r['error']} | | | | |")
                continue
            ev = ", ".join(f"{k} {v}" for k, v in sorted(r["evaluations"].items()))
            out.append(f"| {r['prior']} | {r['method']} | {r['seconds']:.2f} | {r['floor_seconds']:.2f} | "
                       f"{r['overhead']:.2f} | {ev} | {r['peak_memory_gb']:.2f} |")
    ops = [r for r in rows if r["part"] == "ops"]
    if ops:
        out += ["| prior | method | network evaluations | their operators | operators around them (first run) | "
                "(second run) | per evaluation (second run) |", "|---|---|---|---|---|---|---|"]
        out += [f"| {r['prior']} | {r['method']} | {r['evaluations']} | {r['network_ops']} | {r['first_outside']} | "
                f"{r['second_outside']} | {r['second_outside_per_evaluation']:.1f} |" for r in ops]
    cost = [r for r in rows if r["part"] == "cost"]
    if cost:
        base = {r["method"]: r["seconds"] for r in cost}
        out += ["", "| method | s / query | VIPaint-2 / this |", "|---|---|---|"]
        out += [f"| {r['method']} | {r['seconds']:.1f} | {base['VIPaint-2'] / r['seconds']:.2f} |" for r in cost]
    batch = [r for r in rows if r["part"] == "batch"]
    if batch:
        one = {r["method"]: r["queries_per_second"] for r in batch if r["queries"] == 1}
        out += ["", "| method | queries | s | queries / s | throughput vs 1 query |", "|---|---|---|---|---|"]
        out += [f"| {r['method']} | {r['queries']} | {r['seconds']:.1f} | {r['queries_per_second']:.3f} | "
                f"{r['queries_per_second'] / one[r['method']]:.2f} |" for r in batch]
    mc = [r for r in rows if r["part"] == "mc"]
    if mc:
        out += ["", "| MC samples per fit step | s per fit step |", "|---|---|"]
        out += [f"| {r['mc_samples']} | {r['seconds_per_fit_step']:.3f} |" for r in mc]
    options = [r for r in rows if r["part"] == "options"]
    if options:
        plain = {r["method"]: r["seconds"] for r in options if r["option"] == "fp32"}
        out += ["", "| method | option | s / query | vs fp32 | first run (compiles) s |", "|---|---|---|---|---|"]
        out += [f"| {r['method']} | {r['option']} | {r['seconds']:.2f} | {r['seconds'] / plain[r['method']]:.2f} | "
                f"{r.get('first_run_seconds', float('nan')):.1f} |" for r in options]
    real = [r for r in rows if r["part"] == "real-size"]
    if real:
        out += ["", "| architecture | method | s | floor s | overhead | evaluations | peak memory GB |", "|---|---|---|---|---|---|---|"]
        for r in real:
            if "error" in r:
                out.append(f"| {r['arch']} | {r['method']} | {r['error']} | | | | |")
                continue
            ev = ", ".join(f"{k} {v}" for k, v in sorted(r["evaluations"].items()))
            out.append(f"| {r['arch']} | {r['method']} | {r['seconds']:.1f} | {r['floor_seconds']:.1f} | "
                       f"{r['overhead']:.3f} | {ev} | {r['peak_memory_gb']:.2f} |")
    syncs = [r for r in rows if r["part"] == "syncs"]
    if syncs:
        out += ["", "| prior | method | host-device syncs (5 steps) | most frequent sites |", "|---|---|---|---|"]
        out += [f"| {r['prior']} | {r['method']} | {r['syncs']} | "
                + ", ".join(f"{k} x{v}" for k, v in list(r["sites"].items())[:4]) + " |" for r in syncs]
    mem = [r for r in rows if r["part"] == "sd-memory"]
    if mem:
        out += ["", "| memory saving | stage | s | peak memory GB |", "|---|---|---|---|"]
        out += [f"| {r['memory_saving']} | {r['stage']} | {r.get('seconds', float('nan')):.0f} | "
                f"{r.get('peak_memory_gb', float('nan')):.2f} {r.get('error', '')} |" for r in mem]
    return "\n".join(out)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["methods", "cost", "batch"], choices=list(PARTS))
    parser.add_argument("--priors", nargs="+", default=list(EMBEDDED), choices=list(EMBEDDED))
    parser.add_argument("--methods", nargs="+", default=None, help="only these rows of the methods part")
    parser.add_argument("--archs", nargs="+", default=["sd15", "ldm-256", "ddpm-256"])
    parser.add_argument("--chain", type=int, default=50, help="chains longer than this run this many steps")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method of the methods part (fastest kept)")
    parser.add_argument("--memory-saving", nargs="+", type=int, default=[1, 0], choices=[0, 1],
                        help="sd-memory variants: 1 with gradient checkpointing and decode_batch_size 1, 0 without")
    parser.add_argument("--memory-limit-gb", type=float, default=20.0,
                        help="address-space limit of each sd-memory process (allocations past it fail cleanly)")
    parser.add_argument("--real-steps", type=int, default=2,
                        help="real-size part: DPS steps, and VIPaint's fit and sampling steps (more on a GPU)")
    parser.add_argument("--real-bf16", type=int, default=1, choices=[0, 1],
                        help="real-size part: also DPS under bf16 autocast")
    parser.add_argument("--compile-mode", default=None, choices=list(COMPILE_MODES),
                        help="the methods part with the networks compiled (torch.compile); the options part's mode")
    parser.add_argument("--out", default=None)
    parser.add_argument("--sd-memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sd_memory_child:
        saving, stage, limit = args.sd_memory_child.split(",")
        print(json.dumps(sd_memory_child(bool(int(saving)), stage, float(limit))))
        return []
    log = lambda r: print(json.dumps(r), flush=True)  # noqa: E731
    meta = {"date": str(date.today()), "machine": platform.platform(), "processor": platform.processor(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": str(device()),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    log({"part": "meta", **meta})
    rows = []
    for part in args.parts:
        rows += PARTS[part](args, log)
    md = markdown(rows)
    print(md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
        (out / "results.md").write_text(md + "\n")
    return rows


if __name__ == "__main__":
    main()
