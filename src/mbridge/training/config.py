"""`megatron.bridge.training.config`, served by mbridge-config (megatron-core's optimizer and DDP
configs included, as in Megatron Bridge)."""

from mbridge_config import (
    CheckpointConfig,
    ConfigContainer,
    DataloaderConfig,
    DistributedDataParallelConfig,
    DistributedInitConfig,
    FinetuningDatasetConfig,
    GPTDatasetConfig,
    LoggerConfig,
    MockGPTDatasetConfig,
    OptimizerConfig,
    ProfilingConfig,
    RNGConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainingConfig,
)

__all__ = [
    "CheckpointConfig", "ConfigContainer", "DataloaderConfig", "DistributedDataParallelConfig",
    "DistributedInitConfig", "FinetuningDatasetConfig", "GPTDatasetConfig", "LoggerConfig",
    "MockGPTDatasetConfig", "OptimizerConfig", "ProfilingConfig", "RNGConfig", "SchedulerConfig",
    "TokenizerConfig", "TrainingConfig",
]
