import pytest
import torch

from vipaint_pl.metrics import completion_metrics


def _posterior_draws(width: float, queries: int = 200, seed: int = 0):
    """Per query a Gaussian 'posterior' over the right half of a 16 x 16 image (std 0.2): its truth, 10 samples of
    ``width`` times its std, and the mask (1 = observed); the observed half of the samples is set far off."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(1, 16, 16)
    mask[..., 8:] = 0
    for _ in range(queries):
        mean = -0.5 + torch.rand(1, 16, 16, generator=g)
        truth = (mean + 0.2 * torch.randn(1, 16, 16, generator=g) * (1 - mask)).clamp(-1, 1)
        samples = mean + 0.2 * width * torch.randn(10, 1, 16, 16, generator=g) * (1 - mask) + 0.5 * mask
        yield samples, truth, mask


@pytest.mark.parametrize("width, ratio", [(1.0, 1.0), (0.5, 2.5), (2.0, 0.625)])
def test_error_over_spread_is_one_for_posterior_draws_and_the_width_error_otherwise(width, ratio):
    """Summed over queries, error / spread is 1 for samples as wide as the posterior, (1 + w^2) / (2 w^2) for samples
    w times as wide; the observed pixels (far off in the samples) do not count."""
    per_query = [completion_metrics(*draws) for draws in _posterior_draws(width)]
    assert all(m["pixels"] == 128 for m in per_query)
    summed = sum(m["squared_error"] for m in per_query) / sum(m["squared_spread"] for m in per_query)
    assert summed == pytest.approx(ratio, rel=0.06)


def test_psnr_over_the_missing_pixels_and_over_every_pixel_when_none_is_missing():
    truth = torch.zeros(3, 8, 8)
    samples = torch.stack([truth + 0.2, truth - 0.2])  # 0.1 off in [0, 1] units: MSE 0.01, 20 dB
    mask = torch.ones(8, 8)
    mask[:4] = 0
    samples[:, :, 4:] = 0.9  # observed pixels: not measured
    m = completion_metrics(samples, truth, mask)
    assert m["pixels"] == 32 and m["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert m["squared_error"] == pytest.approx(0.01) and m["squared_spread"] == pytest.approx(0.04)
    assert m["error_over_spread"] == pytest.approx(0.25)
    every = completion_metrics(torch.stack([truth + 0.2, truth - 0.2]), truth, torch.ones(8, 8))
    assert every["pixels"] == 64 and every["psnr"] == pytest.approx(20.0, abs=1e-4)
    assert "error_over_spread" not in completion_metrics(samples[:1], truth, mask)  # one sample: no spread
