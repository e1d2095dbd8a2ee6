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


def test_embedded_pixel_prior_carries_its_data_std_and_vipaint_places_its_times_by_it():
    from vipaint_pl.methods.vipaint import VIPaintConfig

    prior = load_prior("pixel", "embedded:digits-pixel")
    assert prior.data_std == pytest.approx(float(digits(16, "train")[0].std()), rel=1e-5)  # data_stats.json
    assert VIPaintConfig(snr_matched_times=True).hierarchy(prior) == [469, 310]
    assert VIPaintConfig(snr_matched_times=False).hierarchy(prior) == [550, 400]
    assert load_prior("latent", "embedded:digits-latent").data_std is None  # its codes are scaled to unit std
    assert load_prior("pixel", "embedded:digits-pixel", data_std=1.0).data_std == 1.0  # given: it wins
    with pytest.raises(ConfigError, match="data_std must be a positive number"):
        load_prior("pixel", "embedded:digits-pixel", data_std=-1.0)


def test_unknown_embedded_prior_names_what_ships():
    with pytest.raises(PriorLoadError, match="digits-latent"):
        load_prior("latent", "embedded:faces")


def test_quickstart_config_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the config's paths are relative to the repository
    cfg = yaml.safe_load(open("configs/quickstart.yaml"))
    cfg["trainer"].update(default_root_dir=str(tmp_path / "logs"))
    cfg["model"]["init_args"]["vipaint"].update(fit_steps=2, sampling={"steps": 3})
    cfg["model"]["init_args"]["output"].update(num_samples=2)
    cfg["data"]["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "qs.yaml"
    path.write_text(yaml.safe_dump(cfg))
    main(["inpaint", "--config", str(path)])
    for name in ("digit_a", "digit_b"):
        assert (tmp_path / "out" / name / "grid.png").is_file()
        assert torch.load(tmp_path / "out" / name / "result.pt")["samples"].shape == (2, 1, 32, 32)
    assert any((tmp_path / "logs").rglob("events.out.tfevents*"))
