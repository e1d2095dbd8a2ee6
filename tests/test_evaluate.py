"""The image benchmark's metrics on cases with known answers."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


class _Always(torch.nn.Module):
    """A 'classifier' that always answers digit 3."""

    def forward(self, x):
        return torch.nn.functional.one_hot(torch.full((x.shape[0],), 3), 10).float()


def test_image_metrics_on_exact_and_shifted_samples():
    from evaluate import image_metrics

    from vipaint_pl.datasets import digits
    from vipaint_pl.perceptual import PerceptualDistance

    truth = digits(16, "test")[0][:1]
    st = PerceptualDistance("st-lpips")
    exact = image_metrics(truth.repeat(4, 1, 1, 1), truth, 3, _Always(), st)
    assert exact["ssim"] > 0.999 and exact["st_lpips"] < 1e-4 and exact["diversity"] == 0.0
    assert exact["digit_accuracy"] == 1.0 and exact["lpips"] != exact["lpips"]  # LPIPS: NaN when not given
    noisy = truth + 0.2 * torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    worse = image_metrics(noisy, truth, 5, _Always(), st)
    assert worse["psnr"] < 30 and worse["st_lpips"] > exact["st_lpips"] and worse["diversity"] > 0.05
    assert worse["digit_accuracy"] == 0.0
