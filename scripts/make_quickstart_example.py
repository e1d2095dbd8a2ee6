"""Writes the quickstart's bundled inputs: two held-out digits (32x32) and their masks (white = missing).

    python scripts/make_quickstart_example.py
"""

from pathlib import Path

from vipaint_pl.datasets import digits
from vipaint_pl.image_io import save_image
from vipaint_pl.masks import box_mask, half_plane_mask

OUT = Path(__file__).resolve().parents[1] / "examples" / "quickstart"


def main() -> None:
    images, labels = digits(32, "test")
    picks = {"digit_a": 0, "digit_b": 1}
    masks = {"digit_a": half_plane_mask(32, 32, seed=3), "digit_b": box_mask(32, 32, 0.5)}
    for name, i in picks.items():
        save_image(images[i], OUT / "images" / f"{name}.png")
        save_image(1 - 2 * masks[name].float(), OUT / "masks" / f"{name}.png")  # observed -> black, missing -> white
        print(name, "label", int(labels[i]))


if __name__ == "__main__":
    main()
