"""Writes each embedded prior's model card (README.md) and unconditional sample grid (samples.png).

Sample quality: 64 unconditional samples (250 DDPM steps) are classified by the small CNN of
scripts/evaluate.py; reported is the share it labels with confidence > 0.9 (held-out real digits
score as printed next to it), and the class histogram of the samples.

    python scripts/model_card.py
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from evaluate import PRIORS, train_classifier  # noqa: E402

from vipaint_pl.datasets import digits  # noqa: E402
from vipaint_pl.image_io import save_grid  # noqa: E402
from vipaint_pl.methods.guidance import guided_reverse_diffusion  # noqa: E402
from vipaint_pl.priors import EMBEDDED_DIR, load_prior  # noqa: E402
from vipaint_pl.rng import QueryNoise  # noqa: E402


def loss_summary(path: Path) -> str:
    rows = [(int(s), float(v)) for s, v in list(csv.reader(path.open()))[1:]]
    n = len(rows)
    marks = [0, n // 10, n // 4, n // 2, 3 * n // 4, n - 50]
    cells = [f"step {rows[i][0]}: {sum(v for _, v in rows[i : i + 50]) / len(rows[i : i + 50]):.4f}" for i in marks]
    return "; ".join(cells) + " (mean of 50 steps from each)"


def confident_share(net, x: torch.Tensor) -> tuple[float, list[int]]:
    with torch.no_grad():
        p = net(x.clamp(-1, 1)).softmax(1)
    return float((p.max(1).values > 0.9).float().mean()), torch.bincount(p.argmax(1), minlength=10).tolist()


def main() -> None:
    stats = json.loads((EMBEDDED_DIR / "training_stats.json").read_text())
    for name, (kind, size) in PRIORS.items():
        prior = load_prior(kind, f"embedded:{name}")
        shape = prior.latent_shape((1, size, size)) if prior.is_latent else (1, size, size)
        noise = QueryNoise(0, [name], "card", 64)
        with torch.no_grad():  # 250 unguided DDPM steps from T - 1
            z = guided_reverse_diffusion(prior, noise.randn(shape, torch.zeros(1)), 999, noise, 250, 0.0, 1.0, None)
            x = prior.decode(z).clamp(-1, 1)
        folder = EMBEDDED_DIR / name
        save_grid([list(x[8 * r : 8 * r + 8]) for r in range(8)], folder / "samples.png")
        net, acc = train_classifier(size)
        share, hist = confident_share(net, x)
        real_share, _ = confident_share(net, digits(size, "test")[0])
        if kind == "latent":
            training = (f"- autoencoder (AutoencoderKL, {stats['autoencoder']['parameters']:,} parameters): "
                        f"{stats['autoencoder']['seconds'] / 60:.1f} min; loss (L1 + MSE + 1e-3 KL): "
                        f"{loss_summary(folder / 'autoencoder_loss.csv')}; scaling_factor "
                        f"{stats['autoencoder']['scaling_factor']:.3f}\n"
                        f"- latent UNet (UNet2DModel on 8x8x4 codes, {stats['latent']['parameters']:,} parameters): "
                        f"{stats['latent']['seconds'] / 60:.1f} min; eps-MSE {loss_summary(folder / 'loss.csv')}")
        else:
            training = (f"- UNet2DModel ({stats['pixel']['parameters']:,} parameters): {stats['pixel']['seconds'] / 60:.1f} "
                        f"min; eps-MSE {loss_summary(folder / 'loss.csv')}\n"
                        f"- Data standard deviation over all pixels of the train split: {prior.data_std:.3f} "
                        "(`data_stats.json`, `python scripts/train_prior.py --stages stats`); VIPaint places its "
                        "hierarchy's times by it")
        card = f"""# {name}: an embedded {kind} diffusion prior of handwritten digits ({size}x{size}, greyscale)

Trained by this project from scratch, `python scripts/train_prior.py` with
`configs/train_digits_priors.yaml` (steps, architectures, learning rates), on 2 CPU cores (1 torch thread).
Load it with `load_prior("{kind}", "embedded:{name}")` or `prior: {{kind: {kind}, source: "embedded:{name}"}}`.

- Data: scikit-learn's digits (8x8, from the UCI optical digits set), train split (80 %, seeded
  permutation, `vipaint_pl.datasets.digits`), bilinearly upsampled to {size}x{size}, in [-1, 1]; random
  shifts as augmentation. The held-out 20 % are never seen in training.
- Diffusion: DDPM, 1000 steps, betas linear 1e-4 .. 2e-2, epsilon prediction; EMA weights (0.999).
{training}

## Sample quality

`samples.png`: 64 unconditional samples, 250 DDPM steps. A small CNN trained on the train split
({acc:.3f} accuracy on held-out digits) labels {share:.0%} of the samples with confidence > 0.9
(held-out real digits: {real_share:.0%}). Class histogram of the samples (0-9): {hist}.
Measured by `python scripts/model_card.py`.
"""
        (folder / "README.md").write_text(card)
        print(card)


if __name__ == "__main__":
    main()
