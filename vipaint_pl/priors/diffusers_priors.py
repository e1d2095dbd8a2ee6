"""Priors backed by pretrained diffusers models: pixel UNets, latent (VQ / KL) models, Stable Diffusion.

All three load with diffusers' own ``from_pretrained`` from a hub id or a local folder, hold their
networks frozen (``requires_grad=False``, eval mode) and convert any ``prediction_type`` to eps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError, ShapeError
from ..profiling import prior_networks
from ..schedule import NoiseSchedule
from .base import DiffusionPrior, convert_prediction
from .loading import component_class, component_subfolder, load_component, read_layout


# torch.compile's modes (``compile_networks``)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def _dtype(module: nn.Module) -> torch.dtype:
    """The module's parameter dtype: one parameter read (diffusers' ``.dtype`` walks every submodule)."""
    return next(module.parameters()).dtype


def _load_scheduler_config(source: str, layout, **kw) -> dict:
    from diffusers import DDPMScheduler

    sub = component_subfolder(layout, ("scheduler",), "scheduler", source)
    return dict(load_component(DDPMScheduler, source, sub, **kw).config)


class _UNetPrior(DiffusionPrior):
    def __init__(self, unet: nn.Module, scheduler_config: dict):
        super().__init__(NoiseSchedule.from_scheduler_config(scheduler_config))
        self.unet = _freeze(unet)
        self.prediction_type = scheduler_config.get("prediction_type", "epsilon")
        self.gradient_checkpointing, self.decode_batch_size, self.compile_mode = False, None, None

    def set_memory_options(self, gradient_checkpointing: bool = False, decode_batch_size: int | None = None):
        """Trade time for memory: ``gradient_checkpointing`` recomputes the networks' blocks in the backward
        pass instead of keeping their activations; ``decode_batch_size`` (latent priors) decodes that many
        codes at a time, and with checkpointing keeps only one slice's graph alive during the backward pass."""
        if decode_batch_size is not None and decode_batch_size < 1:
            raise ConfigError(f"decode_batch_size must be >= 1, got {decode_batch_size}")
        self.gradient_checkpointing, self.decode_batch_size = bool(gradient_checkpointing), decode_batch_size
        for net in self._networks():
            if getattr(net, "_supports_gradient_checkpointing", False):
                (net.enable_gradient_checkpointing if gradient_checkpointing else net.disable_gradient_checkpointing)()
        return self

    def compile_networks(self, mode: str | None = None, backend: str = "inductor"):
        """``torch.compile`` each network's forward in place (the modules, their weights and checkpoints stay as
        they are; the counting hooks of ``profiling`` still see every call). ``mode``: None (no compilation),
        "default", "reduce-overhead" (CUDA graphs on a GPU: for small, launch-bound networks), "max-autotune" or
        "max-autotune-no-cudagraphs". Each new input shape compiles once, on its first call. ``backend``: torch.compile's
        (the tests trace with "aot_eager", which skips code generation)."""
        if mode is None:
            return self
        if mode not in COMPILE_MODES:
            raise ConfigError(f"unknown compile_mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
        for net in prior_networks(self).values():  # the UNet and an autoencoder's halves, as profiling counts them
            net.forward = torch.compile(net.forward, mode=None if backend != "inductor" else mode, backend=backend)
        self.compile_mode = mode
        return self

    def _networks(self) -> list[nn.Module]:
        return [self.unet]

    def _unet_out(self, z_t: Tensor, t: Tensor) -> Tensor:
        return self.unet(z_t, t).sample

    def _eps(self, z_t: Tensor, t: Tensor) -> Tensor:
        out = self._unet_out(z_t.to(_dtype(self.unet)), t)
        if out.shape[1] != z_t.shape[1]:  # learned-variance models output [eps, var]
            out = out[:, : z_t.shape[1]]
        return convert_prediction(self.prediction_type, out.to(z_t.dtype), z_t, self.schedule, t)


class PixelDiffusersPrior(_UNetPrior):
    """A pixel-space ``UNet2DModel`` + DDPM schedule (e.g. ``google/ddpm-ema-church-256``)."""

    x0_range = (-1.0, 1.0)

    @classmethod
    def from_pretrained(cls, source: str, **kw) -> "PixelDiffusersPrior":
        from diffusers import UNet2DModel

        layout = read_layout(source, kw.get("revision"), kw.get("cache_dir"))
        unet = load_component(UNet2DModel, source, component_subfolder(layout, ("unet",), "unet", source), **kw)
        return cls(unet, _load_scheduler_config(source, layout, **kw))

    def image_channels(self) -> int:
        return int(self.unet.config.in_channels)


class _AutoencodedPrior(_UNetPrior):
    """Shared encode/decode for priors that diffuse the codes of a VQ or KL autoencoder."""

    is_latent = True

    def __init__(self, unet: nn.Module, autoencoder: nn.Module, scheduler_config: dict, latent_scale=None):
        super().__init__(unet, scheduler_config)
        self.autoencoder = _freeze(autoencoder)
        cfg = autoencoder.config
        self.latent_scale = float(latent_scale if latent_scale is not None else getattr(cfg, "scaling_factor", 1.0) or 1.0)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.is_vq = hasattr(autoencoder, "quantize")

    def _networks(self) -> list[nn.Module]:
        return [self.unet, self.autoencoder]

    def encode(self, x: Tensor) -> Tensor:
        enc = self.autoencoder.encode(x.to(_dtype(self.autoencoder)))
        z = enc.latents if self.is_vq else enc.latent_dist.mean
        return (z * self.latent_scale).to(x.dtype)

    def _decode(self, z: Tensor) -> Tensor:
        return self.autoencoder.decode((z / self.latent_scale).to(_dtype(self.autoencoder))).sample.to(z.dtype)

    def decode(self, z: Tensor) -> Tensor:
        n = self.decode_batch_size
        if n is None or z.shape[0] <= n:
            return self._decode(z)
        if self.gradient_checkpointing and torch.is_grad_enabled() and z.requires_grad:
            return torch.cat([checkpoint(self._decode, part, use_reentrant=False) for part in z.split(n)])
        return torch.cat([self._decode(part) for part in z.split(n)])

    def latent_shape(self, image_shape):
        c, h, w = image_shape
        if h % self.downsample or w % self.downsample:
            raise ShapeError(f"image size {h}x{w} is not divisible by the autoencoder's factor {self.downsample}")
        return (int(self.unet.config.in_channels), h // self.downsample, w // self.downsample)

    def image_channels(self) -> int:
        return int(self.autoencoder.config.in_channels)


def _load_autoencoder(source: str, layout, **kw):
    from diffusers import AutoencoderKL, VQModel

    sub = component_subfolder(layout, ("vqvae", "vae"), "autoencoder (vqvae or vae)", source)
    name = component_class(layout, sub)
    cls = VQModel if (name == "VQModel" or (name is None and sub == "vqvae")) else AutoencoderKL
    return load_component(cls, source, sub, **kw)


class LatentDiffusersPrior(_AutoencodedPrior):
    """An unconditional latent diffusion model: ``VQModel`` or ``AutoencoderKL`` + ``UNet2DModel``.

    The latent scale follows diffusers' pipelines: codes are multiplied by the autoencoder's
    ``scaling_factor`` after encoding and divided by it before decoding; ``latent_scale`` overrides it.
    """

    @classmethod
    def from_pretrained(cls, source: str, latent_scale: float | None = None, **kw) -> "LatentDiffusersPrior":
        from diffusers import UNet2DModel

        layout = read_layout(source, kw.get("revision"), kw.get("cache_dir"))
        unet = load_component(UNet2DModel, source, component_subfolder(layout, ("unet",), "unet", source), **kw)
        return cls(unet, _load_autoencoder(source, layout, **kw), _load_scheduler_config(source, layout, **kw),
                   latent_scale)


class StableDiffusionPrior(_AutoencodedPrior):
    """Stable Diffusion 1.x / 2.x: ``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder.

    The prompt (empty by default) is embedded once; with ``guidance_scale`` g != 1 the noise
    prediction is eps_uncond + g (eps_cond - eps_uncond) (classifier-free guidance).
    """

    def __init__(self, unet, autoencoder, scheduler_config, prompt_embeds: Tensor, negative_embeds: Tensor,
                 guidance_scale: float = 1.0, latent_scale=None):
        super().__init__(unet, autoencoder, scheduler_config, latent_scale)
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)
        self.register_buffer("negative_embeds", negative_embeds, persistent=False)
        self.guidance_scale = float(guidance_scale)

    @classmethod
    def from_pretrained(cls, source: str, prompt: str = "", negative_prompt: str = "", guidance_scale: float = 1.0,
                        latent_scale: float | None = None, **kw) -> "StableDiffusionPrior":
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        layout = read_layout(source, kw.get("revision"), kw.get("cache_dir"))
        unet = load_component(UNet2DConditionModel, source, component_subfolder(layout, ("unet",), "unet", source), **kw)
        tokenizer = load_component(CLIPTokenizer, source, component_subfolder(layout, ("tokenizer",), "tokenizer", source),
                                   **{k: v for k, v in kw.items() if k in ("revision", "cache_dir")})
        text_encoder = load_component(CLIPTextModel, source,
                                      component_subfolder(layout, ("text_encoder",), "text encoder", source),
                                      **{k: v for k, v in kw.items() if k in ("revision", "cache_dir")})
        embed = lambda p: embed_prompt(tokenizer, _freeze(text_encoder), p)  # noqa: E731
        return cls(unet, _load_autoencoder(source, layout, **kw), _load_scheduler_config(source, layout, **kw),
                   embed(prompt), embed(negative_prompt), guidance_scale, latent_scale)

    def _unet_out(self, z_t: Tensor, t: Tensor) -> Tensor:
        b = z_t.shape[0]
        cond = self.prompt_embeds.to(_dtype(self.unet)).expand(b, -1, -1)
        if self.guidance_scale == 1.0:
            return self.unet(z_t, t, encoder_hidden_states=cond).sample
        uncond = self.negative_embeds.to(_dtype(self.unet)).expand(b, -1, -1)
        out = self.unet(torch.cat([z_t, z_t]), torch.cat([t, t]), encoder_hidden_states=torch.cat([uncond, cond])).sample
        e_u, e_c = out.chunk(2)
        return e_u + self.guidance_scale * (e_c - e_u)


@torch.no_grad()
def embed_prompt(tokenizer, text_encoder, prompt: str) -> Tensor:
    """CLIP embedding (1, L, D) of a prompt, padded to the tokenizer's max length as SD pipelines do."""
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    return text_encoder(ids)[0].float()
