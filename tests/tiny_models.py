"""Tiny random diffusers models saved with ``save_pretrained``: for tests and smoke runs.

They exercise the same ``from_pretrained`` code path a user's hub id takes, with no download.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def _scheduler(num_steps: int = 1000, beta_schedule: str = "linear", prediction_type: str = "epsilon"):
    from diffusers import DDPMScheduler

    beta_end = 0.012 if beta_schedule == "scaled_linear" else 0.02
    beta_start = 0.00085 if beta_schedule == "scaled_linear" else 1e-4
    return DDPMScheduler(num_train_timesteps=num_steps, beta_schedule=beta_schedule, beta_start=beta_start,
                         beta_end=beta_end, prediction_type=prediction_type)


def _tiny_unet(channels: int, size: int, cross_attention_dim: int | None = None):
    from diffusers import UNet2DConditionModel, UNet2DModel

    if cross_attention_dim is None:
        return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                           layers_per_block=1, norm_num_groups=4,
                           down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    return UNet2DConditionModel(sample_size=size, in_channels=channels, out_channels=channels,
                                block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                                cross_attention_dim=cross_attention_dim, attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def _tiny_autoencoder(kind: str, latent_channels: int = 4):
    from diffusers import AutoencoderKL, VQModel

    common = dict(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                  latent_channels=latent_channels, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2)
    if kind == "vq":
        return VQModel(num_vq_embeddings=32, vq_embed_dim=latent_channels, **common)
    return AutoencoderKL(**common)


def _write_index(folder: Path, components: dict[str, tuple[str, str]], pipeline: str) -> None:
    index = {"_class_name": pipeline, "_diffusers_version": "0.0"} | {k: list(v) for k, v in components.items()}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def save_tiny_pixel_prior(folder, size: int = 16, channels: int = 3, layout: str = "root", seed: int = 0,
                          num_train_timesteps: int = 1000) -> Path:
    """A tiny ``UNet2DModel`` + DDPM scheduler, at the repository root (like google/ddpm-*) or as a pipeline."""
    folder = Path(folder)
    torch.manual_seed(seed)
    unet, sched = _tiny_unet(channels, size), _scheduler(num_train_timesteps)
    if layout == "root":
        unet.save_pretrained(folder)
        sched.save_pretrained(folder)
    else:
        unet.save_pretrained(folder / "unet")
        sched.save_pretrained(folder / "scheduler")
        _write_index(folder, {"unet": ("diffusers", "UNet2DModel"), "scheduler": ("diffusers", "DDPMScheduler")},
                     "DDPMPipeline")
    return folder


def save_tiny_latent_prior(folder, kind: str = "vq", size: int = 8, seed: int = 0) -> Path:
    """A tiny latent model: VQModel ('vq', like CompVis/ldm-celebahq-256) or AutoencoderKL ('kl') + UNet2DModel."""
    folder = Path(folder)
    torch.manual_seed(seed)
    name = "vqvae" if kind == "vq" else "vae"
    _tiny_autoencoder(kind).save_pretrained(folder / name)
    _tiny_unet(4, size).save_pretrained(folder / "unet")
    _scheduler(beta_schedule="scaled_linear").save_pretrained(folder / "scheduler")
    _write_index(folder, {"unet": ("diffusers", "UNet2DModel"),
                          name: ("diffusers", "VQModel" if kind == "vq" else "AutoencoderKL"),
                          "scheduler": ("diffusers", "DDPMScheduler")}, "LDMPipeline")
    return folder


def save_tiny_stable_diffusion(folder, size: int = 8, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """A tiny SD-shaped repository: conditional UNet, KL autoencoder, CLIP text encoder and a local tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    _tiny_autoencoder("kl").save_pretrained(folder / "vae")
    _tiny_unet(4, size, cross_attention_dim=16).save_pretrained(folder / "unet")
    _scheduler(beta_schedule="scaled_linear", prediction_type=prediction_type).save_pretrained(folder / "scheduler")
    tok_dir = folder / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    words = ["a", "photo", "of", "cat", "dog", "church", "face"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for w in words:
        vocab[w + "</w>"] = len(vocab)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=12)
    tokenizer.save_pretrained(tok_dir)
    text_cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, max_position_embeddings=12, bos_token_id=0, eos_token_id=1,
                              pad_token_id=1)
    CLIPTextModel(text_cfg).save_pretrained(folder / "text_encoder")
    _write_index(folder, {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
                          "text_encoder": ("transformers", "CLIPTextModel"), "tokenizer": ("transformers", "CLIPTokenizer"),
                          "scheduler": ("diffusers", "DDPMScheduler")}, "StableDiffusionPipeline")
    return folder
