"""The contract every registered method keeps, checked for each entry of ``METHODS``.

A method added to the registry is run here with no other edit: shape and finite values, the same seed
giving the same samples, a query alone equal to the same query inside a batch, and the same samples from
the CLI, the Python API and the benchmarks' ``run_method`` for one seed.
"""

import pytest
import torch
import yaml

from tiny_models import save_tiny_pixel_prior
from vipaint_pl.api import inpaint
from vipaint_pl.cli import main
from vipaint_pl.image_io import save_image
from vipaint_pl.lightning import QueryDataModule
from vipaint_pl.methods import METHODS, method_config, run_method
from vipaint_pl.operators import Inpainting
from vipaint_pl.priors import load_prior

NAMES = sorted(METHODS)
# VIPaint's mixture with the starts and weights that draw extra random streams: on the same contract
VIPAINT_MIXTURE = {"components": 3, "init": {"start": "mixed", "candidates": 5},
                   "bound": {"time_sampling": "importance"}, "sampling": {"component_weights": "optimal",
                                                                          "score_samples": 4}}
CASES = [(name, None) for name in NAMES] + [("vipaint", VIPAINT_MIXTURE)]
CASE_IDS = NAMES + ["vipaint-mixture"]


def quick_config(name: str, tiny_prior: bool = True, changes: dict | None = None):
    """The method's defaults (with ``changes``) with every chain and inner loop cut to a few steps."""
    cfg = method_config(name, changes).quick(4)
    if name == "vipaint" and tiny_prior:  # a hierarchy the tiny 40-step prior has room for
        cfg = cfg.replace(times=[30, 20])
    return cfg


@pytest.mark.parametrize("name", NAMES)
def test_shape_finite_values_and_the_same_seed_gives_the_same_samples(problem, name):
    prior, op, y, _ = problem
    cfg = quick_config(name, tiny_prior=False)
    first = run_method(name, prior, op, y, 3, seed=5, config=cfg)
    again = run_method(name, prior, op, y, 3, seed=5, config=cfg)
    other = run_method(name, prior, op, y, 3, seed=6, config=cfg)
    assert first.shape == (3, 8) and torch.isfinite(first).all()
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize(("name", "changes"), CASES, ids=CASE_IDS)
def test_a_query_alone_equals_the_same_query_inside_a_batch(problem, name, changes):
    prior, op, y, _ = problem
    cfg = quick_config(name, tiny_prior=False, changes=changes)
    alone = run_method(name, prior, op, y, 3, names=["b"], config=cfg)
    batch = run_method(name, prior, op, torch.cat([-y, y, 2 * y]), 3, names=["a", "b", "c"], config=cfg)
    torch.testing.assert_close(batch[3:6], alone, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_queries(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    save_tiny_pixel_prior(root / "prior", size=16, num_train_timesteps=40)
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        save_image(torch.rand(3, 16, 16, generator=g) * 2 - 1, root / "images" / f"q{i}.png")
    data = QueryDataModule(str(root / "images"), mask_kind="half", channels=3)
    data.setup()
    truth = torch.stack([q.truth for q in data.queries])
    masks = torch.stack([q.mask for q in data.queries])
    return root, truth, masks, [q.name for q in data.queries]


@pytest.mark.parametrize(("name", "changes"), CASES, ids=CASE_IDS)
def test_cli_api_and_benchmark_give_the_same_samples_for_one_seed(tiny_queries, name, changes):
    root, truth, masks, names = tiny_queries
    cfg = quick_config(name, changes=changes)
    tag = name if changes is None else f"{name}-variant"
    prior = load_prior("pixel", str(root / "prior"))
    # the benchmarks' path: the registry's sampler, decoded
    with torch.no_grad() if not METHODS[name].needs_grad else torch.enable_grad():
        z = run_method(name, prior, Inpainting(masks), Inpainting(masks)(truth), 2, seed=3, names=names, config=cfg)
    bench = prior.decode(z).float().clamp(-1, 1).view(2, 2, 3, 16, 16)
    # the Python API
    api = inpaint(truth, masks, prior, method=name, config=cfg, num_samples=2, names=names, paste_observed=False,
                  seed=3, accelerator="cpu")
    # the command line
    if name == "vipaint":
        model = {"class_path": "vipaint_pl.lightning.VIPaintModule",
                 "init_args": {"vipaint": yaml.safe_load(yaml.safe_dump(_plain(cfg))), "log_images_every_n_steps": 0}}
    else:
        model = {"class_path": "vipaint_pl.lightning.SamplerModule",
                 "init_args": {"method": name, "config": _plain(cfg)}}
    model["init_args"] |= {"prior": {"kind": "pixel", "source": str(root / "prior")}, "seed": 3,
                           "output": {"num_samples": 2, "paste_observed": False}}
    config = {"model": model, "data": {"images": str(root / "images"), "mask_kind": "half", "channels": 3,
                                       "output_dir": str(root / f"cli_{tag}")},
              "trainer": {"default_root_dir": str(root / f"runs_{tag}"), "logger": False, "enable_progress_bar": False,
                          "accelerator": "cpu"}}
    path = root / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["inpaint", "--config", str(path)])
    cli = torch.stack([torch.load(root / f"cli_{tag}" / n / "result.pt")["samples"] for n in names])
    torch.testing.assert_close(api, bench, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(cli, bench, rtol=1e-4, atol=1e-4)


def _plain(cfg) -> dict:
    """A config as plain YAML-able values (tuples as lists)."""
    import dataclasses

    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))
