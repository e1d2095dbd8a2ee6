"""Writes the quickstart's bundled inputs: two held-out digits (32x32) and their masks (white = missing).

digit_a (a 0 behind a half-plane) leaves one digit; digit_b (held-out digit 4, an 8, behind a half-plane at
the angle of seed 4) leaves more than one: DPS's 10 samples (250 steps) read as 1 and 8, and so do the default
VIPaint's (BENCHMARKS.md, "The quickstart's second digit"). ``--search 5`` lists what both complete for the held-out
digits 0-4, each behind the half-plane of its own index: digits 2 and 4 are the first where DPS's samples show more
than one digit; on digit 2 VIPaint's read as 4 and 9 only (not the true 8), on digit 4 as 1 and 8, so digit 4
is the one bundled (the quickstart then shows the true digit among the alternatives).

``--read DIR ...`` reads the quickstart's outputs (each ``DIR/<digit>/result.pt``) the same way, with the per-pixel
standard deviation over the samples in the missing region.

    python scripts/make_quickstart_example.py
    python scripts/make_quickstart_example.py --search 5
    python scripts/make_quickstart_example.py --read outputs/quickstart
"""

import argparse
from pathlib import Path

import torch

from vipaint_pl.datasets import digits
from vipaint_pl.image_io import save_image
from vipaint_pl.masks import half_plane_mask

OUT = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def search(count: int) -> None:
    """For held-out digits 0..count-1, each behind ``half_plane_mask(seed=index)``: the digits that the evaluation's
    classifier reads in 10 samples of DPS (250 steps) and of the default VIPaint on the quickstart's prior."""
    from evaluate import train_classifier

    from vipaint_pl.methods import method_config, run_method
    from vipaint_pl.operators import Inpainting
    from vipaint_pl.priors import load_prior

    prior, (net, _) = load_prior("latent", "embedded:digits-latent"), train_classifier(32)
    images, labels = digits(32, "test")
    for i in range(count):
        op = Inpainting(half_plane_mask(32, 32, seed=i)[None])
        for method, changes in (("dps", {"steps": 250}), ("vipaint", {})):
            z = run_method(method, prior, op, op(images[i : i + 1]), 10, seed=0, names=[f"d{i}"],
                           config=method_config(method, changes))
            with torch.no_grad():
                read = net(prior.decode(z).clamp(-1, 1)).argmax(1).tolist()
            print(f"held-out digit {i} (label {int(labels[i])}): {method}'s samples read as {read}", flush=True)


def read(dirs: list[str]) -> None:
    """What the classifier reads in each bundled digit's samples under each folder, and their per-pixel standard
    deviation in the missing region (white in the bundled mask)."""
    from evaluate import train_classifier

    from vipaint_pl.image_io import load_image

    net, _ = train_classifier(32)
    for folder in dirs:
        for name in ("digit_a", "digit_b"):
            path = Path(folder) / name / "result.pt"
            if not path.is_file():
                raise SystemExit(f"{path}: not found (the quickstart writes it in its output folder)")
            samples = torch.load(path)["samples"]
            missing = load_image(OUT / "masks" / f"{name}.png", size=32, channels=1) > 0
            with torch.no_grad():
                reads = net(samples.clamp(-1, 1)).argmax(1).tolist()
            std = float(samples.std(0)[missing].mean())
            print(f"{folder} {name}: samples read as {reads}; std in the missing region {std:.3f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--search", type=int, default=0,
                        help="list what DPS and VIPaint complete for this many held-out digits")
    parser.add_argument("--read", nargs="+", default=None, help="quickstart output folders to read")
    args = parser.parse_args(argv)
    if args.read:
        read(args.read)
        return
    if args.search:
        torch.set_grad_enabled(True)
        search(args.search)
        return
    images, labels = digits(32, "test")
    picks = {"digit_a": 0, "digit_b": 4}
    masks = {"digit_a": half_plane_mask(32, 32, seed=3), "digit_b": half_plane_mask(32, 32, seed=4)}
    for name, i in picks.items():
        save_image(images[i], OUT / "images" / f"{name}.png")
        save_image(1 - 2 * masks[name].float(), OUT / "masks" / f"{name}.png")  # observed -> black, missing -> white
        print(name, "label", int(labels[i]))


if __name__ == "__main__":
    main()
