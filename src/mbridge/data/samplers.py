"""`megatron.bridge.data.samplers`: the data-parallel samplers and their DataLoader builder."""

from mbridge_data.loaders import build_pretraining_data_loader
from mbridge_data.samplers import MegatronPretrainingRandomSampler, MegatronPretrainingSampler

__all__ = ["MegatronPretrainingRandomSampler", "MegatronPretrainingSampler",
           "build_pretraining_data_loader"]
