"""vipaint_pl: inpainting and linear inverse problems with pretrained diffusion priors."""

from . import masks, operators, schedule
from .errors import ConfigError, ImageReadError, MaskError, PriorLoadError, ShapeError, VipaintError
from .image_io import load_image, save_grid, save_image
from .operators import DenseLinear, GaussianBlur, Inpainting, SuperResolution
from .priors import (
    DiffusionPrior,
    GaussianMixturePrior,
    LatentDiffusersPrior,
    PixelDiffusersPrior,
    StableDiffusionPrior,
    load_prior,
)
from .schedule import NoiseSchedule

__version__ = "0.1.0"
