"""Train the embedded priors from scratch with Lightning: a pixel DDPM and a latent DDPM (KL autoencoder + UNet).

Data: scikit-learn's digits, train split only (``vipaint_pl.datasets.digits``). Everything (sizes,
architectures, steps, learning rates) is read from a YAML config, by default
``configs/train_digits_priors.yaml``. Each model is saved with ``save_pretrained`` in the layout the
loaders read (``vipaint_pl/embedded/<name>``), so ``load_prior`` treats it exactly like a hub model.

    python scripts/train_prior.py                      # all three stages, ~40 min on 2 CPU cores
    python scripts/train_prior.py --stages pixel       # one stage: pixel | autoencoder | latent
    python scripts/train_prior.py --stages stats       # only the pixel data's statistics (data_stats.json)
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vipaint_pl.datasets import digits  # noqa: E402


def cosine_with_warmup(opt, warmup: int, total: int):
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + torch.cos(torch.tensor(torch.pi * (step - warmup) / max(1, total - warmup)))).item()

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def random_shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """Translate each image by up to ``pixels`` in each direction (edge padding): cheap augmentation."""
    if pixels == 0:
        return x
    padded = F.pad(x, (pixels,) * 4, mode="replicate")
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    offsets = torch.randint(0, 2 * pixels + 1, (x.shape[0], 2))
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + h, dx : dx + w]
    return out


class _Training(L.LightningModule):
    """Shared: AdamW with warmup + cosine decay, an EMA copy of the network, the loss history."""

    def __init__(self, net: torch.nn.Module, lr: float, steps: int, ema_decay: float, shift: int):
        super().__init__()
        self.net, self.lr, self.steps, self.ema_decay, self.shift = net, lr, steps, ema_decay, shift
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.history: list[tuple[int, float]] = []

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": cosine_with_warmup(opt, 100, self.steps),
                                                    "interval": "step"}}

    def training_step(self, batch, batch_idx):
        loss = self.loss(random_shift(batch[0], self.shift))
        self.log("loss", loss, prog_bar=True)
        self.history.append((self.global_step, float(loss.detach())))
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        decay = min(self.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.net.parameters()):
                e.lerp_(p, 1 - decay)


class DenoiserTraining(_Training):
    """The DDPM objective: || eps - eps_theta(sqrt(a_t) x + sqrt(1 - a_t) eps, t) ||^2, t uniform."""

    def __init__(self, unet, scheduler, **kw):
        super().__init__(unet, **kw)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone(), persistent=False)

    def loss(self, x):
        t = torch.randint(0, len(self.alphas_cumprod), (x.shape[0],), device=x.device)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = torch.randn_like(x)
        return F.mse_loss(self.net(a.sqrt() * x + (1 - a).sqrt() * eps, t).sample, eps)


class AutoencoderTraining(_Training):
    """KL autoencoder: L1 + MSE reconstruction of the posterior sample, plus a small KL to N(0, I)."""

    def __init__(self, vae, kl_weight: float, **kw):
        super().__init__(vae, **kw)
        self.kl_weight = kl_weight

    def loss(self, x):
        dist = self.net.encode(x).latent_dist
        rec = self.net.decode(dist.sample()).sample
        return F.l1_loss(rec, x) + F.mse_loss(rec, x) + self.kl_weight * dist.kl().mean() / x[0].numel()


def fit(module: _Training, data: torch.Tensor, cfg: dict, name: str, workdir: Path) -> _Training:
    loader = DataLoader(TensorDataset(data), batch_size=cfg["batch_size"], shuffle=True, drop_last=True)
    trainer = L.Trainer(max_steps=cfg["steps"], accelerator="auto", devices=1, logger=False,
                        default_root_dir=str(workdir / name), enable_model_summary=False,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=workdir / name, every_n_train_steps=500)],
                        enable_progress_bar=sys.stderr.isatty(), log_every_n_steps=50)
    start = time.time()
    trainer.fit(module, loader)
    module.seconds = time.time() - start
    return module


def write_history(module: _Training, path: Path) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("step", "loss"), *module.history])


def make_scheduler(cfg: dict):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule=cfg.get("beta_schedule", "linear"),
                         beta_start=cfg.get("beta_start", 1e-4), beta_end=cfg.get("beta_end", 0.02))


def train_pixel(cfg: dict, out: Path, workdir: Path) -> dict:
    from diffusers import UNet2DModel

    torch.manual_seed(cfg["seed"])
    x, _ = digits(cfg["size"], "train")
    unet, sched = UNet2DModel(sample_size=cfg["size"], in_channels=1, out_channels=1, **cfg["unet"]), make_scheduler(cfg)
    module = fit(DenoiserTraining(unet, sched, lr=cfg["lr"], steps=cfg["steps"], ema_decay=cfg["ema_decay"],
                                  shift=cfg["shift"]), x, cfg, "pixel", workdir)
    module.ema.save_pretrained(out)
    sched.save_pretrained(out)
    write_history(module, out / "loss.csv")
    write_data_stats(cfg, out)
    return {"seconds": module.seconds, "parameters": sum(p.numel() for p in unet.parameters())}


def write_data_stats(cfg: dict, out: Path) -> dict:
    """The pixel data's standard deviation over every pixel of the train split (the statistic the autoencoder's
    scaling factor takes from latent codes), in ``data_stats.json``: ``load_prior`` gives it to the prior as its
    ``data_std``, from which VIPaint places its hierarchy's times (``time_grids.snr_matched``)."""
    x, _ = digits(cfg["size"], "train")
    stats = {"data_std": float(x.std())}
    (out / "data_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def train_autoencoder(cfg: dict, out: Path, workdir: Path) -> dict:
    from diffusers import AutoencoderKL

    torch.manual_seed(cfg["seed"])
    x, _ = digits(cfg["size"], "train")
    ae = cfg["autoencoder"]
    vae = AutoencoderKL(in_channels=1, out_channels=1, **ae["model"])
    module = fit(AutoencoderTraining(vae, ae["kl_weight"], lr=ae["lr"], steps=ae["steps"], ema_decay=cfg["ema_decay"],
                                     shift=cfg["shift"]), x, {**cfg, **ae}, "autoencoder", workdir)
    vae = module.ema
    with torch.no_grad():  # scaling_factor: latents of unit standard deviation, as Stable Diffusion does
        std = torch.cat([vae.encode(b).latent_dist.mean for b in x.split(256)]).std()
    vae.register_to_config(scaling_factor=float(1 / std))
    vae.save_pretrained(out / "vae")
    write_history(module, out / "autoencoder_loss.csv")
    return {"seconds": module.seconds, "parameters": sum(p.numel() for p in vae.parameters()),
            "scaling_factor": float(1 / std)}


def train_latent(cfg: dict, out: Path, workdir: Path) -> dict:
    from diffusers import AutoencoderKL, UNet2DModel

    torch.manual_seed(cfg["seed"] + 1)
    x, _ = digits(cfg["size"], "train")
    vae = AutoencoderKL.from_pretrained(out / "vae").eval()
    with torch.no_grad():  # the prior encodes with the posterior mean, so the UNet learns those codes
        z = torch.cat([vae.encode(b).latent_dist.mean for b in x.split(256)]) * vae.config.scaling_factor
    lat = cfg["latent_unet"]
    unet = UNet2DModel(sample_size=z.shape[-1], in_channels=z.shape[1], out_channels=z.shape[1], **lat["model"])
    sched = make_scheduler(cfg)
    module = fit(DenoiserTraining(unet, sched, lr=lat["lr"], steps=lat["steps"], ema_decay=cfg["ema_decay"], shift=0),
                 z, {**cfg, **lat}, "latent", workdir)
    module.ema.save_pretrained(out / "unet")
    sched.save_pretrained(out / "scheduler")
    index = {"_class_name": "LDMPipeline", "_diffusers_version": "0.0", "unet": ["diffusers", "UNet2DModel"],
             "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDPMScheduler"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    write_history(module, out / "loss.csv")
    return {"seconds": module.seconds, "parameters": sum(p.numel() for p in unet.parameters())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "train_digits_priors.yaml"))
    parser.add_argument("--stages", nargs="+", default=["pixel", "autoencoder", "latent"],
                        choices=["pixel", "autoencoder", "latent", "stats"],
                        help="stats: only the pixel prior's data_stats.json (no training)")
    parser.add_argument("--out", default=str(ROOT / "vipaint_pl" / "embedded"))
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "train_priors"), help="checkpoints during training")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    out, workdir = Path(args.out), Path(args.workdir)
    stats_file = out / "training_stats.json"
    stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    for stage in args.stages:
        section = cfg["pixel"] if stage in ("pixel", "stats") else cfg["latent"]
        target = out / ("digits-pixel" if stage in ("pixel", "stats") else "digits-latent")
        target.mkdir(parents=True, exist_ok=True)
        if stage == "stats":
            print(stage, write_data_stats(section, target), flush=True)
            continue
        fn = {"pixel": train_pixel, "autoencoder": train_autoencoder, "latent": train_latent}[stage]
        stats[stage] = fn(section, target, workdir) | {"torch_threads": torch.get_num_threads()}
        stats_file.parent.mkdir(parents=True, exist_ok=True)
        stats_file.write_text(json.dumps(stats, indent=2))
        print(stage, stats[stage], flush=True)


if __name__ == "__main__":
    main()
