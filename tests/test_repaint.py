"""RePaint: the time-travel schedule and the sampler against diffusers' RePaintPipeline, and on the oracle."""

import pytest
import torch

from vipaint_pl.rng import QueryNoise
from vipaint_pl.errors import ConfigError
from vipaint_pl.methods.repaint import RePaintConfig, repaint_sample
from vipaint_pl.methods.time_grids import ddim_path, jump_schedule, moves, repaint_path
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.operators import Inpainting
from vipaint_pl.priors import load_prior
from tiny_models import save_tiny_pixel_prior
from vipaint_pl.schedule import NoiseSchedule, renoise


def test_jump_schedule_is_diffusers_repaint_schedule():
    from diffusers import RePaintScheduler

    sched = RePaintScheduler()
    sched.set_timesteps(250, jump_length=10, jump_n_sample=10)
    schedule = jump_schedule(250, 10, 10, 1000)
    assert schedule == [int(t) // 4 for t in sched.timesteps]
    # diffusers steps (or renoises up to) index i; the sample then sits at grid position i - 1
    positions = repaint_path(schedule)
    assert positions[0] == 249 and positions[-1] == -1
    assert all(abs(a - b) == 1 for a, b in zip(positions[:-1], positions[1:]))
    assert sum(b > a for a, b in zip(positions[:-1], positions[1:])) == 24 * 9 * 10  # 24 stretches, 9 x 10 back
    assert min(a for a, b in zip(positions[:-1], positions[1:]) if b > a) == -1  # travels up from the data
    # CoPaint reads the indices as positions: it never travels up from the data
    copaint = ddim_path(jump_schedule(250, 10, 2, 1000))
    assert min(a for a, b in zip(copaint[:-1], copaint[1:]) if b > a) == 0 and copaint[-2:] == [0, -1]
    assert len(moves(ddim_path(jump_schedule(250, 10, 1, 1000)), 250, 1000)) == 250  # no jumps: 250 steps


@pytest.mark.parametrize("bad", [dict(steps=0), dict(steps=1001), dict(jump_length=0), dict(jump_n_sample=0)])
def test_bad_jump_settings_are_refused(bad):
    args = dict(steps=250, jump_length=10, jump_n_sample=10) | bad
    with pytest.raises(ConfigError):
        jump_schedule(**args, num_train_timesteps=1000)


def test_renoise_has_the_forward_marginals_in_float64():
    sched = NoiseSchedule.linear(1000)
    x, eps, noise = torch.randn(3, 20000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z_s = sched.alpha(300) * x + sched.sigma(300) * eps
    z_t = renoise(sched, z_s, 300, 640, noise)
    # z_t - alpha_t x is N(0, sigma_t^2) and independent of x
    r = z_t - sched.alpha(640) * x
    assert abs(float(r.std()) - float(sched.sigma(640))) < 0.01 and abs(float((r * x).mean())) < 0.02
    one = renoise(sched, torch.ones(1, dtype=torch.float64), 9, 10, torch.zeros(1, dtype=torch.float64))
    beta = 1 - sched.alphas_cumprod[10] / sched.alphas_cumprod[9]
    torch.testing.assert_close(one, (1 - beta).sqrt().reshape(1))  # one step: sqrt(1 - beta_t)


@pytest.mark.parametrize("eta", [1.0, 0.0])
def test_matches_diffusers_repaint_pipeline_with_the_same_noise(tmp_path, eta):
    """The same samples as diffusers' RePaint without x0 clipping. With it, the two differ on purpose: our step
    is the authors' (guided-diffusion's posterior mean from the clipped x0 and z_t), diffusers' scheduler
    keeps the network's own noise estimate in the DDIM direction term."""
    clip = False
    from diffusers import DDPMScheduler, RePaintPipeline, RePaintScheduler, UNet2DModel

    folder = save_tiny_pixel_prior(tmp_path / "px", num_train_timesteps=40)
    scheduler = RePaintScheduler.from_config(DDPMScheduler.from_pretrained(folder).config, clip_sample=clip)
    pipe = RePaintPipeline(unet=UNet2DModel.from_pretrained(folder), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = (torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    ref = pipe(image=x, mask_image=mask, num_inference_steps=40, eta=eta, jump_length=4, jump_n_sample=3,
               generator=torch.Generator().manual_seed(7), output_type="np").images
    cfg = RePaintConfig(steps=40, jump_length=4, jump_n_sample=3, eta=eta, clip_x0=clip)
    with torch.no_grad():
        z = repaint_sample(load_prior("pixel", str(folder)), Inpainting(mask), mask * x,
                           QueryNoise.from_generators([torch.Generator().manual_seed(7)]), cfg)
    ours = (z / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert abs(ours - ref).max() < 1e-4


def test_repaint_is_closer_to_the_exact_posterior_than_the_prior(problem):
    prior, op, y, exact = problem
    xs = repaint_sample(prior, op, y, QueryNoise(0, ["q"], "rp", 500), RePaintConfig(steps=50, jump_n_sample=5))
    prior_sw = sliced_wasserstein(prior.sample(500, torch.Generator().manual_seed(1)), exact)
    assert sliced_wasserstein(xs, exact) < 0.05 * prior_sw  # measured 0.012
    torch.testing.assert_close(xs[:, [0, 1, 4, 5]], y.expand(500, -1))  # replaced by y at the data
