import os
import subprocess
import sys

import pytest
import torch

from vipaint_pl.errors import PriorLoadError
from vipaint_pl.priors import LatentDiffusersPrior, PixelDiffusersPrior, StableDiffusionPrior, load_prior
from tiny_models import save_tiny_latent_prior, save_tiny_pixel_prior, save_tiny_stable_diffusion
from vipaint_pl.schedule import x0_from_eps


@pytest.mark.parametrize("layout", ["root", "pipeline"])
def test_pixel_prior_from_pretrained(tmp_path, layout):
    from diffusers import DDPMScheduler, UNet2DModel

    folder = save_tiny_pixel_prior(tmp_path / "px", layout=layout)
    prior = PixelDiffusersPrior.from_pretrained(str(folder))
    sub = None if layout == "root" else "unet"
    unet = UNet2DModel.from_pretrained(folder, subfolder=sub) if sub else UNet2DModel.from_pretrained(folder)
    z, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 700])
    with torch.no_grad():
        torch.testing.assert_close(prior.predict_eps(z, t), unet(z, t).sample)
        x0 = prior.predict_x0(z, t)
    torch.testing.assert_close(x0, x0_from_eps(prior.schedule, z, unet(z, t).sample.detach(), t))
    sched = DDPMScheduler.from_pretrained(folder, subfolder=None if layout == "root" else "scheduler")
    torch.testing.assert_close(prior.alphas_cumprod.float(), sched.alphas_cumprod)
    assert not any(p.requires_grad for p in prior.parameters())
    prior.train()
    assert not prior.training and not prior.unet.training


@pytest.mark.parametrize("kind", ["vq", "kl"])
def test_latent_prior_from_pretrained(tmp_path, kind):
    folder = save_tiny_latent_prior(tmp_path / kind, kind=kind)
    prior = load_prior("latent", str(folder))
    assert isinstance(prior, LatentDiffusersPrior) and prior.is_latent
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        z = prior.encode(x)
        assert z.shape == (2, *prior.latent_shape((3, 16, 16)))
        raw = prior.autoencoder.encode(x)
        raw = raw.latents if kind == "vq" else raw.latent_dist.mean
        torch.testing.assert_close(z, raw * prior.latent_scale)
        assert prior.decode(z).shape == x.shape
    custom = LatentDiffusersPrior.from_pretrained(str(folder), latent_scale=1.0)
    assert custom.latent_scale == 1.0
    # gradients flow through the decoder to the latent (needed by latent-DPS and VIPaint)
    zz = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(prior.decode(zz).sum(), zz)
    assert g.abs().sum() > 0


def test_stable_diffusion_prior_guidance(tmp_path):
    folder = save_tiny_stable_diffusion(tmp_path / "sd")
    plain = StableDiffusionPrior.from_pretrained(str(folder), prompt="a photo of cat")
    guided = StableDiffusionPrior.from_pretrained(str(folder), prompt="a photo of cat", guidance_scale=4.0)
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([100, 800])
    with torch.no_grad():
        e_c = plain.predict_eps(z, t)
        e_u = plain.unet(z, t, encoder_hidden_states=plain.negative_embeds.expand(2, -1, -1)).sample
        torch.testing.assert_close(guided.predict_eps(z, t), e_u + 4.0 * (e_c - e_u), rtol=1e-4, atol=1e-5)
    assert not torch.equal(plain.prompt_embeds, plain.negative_embeds)


def test_v_prediction_is_converted_to_eps(tmp_path):
    folder = save_tiny_stable_diffusion(tmp_path / "sdv", prediction_type="v_prediction")
    prior = StableDiffusionPrior.from_pretrained(str(folder))
    z, t = torch.randn(1, 4, 8, 8), torch.tensor([500])
    with torch.no_grad():
        v = prior.unet(z, t, encoder_hidden_states=prior.prompt_embeds).sample
    a, s = prior.schedule.alpha(t).float(), prior.schedule.sigma(t).float()
    # With x0 = a z - s v (diffusers' definition), eps must equal (z - a x0) / s.
    x0 = a * z - s * v
    torch.testing.assert_close(prior.predict_eps(z, t), (z - a * x0) / s, rtol=1e-4, atol=1e-5)


def test_missing_folder_and_component_errors(tmp_path):
    with pytest.raises(PriorLoadError, match="does not exist"):
        PixelDiffusersPrior.from_pretrained(str(tmp_path / "nope"))
    folder = save_tiny_pixel_prior(tmp_path / "px", layout="pipeline")
    with pytest.raises(PriorLoadError, match="no autoencoder"):
        LatentDiffusersPrior.from_pretrained(str(folder))
    with pytest.raises(ValueError, match="unknown prior kind"):
        load_prior("gan", str(folder))


def test_unknown_hub_id_offline_names_the_id():
    code = ("from vipaint_pl.priors import PixelDiffusersPrior\n"
            "PixelDiffusersPrior.from_pretrained('nobody/no-such-model-xyz')\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "PriorLoadError" in out.stderr and "nobody/no-such-model-xyz" in out.stderr
    assert "could not be downloaded" in out.stderr


def _compiled_against_eager(folder, compiled):
    """The same eps, decodes and gradients as the eager prior; weights and counting hooks untouched."""
    from vipaint_pl.profiling import NetworkCounter

    eager = load_prior("latent", str(folder))
    assert compiled.compile_mode == "default" and eager.compile_mode is None
    assert set(compiled.state_dict()) == set(eager.state_dict())  # no wrapper in the checkpointable state
    z, t = torch.randn(2, 4, 4, 4, requires_grad=True), torch.tensor([3, 700])
    torch._dynamo.utils.counters.clear()
    with NetworkCounter(compiled) as counter:
        outs = [(p.predict_eps(z, t), p.decode(z)) for p in (eager, compiled)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    grads = [torch.autograd.grad((eps.square().sum() + x.sum()), z)[0] for eps, x in outs]
    torch.testing.assert_close(grads[0], grads[1], atol=1e-4, rtol=1e-4)
    assert counter.evaluations()["denoiser forward"] == 1 and counter.evaluations()["decoder forward"] == 1
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # the UNet and the decoder ran compiled


def test_compiled_networks_trace_to_the_same_values_and_gradients(tmp_path):
    folder = save_tiny_latent_prior(tmp_path / "kl", kind="kl")
    _compiled_against_eager(folder, load_prior("latent", str(folder)).compile_networks("default", backend="aot_eager"))


@pytest.mark.slow
def test_compiled_networks_generate_the_same_values_and_gradients(tmp_path):  # inductor: minutes on a CPU
    folder = save_tiny_latent_prior(tmp_path / "kl", kind="kl")
    _compiled_against_eager(folder, load_prior("latent", str(folder), compile_mode="default"))


def test_unknown_compile_mode_fails_before_loading(tmp_path):
    from vipaint_pl.errors import ConfigError

    with pytest.raises(ConfigError, match="compile_mode 'fast'.*reduce-overhead"):
        load_prior("latent", str(tmp_path / "nothing-here"), compile_mode="fast")
