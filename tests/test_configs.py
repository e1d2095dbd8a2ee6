"""Configs compose by axis (method x prior x data); every registered method has one; every one parses."""

from pathlib import Path

import pytest
import torch
import yaml

from vipaint_pl.cli import main
from vipaint_pl.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
METHOD_CONFIGS = sorted((ROOT / "configs" / "method").glob("*.yaml"))
PRIOR_CONFIGS = sorted((ROOT / "configs" / "prior").glob("*.yaml"))
DATA = str(ROOT / "configs" / "data" / "quickstart.yaml")


def _print_config(capsys, *configs) -> dict:
    with pytest.raises(SystemExit) as stop:
        main(["predict", *[a for c in configs for a in ("--config", str(c))], "--print_config"])
    assert stop.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_every_registered_method_has_a_method_config():
    names = {yaml.safe_load(p.read_text())["model"]["init_args"].get("method", "vipaint") for p in METHOD_CONFIGS}
    assert set(METHODS) <= names
    assert {p.stem for p in METHOD_CONFIGS} >= set(METHODS)


@pytest.mark.parametrize("method", METHOD_CONFIGS, ids=lambda p: p.stem)
def test_each_method_composes_with_the_embedded_prior_and_data(method, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    printed = _print_config(capsys, method, ROOT / "configs" / "prior" / "digits-latent.yaml", DATA)
    written = yaml.safe_load(method.read_text())["model"]
    assert printed["model"]["class_path"] == written["class_path"]
    assert printed["model"]["init_args"]["prior"]["source"] == "embedded:digits-latent"
    assert printed["data"]["images"] == "examples/quickstart/images" and printed["data"]["image_size"] == 32


@pytest.mark.parametrize("prior", PRIOR_CONFIGS, ids=lambda p: p.stem)
def test_each_prior_composes_in_either_order(prior, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    method = ROOT / "configs" / "method" / "dps.yaml"
    first = _print_config(capsys, method, prior, DATA)
    second = _print_config(capsys, prior, method, DATA)
    assert first["model"] == second["model"] and first["data"] == second["data"]
    assert first["model"]["init_args"]["prior"] == yaml.safe_load(prior.read_text())["model"]["init_args"]["prior"] | \
        {"kwargs": first["model"]["init_args"]["prior"].get("kwargs", {})}


def test_quickstart_is_one_file_that_parses(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    printed = _print_config(capsys, ROOT / "configs" / "quickstart.yaml")
    assert printed["model"]["init_args"]["vipaint"]["k"] == 2


def test_a_typo_in_a_choice_fails_when_the_config_is_read(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["predict", "--config", str(ROOT / "configs" / "quickstart.yaml"),
                 "--model.init_args.vipaint.bound.likelihood", "cauchy", "--print_config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.init_args.vipaint.bound.likelihood: ") and err.count("\n") == 1
    assert "cauchy" in err and "'laplace', 'gaussian'" in err


@pytest.mark.parametrize("key,value,message", [("vipaint.fit_steps", "0", "VIPaintConfig.fit_steps must be >= 1"),
                                               ("vipaint.sampling.eta", "1.5",
                                                "PosteriorSamplingConfig.eta must be >= 0.0 and <= 1.0"),
                                               ("output.num_samples", "0", "OutputConfig.num_samples must be >= 1")])
def test_an_impossible_value_fails_before_any_work_naming_the_key(key, value, message, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["predict", "--config", str(ROOT / "configs" / "quickstart.yaml"), f"--model.init_args.{key}",
                 value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("method", [p for p in METHOD_CONFIGS if p.stem in METHODS and p.stem != "vipaint"],
                         ids=lambda p: p.stem)
def test_each_sampling_method_runs_on_the_embedded_prior(method, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    prior = "digits-pixel" if method.stem in ("repaint", "copaint", "copaint-tt") else "digits-latent"
    main(["predict", "--config", str(method), "--config", f"configs/prior/{prior}.yaml", "--config", DATA,
          "--model.init_args.config.steps", "3", "--model.init_args.output.num_samples", "2",
          "--data.output_dir", str(tmp_path / "out"), "--trainer.default_root_dir", str(tmp_path / "logs")])
    size = 16 if prior == "digits-pixel" else 32
    assert torch.load(tmp_path / "out" / "digit_b" / "result.pt")["samples"].shape == (2, 1, size, size)


def test_fit_on_a_method_with_nothing_to_fit_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["fit", "--config", "configs/method/repaint.yaml", "--config", "configs/prior/digits-pixel.yaml",
                 "--config", DATA]) == 2
    assert "SamplerModule has nothing to fit: run `vipaint predict`" in capsys.readouterr().err
