"""The web page (``vipaint serve``): its runs are the CLI's runs; in a real browser it paints, runs, shows,
downloads, and survives bad input and concurrent requests.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium
chromium-driver``) and the ``test`` extra (gradio, selenium); without them they are skipped with that reason.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import numpy as np
import pytest
import torch

from vipaint_pl.cli import main
from vipaint_pl.errors import MaskError, ShapeError
from vipaint_pl.serve import EXAMPLES, PageRequest, PageRun, editor_image_and_mask, std_heat_map

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _digit_and_mask():
    from PIL import Image

    image = np.asarray(Image.open(EXAMPLES[0]).convert("RGB"))
    missing = np.zeros(image.shape[:2], dtype=bool)
    missing[:, image.shape[1] // 2 :] = True
    return image, missing


def _finish(run: PageRun) -> PageRun:
    events = list(run.drain())
    run.events_seen = events
    return run


def test_a_page_run_is_the_cli_run_of_its_downloaded_config(tmp_path, monkeypatch):
    image, missing = _digit_and_mask()
    run = _finish(PageRun(image, missing, PageRequest(num_samples=2, steps=3)).start())
    assert run.error is None
    fit_steps = [e[1] for e in run.events_seen if e[0] == "fit"]
    assert fit_steps == [1, 2, 3] and {"reconstruction", "diffusion", "loss"} <= set(run.events_seen[0][3])
    # the corrector's steps at both levels of the hierarchy (50 each), then the chain's, numbered on: no pause unreported
    sampling = [e for e in run.events_seen if e[0] == "sample"]
    corrector = [e[1] for e in sampling if e[2] == "corrector"]
    chain = [e[1] for e in sampling if e[2] == "chain"]
    assert corrector == list(range(100)) and chain == list(range(100, 100 + len(chain))) and chain
    out = run.output()
    assert len(out.samples) == 2 and out.std_map.is_file()
    with zipfile.ZipFile(out.download) as zf:
        names = set(zf.namelist())
        assert {"config.yaml", "images/query.png", "masks/query.png", "outputs/query/result.pt",
                "outputs/query/sample_01.png", "outputs/query/std_map.png"} <= names
        zf.extractall(tmp_path / "unzipped")
    page = torch.load(tmp_path / "unzipped" / "outputs" / "query" / "result.pt")["samples"]
    monkeypatch.chdir(tmp_path / "unzipped")  # the download reruns with the command line, from its folder
    assert main(["inpaint", "--config", "config.yaml", "--data.output_dir", "rerun"]) == 0
    torch.testing.assert_close(torch.load(tmp_path / "unzipped" / "rerun" / "query" / "result.pt")["samples"], page)


@pytest.mark.parametrize("method", ["dps", "repaint"])
def test_other_methods_run_from_the_page(method):
    image, missing = _digit_and_mask()
    prior = {"prior_source": "embedded:digits-pixel", "prior_kind": "pixel", "image_size": 16} if method == "repaint" \
        else {}
    run = _finish(PageRun(image, missing, PageRequest(method=method, num_samples=2, steps=4, **prior)).start())
    assert run.error is None and len(run.output().samples) == 2
    assert not any(e[0] == "fit" for e in run.events_seen)


def test_bad_input_gives_a_message_not_a_crash():
    image, missing = _digit_and_mask()
    with pytest.raises(ShapeError, match="upload an image"):
        editor_image_and_mask({"background": None, "layers": []})
    with pytest.raises(MaskError, match="hides nothing"):
        editor_image_and_mask({"background": image, "layers": [np.zeros((*image.shape[:2], 4), np.uint8)]})
    layer = np.zeros((*image.shape[:2], 4), np.uint8)
    layer[:3, :5, 3] = 255
    got_image, got_missing = editor_image_and_mask({"background": np.dstack([image, image[..., :1]]), "layers": [layer]})
    assert got_image.shape == image.shape and got_missing.sum() == 15
    cases = [(np.ones_like(missing), PageRequest(), "has no observed pixel"),
             (missing, PageRequest(channels=3), "the images have 3 channels but the prior expects 1"),
             (missing, PageRequest(prior_source="/no/such/prior"), "does not exist")]
    for mask, req, message in cases:
        run = _finish(PageRun(image, mask, req).start())
        assert run.error is not None and message in run.error, run.error


def test_run_folders_older_than_an_hour_are_pruned(tmp_path):
    from vipaint_pl.serve import RUN_PREFIX, prune_old_runs

    old, new, other = tmp_path / f"{RUN_PREFIX}old", tmp_path / f"{RUN_PREFIX}new", tmp_path / "someone_else"
    for folder in (old, new, other):
        (folder / "outputs").mkdir(parents=True)
    two_hours_ago = time.time() - 7200
    for folder in (old, other):
        os.utime(folder, (two_hours_ago, two_hours_ago))
    assert prune_old_runs(tmp_path) == 1
    assert not old.exists() and new.exists() and other.exists()


def test_the_heat_map_goes_from_black_to_pale_yellow():
    samples = torch.zeros(3, 1, 2, 2)
    samples[:, 0, 0, 1] = torch.tensor([-1.0, 0.0, 1.0])
    heat = std_heat_map(samples)
    assert heat.shape == (2, 2, 3) and heat.dtype == np.uint8
    assert heat[0, 0].tolist() == [0, 0, 0] and heat[0, 1].tolist() == [255, 255, 220]


# ---- in a real browser ---------------------------------------------------------------------------------

needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None or shutil.which("chromium") is None,
    reason="no browser: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("gradio")
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "vipaint_pl.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read())
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _open_with_example(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "button.gallery-item"), 60)
    driver.find_elements(By.CSS_SELECTOR, "button.gallery-item")[0].click()  # the first bundled example
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#editor canvas"), 30)
    time.sleep(1.5)


def _set_number(driver, elem_id, value):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    box.clear()
    box.send_keys(str(value))


def _wait(condition, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(f"condition not met in {timeout} s")


@needs_browser
def test_paint_a_stroke_run_and_download_in_a_browser(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open_with_example(browser, server)
    canvas = browser.find_elements(By.CSS_SELECTOR, "#editor canvas")[-1]
    for dx in range(30, 140, 8):  # brush strokes down the right half of the digit
        ActionChains(browser).move_to_element_with_offset(canvas, dx, -150).click_and_hold() \
            .move_by_offset(0, 100).move_by_offset(0, 100).move_by_offset(0, 100).release().perform()
    _set_number(browser, "samples", 3)
    _set_number(browser, "steps", 8)
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    images = _wait(lambda: (lambda found: found if len(found) >= 3 else None)(
        browser.find_elements(By.CSS_SELECTOR, "#gallery img")), 300)
    assert len(images) == 3
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#std img"), 30)
    assert browser.find_elements(By.CSS_SELECTOR, "#mean img")
    assert browser.find_elements(By.CSS_SELECTOR, "#bound canvas, #bound svg")  # the bound's live plot
    link = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#download a"), 30)[0].get_attribute("href")
    with zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(link, timeout=30).read())) as zf:
        assert {"config.yaml", "outputs/query/result.pt", "outputs/query/sample_02.png"} <= set(zf.namelist())
        samples = torch.load(io.BytesIO(zf.read("outputs/query/result.pt")))["samples"]
        mask = torch.load(io.BytesIO(zf.read("outputs/query/result.pt")))["mask"]
    assert samples.shape == (3, 1, 32, 32)
    assert 0.2 < float(1 - mask.mean()) < 0.8  # the painted stroke became the missing region
    time.sleep(1)
    shot = tmp_path / "serve.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("VIPAINT_SCREENSHOT"):  # how the README's screenshot is made
        shutil.copy(shot, os.environ["VIPAINT_SCREENSHOT"])
    assert shot.stat().st_size > 10_000


@needs_browser
def test_bad_input_shows_a_message_and_the_server_keeps_serving(server, browser):
    from selenium.webdriver.common.by import By

    _open_with_example(browser, server)  # nothing painted: the mask hides nothing
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    _wait(lambda: "the mask hides nothing" in browser.page_source, 60)
    browser.get(server)  # the server is still up and answers a new page
    assert _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#run"), 60)


@needs_browser
def test_four_concurrent_runs_all_complete(server, tmp_path):
    """A bounded load test on loopback: 4 runs sent at once through the page's API are queued and all finish.
    They run DPS with 5 steps: the queue is the point here (the page's VIPaint runs are the tests above)."""
    from gradio_client import Client, handle_file
    from PIL import Image

    image, missing = _digit_and_mask()
    Image.fromarray((missing * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    client = Client(server, verbose=False)
    jobs = [client.submit(handle_file(str(EXAMPLES[0])), handle_file(str(tmp_path / "mask.png")), "dps",
                          "embedded:digits-latent", "latent", 32, 1, 2, 5, seed, api_name="/inpaint")
            for seed in range(4)]
    results = [job.result(timeout=600) for job in jobs]
    assert all(len(r[0]) == 2 for r in results)
