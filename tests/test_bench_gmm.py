"""The exact-posterior benchmark's pieces: DPS and replacement on the Gaussian-mixture oracle, the quick cell."""

import sys
from pathlib import Path

import pytest
import torch

from vipaint_pl import rng
from vipaint_pl.methods.blended import BlendedConfig, blended_sample, replace_observed
from vipaint_pl.methods.dps import DPSConfig, dps_sample
from vipaint_pl.metrics import sliced_wasserstein
from vipaint_pl.operators import DenseLinear

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def test_dps_is_closer_to_the_exact_posterior_than_the_prior(problem):
    prior, op, y, exact = problem
    xs = dps_sample(prior, op, y, (8,), 500, rng.generators(0, ["q"], "dps"), DPSConfig(steps=60))
    prior_sw = sliced_wasserstein(prior.sample(500, torch.Generator().manual_seed(1)), exact)
    assert sliced_wasserstein(xs, exact) < 0.2 * prior_sw


def test_blended_keeps_the_observation_and_leaves_the_rest_free(problem):
    prior, op, y, exact = problem
    xs = blended_sample(prior, op, y, (8,), 300, rng.generators(0, ["q"], "blend"), BlendedConfig(steps=40))
    torch.testing.assert_close(xs[:, [0, 1, 4, 5]], y.expand(300, -1))  # replaced by y at time -1
    assert xs[:, [2, 3, 6, 7]].std(0).min() > 0.5  # unobserved coordinates still vary


def test_replace_observed_is_a_projection_onto_the_noised_observation():
    op = DenseLinear(torch.randn(3, 6, dtype=torch.float64))
    z, x_obs, noise = (torch.randn(4, 6, dtype=torch.float64) for _ in range(3))
    out = replace_observed(lambda v: op.pinv(op(v)), z, x_obs, 0.8, 0.6, noise)
    torch.testing.assert_close(op(out), op(0.8 * x_obs + 0.6 * noise))  # the seen part: noised observation
    torch.testing.assert_close(out - op.pinv(op(out)), z - op.pinv(op(z)))  # the unseen part: untouched


def test_quick_cell_vipaint_and_dps_beat_prior_samples(capsys):
    import bench_gmm

    cell = bench_gmm.main(["--quick"])[0]["methods"]
    ref = cell["prior (reference)"]["max_sw2"]
    for name in ("VIPaint-2", "VIPaint-4", "DPS"):
        assert cell[name]["max_sw2"] < 0.25 * ref, (name, cell[name], ref)
    assert "| svd | 8 | 2 | DPS |" in capsys.readouterr().out


@pytest.mark.parametrize("times,ratio", [("descending", 0.1), ("random", 0.3)])  # measured 0.06 and 0.20
def test_red_diff_is_closer_to_the_exact_posterior_than_the_prior(problem, times, ratio):
    from vipaint_pl.methods.red_diff import REDDiffConfig, red_diff_sample

    prior, op, y, exact = problem
    xs = red_diff_sample(prior, op, y, (8,), 300, rng.generators(0, ["q"], "red"), REDDiffConfig(times=times))
    prior_sw = sliced_wasserstein(prior.sample(300, torch.Generator().manual_seed(1)), exact)
    sw = sliced_wasserstein(xs, exact)
    assert sw < ratio * prior_sw, (sw, prior_sw)
    assert (xs[:, [0, 1, 4, 5]] - y).abs().mean() < 1.0  # the observed coordinates follow y


def test_gml_dps_equals_dps_when_encoder_and_decoder_are_the_identity(problem):
    prior, op, y, _ = problem
    plain = dps_sample(prior, op, y, (8,), 50, rng.generators(0, ["q"], "g"), DPSConfig(steps=20))
    gml = dps_sample(prior, op, y, (8,), 50, rng.generators(0, ["q"], "g"), DPSConfig(steps=20, variant="gml-dps"))
    torch.testing.assert_close(gml, plain)


def test_psld_is_closer_to_the_exact_posterior_than_the_prior(problem):
    prior, op, y, exact = problem
    cfg = DPSConfig(steps=60, variant="psld", gamma=0.1, omega=1.0)
    xs = dps_sample(prior, op, y, (8,), 500, rng.generators(0, ["q"], "psld"), cfg)
    prior_sw = sliced_wasserstein(prior.sample(500, torch.Generator().manual_seed(1)), exact)
    assert sliced_wasserstein(xs, exact) < 0.2 * prior_sw


def test_unknown_dps_variant_is_refused(problem):
    from vipaint_pl.errors import ConfigError

    prior, op, y, _ = problem
    with pytest.raises(ConfigError, match="psld"):
        dps_sample(prior, op, y, (8,), 2, rng.generators(0, ["q"], "x"), DPSConfig(variant="psdl"))


def test_unknown_benchmark_method_is_a_clear_error(capsys):
    import bench_gmm

    with pytest.raises(SystemExit):
        bench_gmm.main(["--quick", "--methods", "DPSS"])
    assert "DPSS" in capsys.readouterr().err


def test_parallel_workers_give_the_same_figures(capsys):
    import bench_gmm

    args = ["--quick", "--methods", "prior (reference)", "DPS"]
    one, two = bench_gmm.main(args)[0]["methods"], bench_gmm.main(args + ["--jobs", "2"])[0]["methods"]
    for name in one:
        assert {k: v for k, v in one[name].items() if k != "seconds"} == \
               {k: v for k, v in two[name].items() if k != "seconds"}
