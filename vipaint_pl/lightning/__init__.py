from .data import QueryDataModule, make_operator
from .module import InpaintingModule, PriorSpec, SamplingConfig, VIPaintModule
from .samplers import BlendedModule, CoPaintModule, DPSModule, REDDiffModule, RePaintModule, ReSampleModule, SamplerModule
from .strategy import PerQueryDDPStrategy
from .writer import PredictionWriter

__all__ = ["QueryDataModule", "make_operator", "InpaintingModule", "PriorSpec", "SamplingConfig", "VIPaintModule",
           "PredictionWriter", "PerQueryDDPStrategy",
           "SamplerModule", "DPSModule", "BlendedModule", "REDDiffModule", "RePaintModule",
           "CoPaintModule", "ReSampleModule"]
