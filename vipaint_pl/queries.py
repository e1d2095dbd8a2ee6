"""An inpainting query (image + mask) and the checks every user input goes through."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .console import warn
from .errors import ShapeError, check_binary_mask, check_finite


def validate_mask(mask: Tensor, name: str = "mask") -> Tensor:
    """A (1, H, W) binary float mask with at least one observed pixel (1 = observed)."""
    mask = torch.as_tensor(mask)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3 or mask.shape[0] != 1:
        raise ShapeError(f"{name} must have shape (H, W) or (1, H, W), got {tuple(mask.shape)}")
    check_finite(name, mask.float())
    check_binary_mask(name, mask)
    return mask.float()


def validate_image(image: Tensor, channels: int | None = None, name: str = "image") -> Tensor:
    """A (C, H, W) float image in [-1, 1] with the expected channel count."""
    image = torch.as_tensor(image)
    if image.ndim != 3:
        raise ShapeError(f"{name} must have shape (C, H, W), got {tuple(image.shape)}")
    if channels is not None and image.shape[0] != channels:
        raise ShapeError(f"{name} has {image.shape[0]} channels but the prior expects {channels}")
    check_finite(name, image)
    if image.min() < -1.001 or image.max() > 1.001:
        raise ShapeError(f"{name} values must lie in [-1, 1], found [{float(image.min()):.3g}, {float(image.max()):.3g}]")
    return image.float()


@dataclass
class Query:
    """One query: the observed image (A^+ y, zero where missing), its mask, and (optionally) the truth."""

    name: str
    observed: Tensor  # (C, H, W), zero where missing
    mask: Tensor  # (1, H, W), 1 = observed
    truth: Tensor | None = None


def make_query(name: str, image: Tensor, mask: Tensor, channels: int | None = None, truth_known: bool = True,
               inpainting: bool = True) -> Query:
    """Validate an image and mask and build the query (the image is masked here). An inpainting mask
    that hides nothing is allowed, with a warning."""
    image = validate_image(image, channels, name=f"image {name!r}")
    mask = validate_mask(mask, name=f"mask of {name!r}")
    if mask.shape[-2:] != image.shape[-2:]:
        raise ShapeError(f"mask size {tuple(mask.shape[-2:])} does not match image size {tuple(image.shape[-2:])} "
                         f"for query {name!r}")
    if inpainting and bool(mask.all()):
        warn(f"the mask of {name!r} hides nothing: its samples will be the image itself")
    return Query(name, image * mask, mask, image if truth_known else None)
