"""ConfigContainer and the typed sub-configs of mbridge (the Megatron Bridge configuration API)."""

from mbridge_config import quiet as _quiet

_quiet.drop_inapplicable()  # before megatron-core is imported: it warns at import

from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.optimizer import OptimizerConfig

from mbridge_config.comm_overlap import CommOverlapConfig
from mbridge_config.container import ConfigContainer
from mbridge_config.data import (
    DataloaderConfig,
    FinetuningDatasetConfig,
    GPTDatasetConfig,
    MockGPTDatasetConfig,
    PackedSequenceSpecs,
)
from mbridge_config.errors import ConfigError
from mbridge_config.mixed_precision import MixedPrecisionConfig, get_mixed_precision_config
from mbridge_config.overrides import apply_overrides
from mbridge_config.protocols import ModelProviderProtocol, PEFTProtocol
from mbridge_config.training import (
    CheckpointConfig,
    DistributedInitConfig,
    FaultToleranceConfig,
    LoggerConfig,
    ProfilingConfig,
    RerunStateMachineConfig,
    RNGConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainingConfig,
)
from mbridge_config.vocab import resolve_vocab_size

__version__ = "0.1.0"

__all__ = [
    "CheckpointConfig", "CommOverlapConfig", "ConfigContainer", "ConfigError", "DataloaderConfig",
    "DistributedDataParallelConfig", "DistributedInitConfig", "FaultToleranceConfig",
    "FinetuningDatasetConfig", "GPTDatasetConfig", "LoggerConfig", "MixedPrecisionConfig",
    "MockGPTDatasetConfig", "ModelProviderProtocol", "OptimizerConfig", "PEFTProtocol",
    "PackedSequenceSpecs", "ProfilingConfig", "RerunStateMachineConfig", "RNGConfig",
    "SchedulerConfig", "TokenizerConfig", "TrainingConfig", "apply_overrides",
    "get_mixed_precision_config", "resolve_vocab_size",
]
