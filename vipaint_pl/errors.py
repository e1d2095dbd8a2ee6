"""Exceptions raised for bad user input. Each message names the offending value."""


class VipaintError(ValueError):
    """Base class of every error this library raises for bad input."""


class MaskError(VipaintError):
    """A mask is not binary, is empty, or does not fit the image."""


class ShapeError(VipaintError):
    """A tensor has the wrong number of channels, dimensions or size."""


class ImageReadError(VipaintError):
    """An image or mask file could not be read."""


class PriorLoadError(VipaintError):
    """A pretrained prior could not be found locally nor downloaded."""


class ConfigError(VipaintError):
    """A configuration value is out of its allowed range."""


class CheckpointError(VipaintError):
    """A checkpoint or result file cannot be used (missing, written for other queries, or unsafe to load)."""


class ScheduleError(VipaintError):
    """A noise schedule or a diffusion time is invalid (times out of range, a transition that goes up)."""


def check_finite(name: str, tensor) -> None:
    """Raise a ``VipaintError`` if ``tensor`` holds NaN or infinite values."""
    import torch

    bad = ~torch.isfinite(tensor)
    if bad.any():
        raise VipaintError(f"{name} contains {int(bad.sum())} NaN or infinite values")


def check_binary_mask(name: str, mask) -> None:
    """Raise a ``MaskError`` unless ``mask`` holds only 0 (missing) and 1 (observed), with at least one 1."""
    import torch

    values = torch.unique(mask)
    if not torch.isin(values, torch.tensor([0, 1], dtype=values.dtype, device=values.device)).all():
        raise MaskError(f"{name} must be binary (0 = missing, 1 = observed); found values {values[:6].tolist()}")
    if mask.sum() == 0:
        raise MaskError(f"{name} has no observed pixel: nothing to condition on")
