"""Reliability: one-line errors for bad input, crash-safe fit checkpoints, atomic outputs, failed queries.

Every case of the bad-input table runs the real ``vipaint`` entry point (``cli.main``) and checks its exit
status, that stderr is one ``error: ...`` line naming the problem, and that no traceback is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vipaint_pl.cli import main
from vipaint_pl.errors import VipaintError
from vipaint_pl.image_io import load_image, save_image
from tiny_models import save_tiny_pixel_prior

SIZE = 16
PAYLOAD_MARK = Path(tempfile.gettempdir()) / "vipaint_test_payload_ran"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    save_tiny_pixel_prior(root / "prior", size=SIZE)
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        save_image(torch.rand(3, SIZE, SIZE, generator=g) * 2 - 1, root / "images" / f"im{i}.png")
    return root


def _vipaint(ws, out, steps=2, **data):
    return {"model": {"class_path": "vipaint_pl.lightning.VIPaintModule",
                      "init_args": {"prior": {"kind": "pixel", "source": str(ws / "prior")},
                                    "vipaint": {"k": 2, "times": [30, 20], "fit_steps": steps, "sampling": {"steps": 2}},
                                    "output": {"num_samples": 2}, "log_images_every_n_steps": 0}},
            "data": {"images": str(ws / "images"), "mask_kind": "half", "output_dir": str(out), **data},
            "trainer": {"default_root_dir": str(out.parent / f"{out.name}_logs"), "logger": False,
                        "enable_progress_bar": False}}


def _sampler(ws, out, method="dps", **data):
    cfg = _vipaint(ws, out, **data)
    cfg["model"] = {"class_path": "vipaint_pl.lightning.SamplerModule",
                    "init_args": {"prior": {"kind": "pixel", "source": str(ws / "prior")}, "method": method,
                                  "config": {"steps": 2}, "output": {"num_samples": 2}}}
    return cfg


def _write(cfg: dict, path: Path) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _png(path: Path, array: np.ndarray, mode=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return path


def _mask_folder(ws, name, array) -> str:
    folder = ws / "masks" / name
    for i in range(3):
        _png(folder / f"im{i}.png", array)
    return str(folder)


def _half(size=SIZE):
    m = np.zeros((size, size), np.uint8)
    m[:, size // 2 :] = 255  # white = missing
    return m


def _bad_input_cases(ws):
    """(name, extra CLI arguments or a config change, fragment the one line must contain)."""
    truncated = ws / "bad" / "truncated"
    _png(truncated / "a.png", (np.arange(256).reshape(16, 16) % 256).astype(np.uint8))
    data = (truncated / "a.png").read_bytes()
    (truncated / "a.png").write_bytes(data[: len(data) // 2])
    (ws / "bad" / "notimage").mkdir(parents=True, exist_ok=True)
    (ws / "bad" / "notimage" / "a.png").write_text("this is not a picture")
    (ws / "bad" / "empty").mkdir(parents=True, exist_ok=True)
    grey = _half()
    grey[0, 0] = 128
    typo = _vipaint(ws, ws / "typo")
    typo["model"]["init_args"]["vipaint"]["fitsteps"] = 3
    return [
        ("mask of the wrong size", ["--data.masks", _mask_folder(ws, "small", _half(8))], "is 8x8 (WxH) but image"),
        ("negative steps", ["--sampler", "--model.init_args.config.steps", "-4"], "steps must be >= 1; got -4"),
        ("image size 0", ["--data.image_size", "0"], "data.image_size must be a positive integer, got 0"),
        ("grey mask", ["--data.masks", _mask_folder(ws, "grey", grey)], "is not binary"),
        ("all-missing mask", ["--data.masks", _mask_folder(ws, "white", np.full((SIZE, SIZE), 255, np.uint8))],
         "has no observed pixel"),
        ("truncated PNG", ["--data.images", str(truncated)], "cannot read image file"),
        ("not an image", ["--data.images", str(ws / "bad" / "notimage")], "cannot read image file"),
        ("missing folder", ["--data.images", str(ws / "no_such_folder")], "does not exist"),
        ("empty folder", ["--data.images", str(ws / "bad" / "empty")], "no image files"),
        ("3 channels for a 1-channel prior", ["--data.channels", "1"], "the images have 1 channels but the prior expects 3"),
        ("unknown mask kind", ["--data.mask_kind", "blob"], "unknown mask_kind 'blob'"),
        ("typo in a config file", ["--config", _write(typo, ws / "typo.yaml")], "Option 'fitsteps' is not accepted"),
        ("zero samples", ["--model.init_args.output.num_samples", "0"], "OutputConfig.num_samples must be >= 1"),
        ("zero learning rate", ["--model.init_args.vipaint.optim.lr_mean", "0"], "OptimConfig.lr_mean must be > 0"),
        ("K = 0", ["--model.init_args.vipaint.k", "0"], "VIPaintConfig.k must be >= 1"),
        ("zero fit steps", ["--model.init_args.vipaint.fit_steps", "0"], "VIPaintConfig.fit_steps must be >= 1"),
        ("true half precision", ["--trainer.precision", "bf16-true"], "use 'bf16-mixed'"),
        ("unknown model class", ["--model", "vipaint_pl.lightning.NoSuchModule"], "has no attribute 'NoSuchModule'"),
        ("predict from a missing last checkpoint", ["--predict", "--ckpt_path", "last"], "no checkpoint at"),
    ]


CASE_NAMES = ["mask of the wrong size", "negative steps", "image size 0", "grey mask", "all-missing mask",
              "truncated PNG", "not an image", "missing folder", "empty folder", "3 channels for a 1-channel prior",
              "unknown mask kind", "typo in a config file", "zero samples", "zero learning rate", "K = 0",
              "zero fit steps", "true half precision", "unknown model class", "predict from a missing last checkpoint"]


def _one_error_line(capfd) -> str:
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_bad_input_is_one_error_line_and_status_2(ws, case, capfd):
    cases = {name: (args, fragment) for name, args, fragment in _bad_input_cases(ws)}
    args, fragment = cases[case]
    capfd.readouterr()
    command, args = ("predict", [a for a in args if a != "--predict"]) if "--predict" in args else ("inpaint", args)
    cfg = _sampler(ws, ws / "err_out") if "--sampler" in args else _vipaint(ws, ws / "err_out")
    args = [a for a in args if a != "--sampler"]
    first = [] if any(a == "--config" for a in args) else ["--config", _write(cfg, ws / "err.yaml")]
    assert main([command, *first, *args]) == 2
    line = _one_error_line(capfd)
    assert fragment in line, line


def test_unknown_hub_id_offline_is_one_line_from_a_real_process(ws):
    cfg = _vipaint(ws, ws / "hub_out")
    cfg["model"]["init_args"]["prior"]["source"] = "nobody/no-such-model-xyz"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "vipaint_pl.cli", "inpaint", "--config", _write(cfg, ws / "hub.yaml")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nobody/no-such-model-xyz" in lines[0], proc.stderr


def test_the_debug_switch_raises_with_the_traceback(ws):
    with pytest.raises(VipaintError, match="data.image_size must be a positive integer"):
        main(["inpaint", "--config", _write(_vipaint(ws, ws / "dbg"), ws / "dbg.yaml"), "--data.image_size", "0",
              "--debug"])


def test_a_mask_that_hides_nothing_warns_and_runs(ws, capfd):
    out = ws / "full_mask"
    masks = _mask_folder(ws, "black", np.zeros((SIZE, SIZE), np.uint8))
    assert main(["predict", "--config", _write(_sampler(ws, out, masks=masks), ws / "full.yaml")]) == 0
    err = capfd.readouterr().err
    assert err.count("warning: the mask of 'im0' hides nothing") == 1
    result = torch.load(out / "im0" / "result.pt")
    torch.testing.assert_close(result["samples"][0], result["truth"], atol=1e-5, rtol=0)


def test_rgba_and_16_bit_pngs_are_read_by_their_colour(ws, tmp_path):
    rgb = (np.arange(SIZE * SIZE * 3).reshape(SIZE, SIZE, 3) % 251).astype(np.uint8)
    rgba = np.concatenate([rgb, np.full((SIZE, SIZE, 1), 7, np.uint8)], axis=2)  # nearly transparent
    torch.testing.assert_close(load_image(_png(tmp_path / "rgba.png", rgba)), load_image(_png(tmp_path / "rgb.png", rgb)))
    grey16 = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 257).astype(np.uint16)  # 0 .. 65535 in 16 bits
    image = load_image(_png(tmp_path / "grey16.png", grey16), channels=1)
    expected = torch.from_numpy(np.round(grey16 / 65535 * 255).astype(np.float32) / 127.5 - 1)[None]
    torch.testing.assert_close(image, expected)
    mask_rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    mask_rgba[..., 3] = 255
    mask_rgba[:, SIZE // 2 :, :3] = 255  # white (missing) on the right; alpha is not the mask
    masks = tmp_path / "m"
    for i in range(3):
        _png(masks / f"im{i}.png", mask_rgba)
    out = tmp_path / "out"
    assert main(["predict", "--config", _write(_sampler(ws, out, masks=str(masks)), tmp_path / "c.yaml")]) == 0
    mask = torch.load(out / "im0" / "result.pt")["mask"]
    assert mask[0, :, : SIZE // 2].all() and not mask[0, :, SIZE // 2 :].any()


def test_nan_and_inf_pixels_through_the_python_api_are_refused(ws):
    from vipaint_pl.api import inpaint
    from vipaint_pl.priors import load_prior

    prior = load_prior("pixel", str(ws / "prior"))
    images = torch.zeros(2, 3, SIZE, SIZE)
    masks = torch.ones(2, 1, SIZE, SIZE)
    masks[:, :, :, SIZE // 2 :] = 0
    for bad in (float("nan"), float("inf")):
        images[1, 0, 3, 3] = bad
        with pytest.raises(VipaintError, match=r"image 'query_0001' contains 1 NaN or infinite values"):
            inpaint(images, masks, prior, method="dps", config={"steps": 2}, num_samples=1)


# ---- checkpoints, resume, atomic outputs, failed queries ----------------------------------------------


def _posterior(ckpt: Path) -> dict:
    return torch.load(ckpt, weights_only=True)["state_dict"]


def test_a_fit_killed_with_sigkill_resumes_to_the_same_posterior(ws):
    """A real process is killed mid-fit; ``--ckpt_path last`` resumes it; the posterior equals an
    uninterrupted fit's with the same seed. The console shows steps, not epochs, and no third-party noise."""
    steps, every = 40, 5
    full = ws / "full"
    cfg = _vipaint(ws, full, steps=steps)
    cfg["trainer"]["checkpoint_every_n_steps"] = every
    path = _write(cfg, ws / "kill.yaml")
    command = [sys.executable, "-m", "vipaint_pl.cli", "fit", "--config", path]
    reference = subprocess.run([*command, "--trainer.enable_progress_bar", "true"], capture_output=True, text=True,
                               timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    for noise in ("Tip", "accelerate", "GPU available", "Warning", "warn(", "Epoch"):
        assert noise not in reference.stderr + reference.stdout, (noise, reference.stderr[-2000:])
    assert "fit: steps: 100%" in reference.stdout and f"{steps}/{steps}" in reference.stdout
    expected = _posterior(ws / "full_logs" / "checkpoints" / "last.ckpt")

    killed = ws / "killed"
    args = ["--trainer.default_root_dir", str(killed)]
    proc = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    saved = torch.load(last, weights_only=True)["global_step"]
    assert 0 < saved < steps and saved % every == 0
    assert not list((killed / "checkpoints").glob(".*tmp*"))  # no half-written file left under a final name

    resumed = subprocess.run([*command, *args, "--ckpt_path", "last"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"note: resuming from {last}" in resumed.stderr
    got = _posterior(last)
    assert torch.load(last, weights_only=True)["global_step"] == steps
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)


def test_predict_skips_complete_queries_and_writes_atomically(ws, capfd, monkeypatch):
    out = ws / "skip"
    path = _write(_sampler(ws, out), ws / "skip.yaml")
    assert main(["predict", "--config", path]) == 0
    assert "note: 3 queries written, 0 skipped, 0 failed; outputs in" in capfd.readouterr().err
    first = {n: torch.load(out / n / "result.pt")["samples"] for n in ("im0", "im1", "im2")}
    stamp = (out / "im0" / "result.pt").stat().st_mtime_ns
    assert main(["predict", "--config", path]) == 0
    assert "0 queries written, 3 skipped (complete already" in capfd.readouterr().err
    assert (out / "im0" / "result.pt").stat().st_mtime_ns == stamp
    (out / "im1" / "result.pt").unlink()  # as if the run had been killed before im1 was complete
    assert main(["predict", "--config", path]) == 0
    assert "1 query written, 2 skipped" in capfd.readouterr().err
    torch.testing.assert_close(torch.load(out / "im1" / "result.pt")["samples"], first["im1"], rtol=1e-4, atol=1e-4)
    assert main(["predict", "--config", path, "--data.overwrite", "true"]) == 0
    assert "3 queries written, 0 skipped" in capfd.readouterr().err

    # a write that fails half-way leaves no result.pt (so the query is redone) and no temporary file
    from vipaint_pl.lightning import writer

    def broken_grid(rows, path, pad=2):
        Path(path).write_bytes(b"half a picture")
        raise OSError("disk full")

    monkeypatch.setattr(writer, "save_grid", broken_grid)
    target = ws / "broken" / "im0"
    with pytest.raises(OSError, match="disk full"):
        writer.write_result(torch.load(out / "im0" / "result.pt"), target)
    names = sorted(p.name for p in target.iterdir())
    assert names == ["mean.png", "sample_00.png", "sample_01.png"], names


def test_a_query_whose_bound_turns_nan_stops_and_the_others_finish(ws, capfd, monkeypatch):
    clean = ws / "clean"
    assert main(["inpaint", "--config", _write(_vipaint(ws, clean, steps=3), ws / "clean.yaml")]) == 0
    capfd.readouterr()
    from vipaint_pl.lightning import vipaint_module

    bound = vipaint_module.vipaint_bound

    def nan_for_im1(prior, posterior, operator, y, idx, *args):
        terms = bound(prior, posterior, operator, y, idx, *args)
        terms["loss"] = torch.where(idx == 1, torch.full_like(terms["loss"], float("nan")), terms["loss"])
        return terms

    monkeypatch.setattr(vipaint_module, "vipaint_bound", nan_for_im1)
    out = ws / "nan"
    assert main(["inpaint", "--config", _write(_vipaint(ws, out, steps=3), ws / "nan.yaml")]) == 1
    err = capfd.readouterr().err
    assert "error: query 'im1': the bound is not finite at fit step 0; it is stopped, the other queries go on" in err
    assert "error: query 'im1': the bound is not finite at fit step 0; nothing written for it" in err
    assert "note: 2 queries written, 0 skipped, 1 failed (im1); outputs in" in err
    assert not (out / "im1").exists()
    for name in ("im0", "im2"):  # the other queries are exactly those of a run without the NaN
        torch.testing.assert_close(torch.load(out / name / "result.pt")["samples"],
                                   torch.load(clean / name / "result.pt")["samples"])
    saved = torch.load(ws / "nan_logs" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["failed_queries"] == {"im1": "the bound is not finite at fit step 0"}


def test_non_finite_samples_fail_their_query_only(ws, capfd, monkeypatch):
    from vipaint_pl.lightning.module import InpaintingModule

    finish = InpaintingModule.finish_samples

    def nan_for_first(self, z0, idx):
        x = finish(self, z0, idx)
        return torch.where((idx == 0).view(-1, 1, 1, 1, 1), torch.full_like(x, float("nan")), x)

    monkeypatch.setattr(InpaintingModule, "finish_samples", nan_for_first)
    out = ws / "nan_samples"
    assert main(["predict", "--config", _write(_sampler(ws, out), ws / "nan_s.yaml")]) == 1
    err = capfd.readouterr().err
    assert "query 'im0'" in err and "NaN or infinite" in err and "2 queries written, 0 skipped, 1 failed (im0)" in err
    assert not (out / "im0").exists() and (out / "im2" / "result.pt").is_file()


def test_a_pickled_payload_in_a_checkpoint_is_refused(ws, capfd):
    out = ws / "pickle"
    path = _write(_vipaint(ws, out), ws / "pickle.yaml")
    assert main(["fit", "--config", path]) == 0
    ckpt = ws / "pickle_logs" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    PAYLOAD_MARK.unlink(missing_ok=True)
    state["payload"] = Payload()
    evil = ws / "evil.ckpt"
    torch.save(state, evil)
    capfd.readouterr()
    assert main(["predict", "--config", path, "--ckpt_path", str(evil)]) == 2
    line = _one_error_line(capfd)
    assert "holds pickled Python objects" in line and "evil.ckpt" in line
    assert not PAYLOAD_MARK.exists()
    assert main(["predict", "--config", path, "--ckpt_path", str(ckpt)]) == 0  # the real one loads safely


class Payload:
    """Runs code when unpickled: what ``weights_only=True`` exists to stop."""

    def __reduce__(self):
        return (Path.touch, (PAYLOAD_MARK,))


def test_the_schedule_stays_float64_when_the_prior_is_cast_to_bfloat16(ws):
    from vipaint_pl.priors import load_prior

    prior = load_prior("pixel", str(ws / "prior")).to(torch.bfloat16)
    assert next(prior.parameters()).dtype == torch.bfloat16
    assert prior.alphas_cumprod.dtype == torch.float64
    sigma = prior.schedule.sigma(torch.tensor([0, 999]))
    assert 0 < float(sigma[0]) < 0.02 and 0.99 < float(sigma[1]) < 1  # in bfloat16 these round to 0 and 1


def test_a_two_rank_fit_killed_with_sigkill_resumes_each_rank_to_the_same_posterior(ws):
    """Under ``per_query_ddp`` every rank keeps and resumes its own part of the checkpoint; the posterior of
    every query equals that of an uninterrupted one-process fit (results do not depend on the rank count)."""
    steps, every = 40, 5
    cfg = _vipaint(ws, ws / "ddp_one", steps=steps)
    cfg["trainer"].update(checkpoint_every_n_steps=every, accelerator="cpu")
    path = _write(cfg, ws / "ddp_kill.yaml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 CPU ranks: the same float rounding, step after step
    try:
        assert main(["fit", "--config", path, "--trainer.devices", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    one = _posterior(ws / "ddp_one_logs" / "checkpoints" / "last.ckpt")

    root = ws / "ddp_two"
    command = [sys.executable, "-m", "vipaint_pl.cli", "fit", "--config", path, "--trainer.devices", "2",
               "--trainer.strategy", "per_query_ddp", "--trainer.default_root_dir", str(root)]
    # one thread per rank, as the reference fit (Lightning's own choice on 2 cores, unless OMP_NUM_THREADS is set)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # its own process group: both ranks are killed together
    rank1 = root / "checkpoints" / "last.ckpt.rank1"
    deadline = time.time() + 300
    while not ((root / "checkpoints" / "last.ckpt").is_file() and rank1.is_file()) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    saved = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < saved < steps

    resumed = subprocess.run([*command, "--ckpt_path", "last"], capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for file, queries in (("last.ckpt", [0, 2]), ("last.ckpt.rank1", [1])):  # rank 0: im0, im2; rank 1: im1
        state = torch.load(root / "checkpoints" / file, weights_only=True)
        assert state["global_step"] == steps
        for key in ("posterior.mu", "posterior.log_std", "posterior.gamma"):
            torch.testing.assert_close(state["state_dict"][key], one[key][:, queries], rtol=1e-5, atol=1e-6,
                                       msg=f"{file} {key}")
