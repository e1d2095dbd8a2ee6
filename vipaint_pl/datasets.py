"""Image data that ships with installed packages, with a fixed train / held-out split.

scikit-learn's handwritten digits (1797 images of 8x8, 17 grey levels) upsampled to the size asked
for, in [-1, 1] with white strokes on black. The split is a seeded permutation: the first 80 % train
the embedded priors and the digit classifier, the rest are only used for evaluation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError

SPLITS = ("train", "test")
TRAIN_FRACTION = 0.8


def digits(size: int = 32, split: str = "train", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 1, size, size) in [-1, 1] and labels (N,) of one split of scikit-learn's digits."""
    from sklearn.datasets import load_digits

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    order = torch.tensor(np.random.default_rng(seed).permutation(len(labels)))
    cut = int(TRAIN_FRACTION * len(labels))
    keep = order[:cut] if split == "train" else order[cut:]
    images = F.interpolate(images[keep], size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1) * 2 - 1, labels[keep]
