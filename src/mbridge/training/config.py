"""`megatron.bridge.training.config`, served by mbridge-config (megatron-core's optimizer and DDP
configs included, as in Megatron Bridge, and the classes its annotations name:
PackedSequenceSpecs, MixedPrecisionConfig)."""

from mbridge_config import (
    CheckpointConfig,
    ConfigContainer,
    DataloaderConfig,
    DistributedDataParallelConfig,
    DistributedInitConfig,
    FaultToleranceConfig,
    FinetuningDatasetConfig,
    GPTDatasetConfig,
    LoggerConfig,
    MockGPTDatasetConfig,
    MixedPrecisionConfig,
    OptimizerConfig,
    PackedSequenceSpecs,
    ProfilingConfig,
    RerunStateMachineConfig,
    RNGConfig,
    SchedulerConfig,
    TokenizerConfig,
    TrainingConfig,
)

__all__ = [
    "CheckpointConfig", "ConfigContainer", "DataloaderConfig", "DistributedDataParallelConfig",
    "DistributedInitConfig", "FaultToleranceConfig", "FinetuningDatasetConfig", "GPTDatasetConfig", "LoggerConfig",
    "MixedPrecisionConfig", "MockGPTDatasetConfig", "OptimizerConfig", "PackedSequenceSpecs",
    "ProfilingConfig", "RerunStateMachineConfig", "RNGConfig", "SchedulerConfig",
    "TokenizerConfig", "TrainingConfig",
]
