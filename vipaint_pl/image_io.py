"""Reading and writing images as tensors in [-1, 1], and result grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import ImageReadError, ShapeError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _hw(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def crop_resize(im: Image.Image, size, resample=Image.LANCZOS) -> Image.Image:
    """Centre-crop a PIL image to the aspect ratio of ``size`` (an int or (H, W)), then resize it.
    Images use Lanczos; masks use nearest neighbour, so they stay binary and match their image."""
    h, w = _hw(size)
    if h < 1 or w < 1:
        raise ShapeError(f"image size must be at least 1x1, got {h}x{w}")
    W, H = im.size
    scale = min(W / w, H / h)
    cw, ch = round(w * scale), round(h * scale)
    left, top = (W - cw) // 2, (H - ch) // 2
    return im.crop((left, top, left + cw, top + ch)).resize((w, h), resample)


def image_file_size(path) -> tuple[int, int]:
    """(H, W) of an image file, read from its header."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageReadError(f"cannot read image file {str(path)!r}: {exc}") from exc


def load_image(path, size=None, channels: int = 3) -> torch.Tensor:
    """Read an image file as a (C, H, W) float tensor in [-1, 1].

    size: an int or (H, W); the image is centre-cropped to that aspect ratio, then resized (Lanczos).
    channels: 3 for RGB, 1 for greyscale. Alpha is dropped; 16-bit files are scaled to [-1, 1] too.
    """
    if channels not in (1, 3):
        raise ShapeError(f"channels must be 1 or 3, got {channels}")
    try:
        with Image.open(path) as im:
            im = to_8bit(im).convert("RGB" if channels == 3 else "L")
            if size is not None:
                im = crop_resize(im, size)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageReadError(f"cannot read image file {str(path)!r}: {exc}") from exc
    return torch.from_numpy(arr.reshape(arr.shape[0], arr.shape[1], -1)).permute(2, 0, 1).contiguous()


def to_8bit(im: Image.Image) -> Image.Image:
    """16- and 32-bit greyscale files (PIL modes I;16, I) scaled to 8 bits; PIL's own convert would clip them."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return im


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, C) uint8 (C = 1 is squeezed)."""
    if x.ndim != 3:
        raise ShapeError(f"expected an image of shape (C, H, W), got {tuple(x.shape)}")
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def save_image(x: torch.Tensor, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(x)).save(path)


def make_grid(images: list[torch.Tensor], pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Lay out (C, H, W) images in one row; greyscale images are broadcast to the widest channel count."""
    if not images:
        raise ShapeError("make_grid needs at least one image")
    c = max(im.shape[0] for im in images)
    h = max(im.shape[1] for im in images)
    tiles = []
    for im in images:
        im = im.detach().float().cpu().expand(c, -1, -1)
        tile = torch.full((c, h, im.shape[2]), pad_value)
        tile[:, : im.shape[1]] = im
        tiles += [tile, torch.full((c, h, pad), pad_value)]
    return torch.cat(tiles[:-1], dim=2)


def save_grid(rows: list[list[torch.Tensor]], path, pad: int = 2) -> None:
    """Save rows of (C, H, W) images as one picture."""
    lines = [make_grid(r, pad) for r in rows]
    width = max(line.shape[2] for line in lines)
    c = max(line.shape[0] for line in lines)
    out = []
    for line in lines:
        full = torch.ones(c, line.shape[1], width)
        full[:, :, : line.shape[2]] = line.expand(c, -1, -1)
        out += [full, torch.ones(c, pad, width)]
    save_image(torch.cat(out[:-1], dim=1), path)


def list_images(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(f"image folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageReadError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    return files
