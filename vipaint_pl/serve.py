"""``vipaint serve``: a local web page to paint a mask on an image, watch the posterior form, download samples.

The page runs the same path as the command line: each request is written as a config (the YAML that
``vipaint inpaint --config config.yaml`` reruns, shipped in the download), parsed by the same LightningCLI
(``cli.build``) into the same ``QueryDataModule``, method module and ``VipaintTrainer``, and fit / sampled by
``trainer.inpaint``. A Lightning callback reports the fit steps (with the bound's terms) and the sampling
steps to the page. Requests are queued and run one at a time; a bad input or an unloadable model is shown
as a message in the page and the server goes on serving.
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from PIL import Image
from typing_extensions import override

EXAMPLES = sorted((Path(__file__).parent / "examples").glob("*.png"))
QUERY = "query"  # the one query of a request: images/query.png, masks/query.png, outputs/query/


@dataclass
class PageRequest:
    """What the page's controls set: the method, the prior, the image size it expects, and the run."""

    method: str = "vipaint"
    prior_source: str = "embedded:digits-latent"
    prior_kind: str = "latent"
    image_size: int = 32
    channels: int = 1
    num_samples: int = 4
    steps: int = 50  # VIPaint: fit steps; every other method: its reverse steps
    seed: int = 0


def request_config(req: PageRequest, root: str | Path = ".") -> dict:
    """The CLI config of a request; paths relative to ``root`` (``"."`` for the YAML in the download)."""
    from .methods import METHODS, get_method

    get_method(req.method)  # an unknown name fails here, naming the choices
    root = Path(root)
    prior = {"kind": req.prior_kind, "source": req.prior_source}
    output = {"num_samples": int(req.num_samples)}
    if req.method == "vipaint":
        model = {"class_path": "vipaint_pl.lightning.VIPaintModule",
                 "init_args": {"prior": prior, "vipaint": {"fit_steps": int(req.steps)}, "seed": int(req.seed),
                               "output": output, "log_images_every_n_steps": 0}}
    else:
        fields = {f.name for f in dataclasses.fields(METHODS[req.method].config)}
        model = {"class_path": "vipaint_pl.lightning.SamplerModule",
                 "init_args": {"prior": prior, "method": req.method, "seed": int(req.seed), "output": output,
                               "config": {"steps": int(req.steps)} if "steps" in fields else {}}}
    data = {"images": str(root / "images"), "masks": str(root / "masks"), "image_size": int(req.image_size),
            "channels": int(req.channels), "output_dir": str(root / "outputs"), "overwrite": True}
    trainer = {"default_root_dir": str(root / "logs"), "logger": False, "enable_progress_bar": False}
    return {"model": model, "data": data, "trainer": trainer}


