"""Seeded mask generators and mask files. Convention everywhere: 1 = observed, 0 = missing.

Generators return float tensors of shape (1, H, W). Files follow the diffusers / LaMa convention by
default: white pixels are missing (to be inpainted), black pixels are observed; pass
``missing="black"`` for the opposite (RePaint's "keep" masks).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from .errors import ConfigError, ImageReadError, MaskError

MASK_KINDS = ("random", "small", "half", "box", "extreme")


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _draw_strokes_and_boxes(h: int, w: int, rng: np.random.Generator, max_items: int) -> np.ndarray:
    """One draw of holes after Zhao et al. 2021 (CoModGAN): random boxes plus random brush strokes."""
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    s = min(h, w)
    for _ in range(rng.integers(0, max_items + 1)):  # boxes of random size and aspect
        bw, bh = rng.integers(s // 8, s // 2 + 1, size=2)
        x0, y0 = rng.integers(-bw // 2, w - bw // 2), rng.integers(-bh // 2, h - bh // 2)
        draw.rectangle([x0, y0, x0 + bw, y0 + bh], fill=255)
    for _ in range(rng.integers(1, max_items + 1)):  # brush strokes: random walks with a wide pen
        width = int(rng.integers(max(1, s // 16), max(2, s // 5) + 1))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(rng.integers(2, 7)):
            angle += rng.uniform(-math.pi / 3, math.pi / 3)
            length = rng.uniform(s / 8, s / 3)
            nx = float(np.clip(x + length * math.cos(angle), 0, w - 1))
            ny = float(np.clip(y + length * math.sin(angle), 0, h - 1))
            draw.line([(x, y), (nx, ny)], fill=255, width=width)
            r = width / 2
            draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
            x, y = nx, ny
    return np.asarray(img) > 0


def random_mask(h: int, w: int, hole_range=(0.4, 0.8), seed=None, max_tries: int = 1000) -> torch.Tensor:
    """Free-form mask of boxes and brush strokes whose hole ratio lies in ``hole_range``.

    Holes are added draw by draw until the ratio reaches the lower end; a draw that overshoots the
    upper end is discarded, so every returned mask is inside the range.
    """
    lo, hi = hole_range
    if not 0 <= lo < hi <= 1:
        raise ConfigError(f"hole_range must satisfy 0 <= low < high <= 1, got {hole_range}")
    rng = _rng(seed)
    for _ in range(max_tries):
        hole = np.zeros((h, w), dtype=bool)
        while hole.mean() < lo:
            hole |= _draw_strokes_and_boxes(h, w, rng, max_items=3)
        if lo <= hole.mean() <= hi and hole.any():
            return torch.from_numpy(~hole).float()[None]
    raise RuntimeError(f"could not draw a mask with hole ratio in {hole_range} after {max_tries} tries")


def small_mask(h: int, w: int, seed=None) -> torch.Tensor:
    """Free-form mask hiding at most 20 % of the image (VIPaint, Agarwal et al., arXiv 2024, Table 1 "small")."""
    return random_mask(h, w, (0.05, 0.2), seed)


def half_plane_mask(h: int, w: int, seed=None) -> torch.Tensor:
    """Everything on one side of a line through the centre, at a random angle, is missing."""
    theta = _rng(seed).uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    side = (xx - (w - 1) / 2) * math.cos(theta) + (yy - (h - 1) / 2) * math.sin(theta)
    return torch.from_numpy(side < 0).float()[None]


def box_mask(h: int, w: int, fraction: float = 0.5, seed=None) -> torch.Tensor:
    """A centred box of side ``fraction`` of the image is missing."""
    keep = np.ones((h, w), dtype=bool)
    bh, bw = max(1, round(h * fraction)), max(1, round(w * fraction))
    keep[(h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = False
    return torch.from_numpy(keep).float()[None]


def extreme_mask(h: int, w: int, fraction: float = 0.5, seed=None) -> torch.Tensor:
    """Inverse box: only a centred box of side ``fraction`` is observed."""
    return 1.0 - box_mask(h, w, fraction)


def make_mask(kind: str, h: int, w: int, seed=None) -> torch.Tensor:
    """A mask by name: random (40-80 % missing), small (<= 20 %), half, box, extreme."""
    makers = {
        "random": lambda: random_mask(h, w, (0.4, 0.8), seed),
        "small": lambda: small_mask(h, w, seed),
        "half": lambda: half_plane_mask(h, w, seed),
        "box": lambda: box_mask(h, w),
        "extreme": lambda: extreme_mask(h, w),
    }
    if kind not in makers:
        raise ConfigError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    return makers[kind]()


def read_mask(path, size=None, missing: str = "white", threshold: float | None = None) -> torch.Tensor:
    """Read a mask image as a (1, H, W) tensor with 1 = observed.

    size: an int or (H, W): centre-crop and resize by nearest neighbour, as ``load_image`` does to its
    image (the file must have the image file's size: see ``QueryDataModule``).
    missing: which colour marks missing pixels in the file ("white", the default, or "black").
    threshold: in [0, 1]; if given, grey values are binarized at it. Without it a mask with grey
    values (other than 0 and 255) is rejected, since a JPEG-compressed or anti-aliased mask would
    otherwise silently move the boundary.
    """
    from .image_io import to_8bit, crop_resize

    if missing not in ("white", "black"):
        raise ConfigError(f"missing must be 'white' or 'black', got {missing!r}")
    try:
        with Image.open(path) as im:
            im = to_8bit(im).convert("L")  # the colour is the mask; an alpha channel is ignored
            arr = np.asarray(im, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageReadError(f"cannot read mask file {str(path)!r}: {exc}") from exc
    if threshold is None:
        grey = (arr > 0) & (arr < 1)
        if grey.any():
            raise MaskError(
                f"mask file {str(path)!r} is not binary: {int(grey.sum())} pixels are grey "
                f"(e.g. {int(arr[grey][0] * 255)}); pass a threshold (e.g. 0.5) to binarize it"
            )
        threshold = 0.5
    white = arr >= threshold
    observed = ~white if missing == "white" else white
    if size is not None:
        observed = np.asarray(crop_resize(Image.fromarray(observed), size, Image.NEAREST))
    if not observed.any():
        raise MaskError(f"mask file {str(path)!r} has no observed pixel (with missing={missing!r})")
    return torch.from_numpy(np.array(observed, dtype=np.float32))[None]


def write_mask(mask: torch.Tensor, path, missing: str = "white") -> None:
    """Write a (1, H, W) or (H, W) mask (1 = observed) with the same file convention as ``read_mask``."""
    m = mask.reshape(mask.shape[-2:]).cpu().numpy() > 0.5
    white = ~m if missing == "white" else m
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((white * 255).astype(np.uint8)).save(path)
