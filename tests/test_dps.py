"""DPS and its latent variants (GML-DPS, PSLD) on the Gaussian-mixture oracle."""

import pytest
import torch

from vipaint_pl.errors import ConfigError
from vipaint_pl.methods.dps import DPSConfig, GMLDPSConfig, PSLDConfig, dps_sample
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.rng import QueryNoise


def test_dps_is_closer_to_the_exact_posterior_than_the_prior(problem):
    prior, op, y, exact = problem
    xs = dps_sample(prior, op, y, QueryNoise(0, ["q"], "dps", 500), DPSConfig(steps=60))
    prior_sw = sliced_wasserstein(prior.sample(500, torch.Generator().manual_seed(1)), exact)
    assert sliced_wasserstein(xs, exact) < 0.2 * prior_sw


def test_gml_dps_equals_dps_when_encoder_and_decoder_are_the_identity(problem):
    prior, op, y, _ = problem
    plain = dps_sample(prior, op, y, QueryNoise(0, ["q"], "g", 50), DPSConfig(steps=20))
    gml = dps_sample(prior, op, y, QueryNoise(0, ["q"], "g", 50), GMLDPSConfig(steps=20))
    torch.testing.assert_close(gml, plain)


def test_psld_is_closer_to_the_exact_posterior_than_the_prior(problem):
    prior, op, y, exact = problem
    xs = dps_sample(prior, op, y, QueryNoise(0, ["q"], "psld", 500), PSLDConfig(steps=60, eta=1.0, step_size=0.5))
    prior_sw = sliced_wasserstein(prior.sample(500, torch.Generator().manual_seed(1)), exact)
    assert sliced_wasserstein(xs, exact) < 0.2 * prior_sw


def test_each_variant_has_its_authors_defaults():
    assert (DPSConfig().steps, DPSConfig().eta, DPSConfig().step_size) == (1000, 1.0, 0.5)
    assert (PSLDConfig().variant, PSLDConfig().eta, PSLDConfig().step_size, PSLDConfig().gamma) == ("psld", 0.0, 1.0, 0.1)
    assert GMLDPSConfig().variant == "gml-dps"
    assert (DPSConfig(variant="psld").eta, DPSConfig(variant="psld").step_size) == (0.0, 1.0)  # no config file needed
    assert (DPSConfig(variant="psld", eta=1.0).eta, DPSConfig(variant="psld", eta=1.0).step_size) == (1.0, 1.0)


@pytest.mark.parametrize("task", ["super_resolution", "inpainting"])
def test_the_psld_glued_image_is_consistent_with_y(task):
    """A(x0 + A^+ (y - A x0)) = y: the observed part of the glued image is y (with A^T in place of A^+ it is
    not, for super-resolution: A A^T = I / f^2)."""
    from vipaint_pl.methods.fidelity import glue
    from vipaint_pl.operators import operator_for_task

    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).float()
    op = operator_for_task(task, mask, **({"factor": 2} if task == "super_resolution" else {}))
    x0, truth = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    y = op(truth)
    torch.testing.assert_close(op(glue(op, x0, y)), y)
    if task == "super_resolution":
        transposed = op.transpose(y) + x0 - op.transpose(op(x0))
        assert (op(transposed) - y).abs().max() > 0.1


def test_a_typo_in_the_variant_or_an_impossible_value_names_the_key():
    with pytest.raises(ConfigError, match=r"DPSConfig.variant must be one of 'dps', 'gml-dps', 'psld'; got 'psdl'"):
        DPSConfig(variant="psdl")
    with pytest.raises(ConfigError, match=r"DPSConfig.steps must be >= 1; got -4"):
        DPSConfig.from_dict({"steps": -4})
    with pytest.raises(ConfigError, match="unknown key.*stepz"):
        DPSConfig.from_dict({"stepz": 4})
    assert DPSConfig.from_dict({"steps": "7", "loss": "squared"}).steps == 7  # command-line strings are read


def test_x0_is_clipped_on_priors_with_a_data_range_only():
    from vipaint_pl.methods.common import predict_x0

    class Wide:
        x0_range = (-1.0, 1.0)

        def predict_x0(self, z, t):
            return 3 * z

    z = torch.linspace(-1, 1, 9, requires_grad=True)
    clipped = predict_x0(Wide(), z, 5, clip=True)
    assert float(clipped.detach().abs().max()) == 1.0
    assert float(predict_x0(Wide(), z, 5, clip=False).detach().abs().max()) == 3.0
    (grad,) = torch.autograd.grad(clipped.sum(), z)
    assert grad.tolist() == [0.0, 0.0, 0.0, 3.0, 3.0, 3.0, 0.0, 0.0, 0.0]  # the clip shapes the gradient
    Wide.x0_range = None  # a latent or Gaussian-mixture prior: nothing to clip
    assert float(predict_x0(Wide(), z, 5, clip=True).detach().abs().max()) == 3.0
    assert DPSConfig().clip_x0


@pytest.mark.parametrize("clip", [False, True])
def test_vipaint_chain_below_ts_clips_x0_as_dps_does(clip):
    # A prior whose data lie outside [-1, 1]: with a data range declared, ``sampling.clip_x0`` keeps every x0 of
    # VIPaint's DPS chain inside it (and the chain's last x0 moves with it); without, x0 leaves it.
    from vipaint_pl.methods.vipaint import BoundConfig, PosteriorSamplingConfig, sample_below
    from vipaint_pl.operators import DenseLinear
    from vipaint_pl.priors.gmm import GaussianMixturePrior
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.full((1, 2), 3.0), torch.full((1, 2), 0.1))
    prior.x0_range = (-1.0, 1.0)
    seen = []
    cfg = PosteriorSamplingConfig(steps=10, corrector_steps=0, clip_x0=clip)
    noise = QueryNoise(0, ["q"], "vipaint", 8)
    z = prior.schedule.alpha(400) * torch.full((8, 2), 3.0)
    sample_below(prior, z.float(), 400, DenseLinear(torch.eye(2)[[0]]), torch.tensor([[3.0]]), noise, cfg,
                 BoundConfig(), callback=lambda i, info: seen.append(info["x0"]))
    largest = max(float(x0.abs().max()) for x0 in seen)
    assert largest == 1.0 if clip else largest > 2.0


@pytest.mark.parametrize("guidance", ["dps", "tweedie"])
def test_vipaint_chain_below_ts_keeps_its_step_spacing(guidance):
    # ``sampling.steps`` unset: ceil(Ts / step_spacing) reverse steps from any Ts (100 at 400, 78 at 310 with the
    # default spacing 4); a number of steps given is kept
    from vipaint_pl.methods.vipaint import BoundConfig, PosteriorSamplingConfig, sample_below
    from vipaint_pl.operators import DenseLinear
    from vipaint_pl.priors.gmm import GaussianMixturePrior
    from vipaint_pl.rng import QueryNoise

    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    assert PosteriorSamplingConfig().steps is None and PosteriorSamplingConfig().step_spacing == 4
    for ts, steps, spacing, expected in [(400, None, 4, 100), (310, None, 4, 78), (310, None, 10, 31), (310, 7, 4, 7)]:
        seen = []
        cfg = PosteriorSamplingConfig(steps=steps, step_spacing=spacing, guidance=guidance, corrector_steps=0)
        sample_below(prior, torch.zeros(2, 2), ts, DenseLinear(torch.eye(2)[[0]]), torch.tensor([[1.0]]),
                     QueryNoise(0, ["q"], "v", 2), cfg, BoundConfig(), callback=lambda i, info: seen.append(info["t"]))
        assert len(seen) == expected and seen[0] == ts
