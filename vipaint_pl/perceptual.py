"""Perceptual distances: LPIPS (needs downloadable ImageNet weights) or ST-LPIPS (weights ship offline).

ST-LPIPS is the shift-tolerant LPIPS of Ghildyal & Liu (ECCV 2022); its values are not comparable
with published LPIPS figures, and every figure here names which one it used.
"""

from __future__ import annotations

from torch import Tensor, nn

from .errors import ConfigError

PERCEPTUAL_KINDS = ("none", "st-lpips", "lpips")


class PerceptualDistance(nn.Module):
    """Per-sample distance between images in [-1, 1]; greyscale images are repeated to RGB. Frozen."""

    def __init__(self, kind: str = "st-lpips", net: str = "alex"):
        super().__init__()
        if kind == "st-lpips":
            from stlpips_pytorch import stlpips

            self.net = stlpips.LPIPS(net=net, variant="shift_tolerant", verbose=False)
        elif kind == "lpips":
            try:
                import lpips

                self.net = lpips.LPIPS(net=net, verbose=False)
            except Exception as exc:  # the backbone is downloaded from the internet at first use
                raise ConfigError(
                    f"LPIPS ({net}) needs ImageNet backbone weights that could not be loaded ({type(exc).__name__}: "
                    f"{exc}); put them in the torch hub cache (TORCH_HOME) or use perceptual='st-lpips'"
                ) from exc
        else:
            raise ConfigError(f"unknown perceptual distance {kind!r}; choose one of {', '.join(PERCEPTUAL_KINDS)}")
        self.kind = kind
        self.net.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        return self.net(a.float(), b.float()).flatten()


def build_perceptual(kind: str) -> PerceptualDistance | None:
    return None if kind in (None, "none") else PerceptualDistance(kind)
