"""The embedded digit priors and the quickstart: they load like hub models and run with no download."""

from pathlib import Path

import pytest
import torch
import yaml

from vipaint_pl.cli import main
from vipaint_pl.datasets import digits
from vipaint_pl.errors import ConfigError, PriorLoadError
from vipaint_pl.priors import load_prior


def test_digit_splits_are_disjoint_and_cover_the_data():
    train, lt = digits(8, "train")
    test, ls = digits(8, "test")
    assert len(train) + len(test) == 1797 and train.shape[1:] == (1, 8, 8)
    assert train.min() >= -1 and train.max() <= 1
    flat = {tuple(v.flatten().tolist()) for v in test}
    overlap = sum(tuple(v.flatten().tolist()) in flat for v in train)
    assert overlap < 10  # scikit-learn's digits hold a few exact duplicates, nothing more
    with pytest.raises(ConfigError, match="split"):
        digits(8, "validation")


def test_embedded_latent_prior_reconstructs_held_out_digits():
    prior = load_prior("latent", "embedded:digits-latent")
    x, _ = digits(32, "test")
    with torch.no_grad():
        z = prior.encode(x[:64])
        rmse = (prior.decode(z) - x[:64]).pow(2).mean().sqrt()
    assert prior.latent_shape((1, 32, 32)) == (4, 8, 8) and prior.image_channels() == 1
    assert rmse < 0.06  # measured 0.028 on the first 100 held-out digits
    assert 0.8 < float(z.std()) < 1.2  # scaling_factor makes the codes unit-variance


def test_unknown_embedded_prior_names_what_ships():
    with pytest.raises(PriorLoadError, match="digits-latent"):
        load_prior("latent", "embedded:faces")


def test_quickstart_config_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the config's paths are relative to the repository
    cfg = yaml.safe_load(open("configs/quickstart.yaml"))
    cfg["trainer"].update(max_steps=2, default_root_dir=str(tmp_path / "logs"))
    cfg["model"]["init_args"]["sampling"].update(num_samples=2, steps=3)
    cfg["data"]["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "qs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    main(["inpaint", "--config", str(path)])
    for name in ("digit_a", "digit_b"):
        assert (tmp_path / "out" / name / "grid.png").is_file()
        assert torch.load(tmp_path / "out" / name / "result.pt")["samples"].shape == (2, 1, 32, 32)
    assert any((tmp_path / "logs").rglob("events.out.tfevents*"))


def test_blended_latent_replaces_the_observed_latent_cells_by_the_encoded_observation():
    from vipaint_pl import rng
    from vipaint_pl.methods.blended import BlendedConfig, blended_sample
    from vipaint_pl.operators import Inpainting

    prior = load_prior("latent", "embedded:digits-latent")
    x, _ = digits(32, "test")
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 14:, :] = 0  # rows 14.. missing: latent rows 0-2 observed, row 3 half observed (counts), 4.. not
    op = Inpainting(mask.repeat(3, 1, 1, 1))
    y = Inpainting(mask)(x[:1])
    z = blended_sample(prior, op, y, (4, 8, 8), 3, rng.generators(0, ["q"], "b"), BlendedConfig(steps=5))
    with torch.no_grad():
        z_obs = prior.encode(Inpainting(mask).pinv(y))
    torch.testing.assert_close(z[:, :, :4], z_obs[:, :, :4].expand(3, -1, -1, -1))
    assert (z[:, :, 4:] - z_obs[:, :, 4:]).abs().mean() > 0.1 and z[:, :, 4:].std(0).mean() > 0.05


@pytest.mark.parametrize("method,key", [("dps", "dps"), ("blended", "blended"), ("red_diff", "red_diff"),
                                        ("psld", "dps"), ("repaint", "repaint"), ("copaint", "copaint"),
                                        ("resample", "resample")])
def test_ready_configs_of_predict_only_methods_run(tmp_path, monkeypatch, method, key):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    main(["predict", "--config", f"configs/{method}_digits.yaml", f"--model.init_args.{key}.steps", "3",
          "--model.init_args.sampling.num_samples", "2", "--data.output_dir", str(tmp_path / "out"),
          "--trainer.default_root_dir", str(tmp_path / "logs")])
    size = 16 if method in ("repaint", "copaint") else 32  # their configs use the 16x16 pixel prior
    assert torch.load(tmp_path / "out" / "digit_b" / "result.pt")["samples"].shape == (2, 1, size, size)


def test_fit_on_a_method_with_nothing_to_fit_is_a_clear_error(monkeypatch):
    from vipaint_pl.errors import ConfigError

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    with pytest.raises(ConfigError, match="RePaintModule has nothing to fit: run `vipaint predict`"):
        main(["fit", "--config", "configs/repaint_digits.yaml"])