def editor_image_and_mask(value) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image, bool "missing" mask) from a Gradio ImageEditor value: the background is the image,
    every painted pixel of any layer is missing."""
    from .errors import MaskError, ShapeError

    if not value or value.get("background") is None:
        raise ShapeError("upload an image (or pick an example) first")
    background = np.asarray(value["background"])
    if background.ndim == 2:
        background = np.stack([background] * 3, axis=-1)
    missing = np.zeros(background.shape[:2], dtype=bool)
    for layer in value.get("layers") or []:
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[:2] == missing.shape:
            missing |= layer[..., -1] > 0 if layer.shape[-1] == 4 else layer.max(-1) > 0
    if not missing.any():
        raise MaskError("the mask hides nothing: paint the region to fill with the brush")
    return background[..., :3].astype(np.uint8), missing


class PageEvents(Callback):
    """Puts the run's progress on a queue: ("fit", step, total, bound terms) and ("sample", step, phase), phase
    "corrector" for VIPaint's Langevin steps (every corrected level's, numbered on), else "chain"."""

    def __init__(self, events: queue.Queue):
        self.events = events

    @override
    def setup(self, trainer, pl_module, stage: str) -> None:
        pl_module.step_callback = lambda step, info: self.events.put(("sample", int(step), info.get("phase", "chain")))

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        terms = {k.removeprefix("vlb/"): float(v) for k, v in trainer.callback_metrics.items() if k.startswith("vlb/")}
        self.events.put(("fit", trainer.global_step, trainer.max_steps, terms))


@dataclass
class RunOutput:
    samples: list[Path]
    mean: Path
    std_map: Path
    download: Path
    config: Path


def std_heat_map(samples: torch.Tensor) -> np.ndarray:
    """Per-pixel standard deviation over the samples (mean over channels) as an RGB heat map (uint8):
    black (no spread) through red and orange to pale yellow (the largest spread of this query)."""
    from .lightning.writer import relative_spread

    v = relative_spread(samples).numpy()
    anchors = np.array([[0, 0, 0], [120, 20, 80], [230, 80, 30], [250, 200, 60], [255, 255, 220]], dtype=np.float64)
    pos = v * (len(anchors) - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, len(anchors) - 2)
    frac = (pos - lo)[..., None]
    return ((1 - frac) * anchors[lo] + frac * anchors[lo + 1]).round().astype(np.uint8)


RUN_PREFIX = "vipaint_serve_"
KEEP_RUNS_S = 3600  # a run's folder (inputs, outputs, zip) is removed by the first request an hour later


def prune_old_runs(root: Path | None = None, max_age_s: float = KEEP_RUNS_S) -> int:
    """Remove the folders of page runs older than ``max_age_s`` (the page hands its files to Gradio's own
    cache when it shows them, so an old run folder is not needed); returns how many were removed."""
    root = Path(root or tempfile.gettempdir())
    now, removed = time.time(), 0
    for folder in root.glob(f"{RUN_PREFIX}*"):
        if folder.is_dir() and now - folder.stat().st_mtime > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


class PageRun:
    """One request, run in a worker thread through the CLI's objects; its events arrive on ``events``."""

    def __init__(self, image: np.ndarray, missing: np.ndarray, req: PageRequest):
        self.req, self.events, self.error = req, queue.Queue(), None
        prune_old_runs()
        self.dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX))
        Image.fromarray(image).save(self._path("images") / f"{QUERY}.png")
        Image.fromarray((missing * 255).astype(np.uint8)).save(self._path("masks") / f"{QUERY}.png")  # white = missing
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text("# rerun this query from this folder: vipaint inpaint --config config.yaml\n"
                                    + yaml.safe_dump(request_config(req)))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _path(self, name: str) -> Path:
        (self.dir / name).mkdir(parents=True, exist_ok=True)
        return self.dir / name

    def _run(self) -> None:
        from .cli import build, user_error_message

        try:
            model, data, trainer = build(request_config(self.req, self.dir))
            trainer.callbacks.append(PageEvents(self.events))
            trainer.inpaint(model, datamodule=data)
            if getattr(model, "failed_queries", None) or not (self.dir / "outputs" / QUERY / "result.pt").is_file():
                reason = next(iter(model.failed_queries.values()), "its samples are not finite")
                self.error = f"the query failed: {reason}"
        except Exception as exc:  # noqa: BLE001  shown in the page; the server goes on
            self.error = user_error_message(exc) or f"internal error: {type(exc).__name__}: {exc}"
        finally:
            self.events.put(("done",))

    def start(self) -> "PageRun":
        self.thread.start()
        return self

    def drain(self):
        """Yield the run's events until it ends."""
        while True:
            event = self.events.get()
            if event[0] == "done":
                return
            yield event

    def output(self) -> RunOutput:
        out = self.dir / "outputs" / QUERY
        result = torch.load(out / "result.pt", weights_only=True)
        std_map = out / "std_map.png"
        Image.fromarray(std_heat_map(result["samples"])).save(std_map)
        mean_view = _enlarged(out / "mean.png", self._path("views") / "mean.png")  # for the page only
        std_view = _enlarged(std_map, self._path("views") / "std_map.png")
        download = self.dir / "vipaint_result.zip"
        with zipfile.ZipFile(download, "w") as zf:
            for path in sorted(self.dir.rglob("*")):
                if path.is_file() and path != download and not {"logs", "views"} & set(path.relative_to(self.dir).parts):
                    zf.write(path, path.relative_to(self.dir))
        samples = sorted(out.glob("sample_*.png"))
        return RunOutput(samples, mean_view, std_view, download, self.config_path)


