"""Replacement (Blended) on the Gaussian-mixture oracle and on the embedded latent prior."""

import torch

from vipaint_pl.datasets import digits
from vipaint_pl.methods.blended import BlendedConfig, blended_sample, replace_observed
from vipaint_pl.operators import DenseLinear, Inpainting
from vipaint_pl.priors import load_prior
from vipaint_pl.rng import QueryNoise


def test_blended_keeps_the_observation_and_leaves_the_rest_free(problem):
    prior, op, y, exact = problem
    xs = blended_sample(prior, op, y, QueryNoise(0, ["q"], "blend", 300), BlendedConfig(steps=40))
    torch.testing.assert_close(xs[:, [0, 1, 4, 5]], y.expand(300, -1))  # replaced by y at time -1
    assert xs[:, [2, 3, 6, 7]].std(0).min() > 0.5  # unobserved coordinates still vary


def test_replace_observed_is_a_projection_onto_the_noised_observation():
    op = DenseLinear(torch.randn(3, 6, dtype=torch.float64))
    z, x_obs, noise = (torch.randn(4, 6, dtype=torch.float64) for _ in range(3))
    out = replace_observed(lambda v: op.pinv(op(v)), z, x_obs, 0.8, 0.6, noise)
    torch.testing.assert_close(op(out), op(0.8 * x_obs + 0.6 * noise))  # the seen part: noised observation
    torch.testing.assert_close(out - op.pinv(op(out)), z - op.pinv(op(z)))  # the unseen part: untouched


def test_blended_latent_replaces_the_observed_latent_cells_by_the_encoded_observation():
    prior = load_prior("latent", "embedded:digits-latent")
    x, _ = digits(32, "test")
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 14:, :] = 0  # rows 14.. missing: latent rows 0-2 observed, row 3 half observed (counts), 4.. not
    op = Inpainting(mask)
    y = op(x[:1])
    z = blended_sample(prior, op, y, QueryNoise(0, ["q"], "b", 3), BlendedConfig(steps=5))
    with torch.no_grad():
        z_obs = prior.encode(op.pinv(y))
    torch.testing.assert_close(z[:, :, :4], z_obs[:, :, :4].expand(3, -1, -1, -1))
    assert (z[:, :, 4:] - z_obs[:, :, 4:]).abs().mean() > 0.1 and z[:, :, 4:].std(0).mean() > 0.05


def test_blended_latent_takes_a_per_channel_mask(tmp_path):
    """An RGB image's (3, H, W) mask on a 4-channel latent grid: a latent cell is kept where every channel of
    its pixels is observed (the mask's channels once broke the latent mask's shape)."""
    from tiny_models import save_tiny_latent_prior

    prior = load_prior("latent", str(save_tiny_latent_prior(tmp_path / "ldm", kind="kl")))
    mask = torch.ones(1, 3, 16, 16)
    mask[..., 8:, :] = 0
    mask[:, 0, :8, :4] = 0  # red missing in the top-left corner: those cells are not kept
    op = Inpainting(mask)
    y = op(torch.rand(1, 3, 16, 16) * 2 - 1)
    z = blended_sample(prior, op, y, QueryNoise(0, ["q"], "b", 2), BlendedConfig(steps=3))
    with torch.no_grad():
        z_obs = prior.encode(op.pinv(y))
    torch.testing.assert_close(z[:, :, :4, 2:], z_obs[:, :, :4, 2:].expand(2, -1, -1, -1))
    assert (z[:, :, :4, :2] - z_obs[:, :, :4, :2]).abs().mean() > 1e-3
