"""The Lightning shell: one module per kind of method (VIPaint fits; every other method only samples)."""

from .data import QueryDataModule
from .module import InpaintingModule, OutputConfig, PriorSpec
from .sampler_module import SamplerModule
from .strategy import PerQueryDDPStrategy
from .trainer import VipaintTrainer, make_trainer
from .vipaint_module import VIPaintModule
from .writer import PredictionWriter

__all__ = ["QueryDataModule", "InpaintingModule", "OutputConfig", "PriorSpec", "SamplerModule", "VIPaintModule",
           "PredictionWriter", "PerQueryDDPStrategy", "VipaintTrainer", "make_trainer"]