def _enlarged(path: Path, target: Path, min_side: int = 192) -> Path:
    """A copy of a small image scaled up by an integer factor (nearest neighbour), for display."""
    image = Image.open(path)
    factor = max(1, -(-min_side // min(image.size)))
    image.resize((image.size[0] * factor, image.size[1] * factor), Image.NEAREST).save(target)
    return target


def _request(method, source, kind, size, channels, samples, steps, seed) -> PageRequest:
    return PageRequest(method=method, prior_source=str(source).strip(), prior_kind=kind, image_size=int(size),
                       channels=int(channels), num_samples=int(samples), steps=int(steps), seed=int(seed))


def build_app():
    """The Gradio Blocks of the page."""
    import gradio as gr
    import pandas as pd

    from .methods import METHODS

    def on_run(editor, method, source, kind, size, channels, samples, steps, seed, progress=gr.Progress()):
        try:
            image, missing = editor_image_and_mask(editor)
            run = PageRun(image, missing, _request(method, source, kind, size, channels, samples, steps, seed)).start()
        except Exception as exc:  # noqa: BLE001
            from .cli import user_error_message

            raise gr.Error(user_error_message(exc) or f"internal error: {exc}")
        curve: list[dict] = []
        progress(0, desc="loading the prior")
        for event in run.drain():
            if event[0] == "fit":
                _, step, total, terms = event
                progress((step, total), desc="fitting the posterior (steps)")
                curve += [{"step": step, "term": k, "value": v} for k, v in terms.items()]
                if step == total or step % max(1, total // 20) == 0:
                    yield pd.DataFrame(curve), gr.skip(), gr.skip(), gr.skip(), gr.skip(), "fitting the posterior..."
            else:
                phase = "Langevin corrector" if event[2] == "corrector" else "sampling"
                progress((event[1] + 1, None), desc=f"{phase} (steps)")
        if run.error:
            raise gr.Error(run.error)
        out = run.output()
        status = f"{len(out.samples)} samples of `{method}`; the download reruns with `vipaint inpaint --config config.yaml`"
        yield (pd.DataFrame(curve) if curve else gr.skip(), [str(p) for p in out.samples], str(out.mean),
               str(out.std_map), str(out.download), status)

    def api_inpaint(image_path, mask_path, method, source, kind, size, channels, samples, steps, seed):
        """The same run without the editor: an image file and a mask file (white = missing)."""
        image = np.asarray(Image.open(image_path).convert("RGB"))
        missing = np.asarray(Image.open(mask_path).convert("L")) > 127
        run = PageRun(image, missing, _request(method, source, kind, size, channels, samples, steps, seed)).start()
        for _ in run.drain():
            pass
        if run.error:
            raise gr.Error(run.error)
        out = run.output()
        return [str(p) for p in out.samples], str(out.mean), str(out.std_map), str(out.download)

    with gr.Blocks(title="vipaint: inpainting with pretrained diffusion priors") as app:
        gr.Markdown("# vipaint\nUpload an image (or pick an example), **paint the region to fill**, choose a method "
                    "and a prior, and press Run. The page runs the same Lightning path as `vipaint inpaint`.")
        with gr.Row():
            with gr.Column():
                editor = gr.ImageEditor(label="image: paint the missing region", type="numpy", height=420,
                                        brush=gr.Brush(default_size=3, colors=["#ff00ff"], color_mode="fixed"), eraser=gr.Eraser(),
                                        layers=False, transforms=(), elem_id="editor")
                gr.Examples([[str(p)] for p in EXAMPLES], inputs=[editor], label="bundled examples")
                with gr.Row():
                    method = gr.Dropdown(list(METHODS), value="vipaint", label="method", elem_id="method")
                    samples = gr.Number(4, precision=0, minimum=1, maximum=64, label="samples", elem_id="samples")
                    steps = gr.Number(50, precision=0, minimum=1, label="steps (VIPaint: fit steps; others: "
                                      "reverse steps)", elem_id="steps")
                    seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
                with gr.Row():
                    source = gr.Textbox("embedded:digits-latent", label="prior: embedded name, hub id or folder",
                                        elem_id="prior")
                    kind = gr.Dropdown(["latent", "pixel", "stable-diffusion"], value="latent", label="prior kind")
                    size = gr.Number(32, precision=0, minimum=1, label="image size", elem_id="size")
                    channels = gr.Radio([1, 3], value=1, label="channels", elem_id="channels")
                run_button = gr.Button("Run", variant="primary", elem_id="run")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                plot = gr.LinePlot(x="step", y="value", color="term", title="the bound's terms during the fit",
                                   label="bound", elem_id="bound")
                gallery = gr.Gallery(label="samples", columns=4, height=240, elem_id="gallery")
                with gr.Row():
                    mean = gr.Image(label="mean", type="filepath", height=200, elem_id="mean")
                    std_map = gr.Image(label="per-pixel std (heat map)", type="filepath", height=200, elem_id="std")
                download = gr.File(label="download: samples, result.pt, config.yaml", elem_id="download")
        run_button.click(on_run, [editor, method, source, kind, size, channels, samples, steps, seed],
                         [plot, gallery, mean, std_map, download, status], api_name="run_page")
        hidden = [gr.File(visible=False), gr.File(visible=False)]
        gr.Button(visible=False).click(api_inpaint, [*hidden, method, source, kind, size, channels, samples, steps,
                                                     seed], [gallery, mean, std_map, download], api_name="inpaint")
    app.queue(default_concurrency_limit=1, max_size=64)  # one run at a time; the others wait their turn
    return app


def serve_main(argv: list[str]) -> int:
    """``vipaint serve --host 127.0.0.1 --port 7860``: start the page (127.0.0.1: this machine only)."""
    from .console import quiet_third_party

    parser = argparse.ArgumentParser(prog="vipaint serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    quiet_third_party()
    build_app().launch(server_name=args.host, server_port=args.port, show_error=True)
    return 0
