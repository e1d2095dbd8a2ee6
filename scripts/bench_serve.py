"""Load test of ``vipaint serve`` on loopback: N runs sent at once through the page's API, all must complete.

Starts the server as a user would (``vipaint serve --port P``), submits N requests at the same moment
(VIPaint-2 on the embedded latent digit prior, the first bundled example, the right half missing, each with its
own seed), and reports for each the seconds from submission to result (the page runs one request at a time,
so the later ones include their wait in the queue). Prints a Markdown table.

    python scripts/bench_serve.py --runs 4 --steps 50 --samples 4
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50, help="VIPaint fit steps per run")
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    from vipaint_pl.serve import EXAMPLES

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "vipaint_pl.cli", "serve", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        image = np.asarray(Image.open(EXAMPLES[0]))
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[:, image.shape[1] // 2 :] = 255  # white = missing
        mask_path = Path(tempfile.mkdtemp()) / "mask.png"
        Image.fromarray(mask).save(mask_path)
        client = Client(url, verbose=False)

        def one(seed: int) -> tuple[int, float, int]:
            start = time.perf_counter()
            result = client.predict(handle_file(str(EXAMPLES[0])), handle_file(str(mask_path)), "vipaint",
                                    "embedded:digits-latent", "latent", 32, 1, args.samples, args.steps, seed,
                                    api_name="/inpaint")
            return seed, time.perf_counter() - start, len(result[0])

        start = time.perf_counter()
        with ThreadPoolExecutor(args.runs) as pool:
            done = list(pool.map(one, range(args.runs)))
        total = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{len(done)} of {args.runs} runs complete, {sum(n == args.samples for _, _, n in done)} with all "
          f"{args.samples} samples; {total:.1f} s in all, {total / args.runs:.1f} s per run\n")
    print("| run (seed) | seconds from submission to result | samples |")
    print("|---|---|---|")
    for seed, seconds, n in sorted(done, key=lambda r: r[1]):
        print(f"| {seed} | {seconds:.1f} | {n} |")


if __name__ == "__main__":
    main()
