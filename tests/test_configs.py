"""Every ready config parses through the CLI, and every method has one on an embedded and on a hub prior."""

from pathlib import Path

import pytest
import yaml

from vipaint_pl.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name != "train_digits_priors.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_ready_config_parses(path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as stop:
        main(["predict", "--config", str(path), "--print_config"])
    assert stop.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(path.read_text())
    assert printed["model"]["class_path"] == written["model"]["class_path"]
    assert printed["model"]["init_args"]["prior"]["source"] == written["model"]["init_args"]["prior"]["source"]


def test_every_method_has_an_embedded_and_a_hub_config():
    import vipaint_pl.lightning as L

    sources: dict[str, set[bool]] = {}
    for path in CONFIGS:
        model = yaml.safe_load(path.read_text())["model"]
        embedded = model["init_args"]["prior"]["source"].startswith("embedded:")
        sources.setdefault(model["class_path"].rsplit(".", 1)[1], set()).add(embedded)
    modules = ["VIPaintModule", "DPSModule", "BlendedModule", "REDDiffModule", "RePaintModule", "CoPaintModule",
               "ReSampleModule"]
    assert all(hasattr(L, m) for m in modules)
    assert {m: sources.get(m) for m in modules} == {m: {True, False} for m in modules}
