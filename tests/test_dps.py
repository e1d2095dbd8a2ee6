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


def test_a_typo_in_the_variant_or_an_impossible_value_names_the_key():
    with pytest.raises(ConfigError, match=r"DPSConfig.variant must be one of 'dps', 'gml-dps', 'psld'; got 'psdl'"):
        DPSConfig(variant="psdl")
    with pytest.raises(ConfigError, match=r"DPSConfig.steps must be >= 1; got -4"):
        DPSConfig.from_dict({"steps": -4})
    with pytest.raises(ConfigError, match="unknown key.*stepz"):
        DPSConfig.from_dict({"stepz": 4})
    assert DPSConfig.from_dict({"steps": "7", "loss": "squared"}).steps == 7  # command-line strings are read
