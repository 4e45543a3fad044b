"""Training-loop, checkpoint, logging, scheduler, RNG, profiling, distributed and tokenizer configs.

megatron-core 0.19 ships these as ``megatron.training.config``; we subclass them so that every
field keeps megatron's name and meaning, and add only what the Megatron Bridge API has beyond
them (listed in each class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron.training.config import (
    CheckpointConfig as _CheckpointConfig,
    DistributedInitConfig as _DistributedInitConfig,
    LoggerConfig as _LoggerConfig,
    ProfilingConfig as _ProfilingConfig,
    RNGConfig as _RNGConfig,
    SchedulerConfig as _SchedulerConfig,
    TokenizerConfig as _TokenizerConfig,
    TrainingConfig as _TrainingConfig,
    ValidationConfig as _ValidationConfig,
)


@dataclass(kw_only=True)
class TrainingConfig(_TrainingConfig, _ValidationConfig):
    """Training loop settings. Megatron Bridge keeps validation settings here too
    (eval_interval, eval_iters, skip_train, ...), so this joins megatron's TrainingConfig and
    ValidationConfig. eval_iters is shared by validation and test."""

    eval_interval: int | None = 1000
    """Steps between validation runs (None: no validation during training)."""
    eval_iters: int | None = 100
    """Batches per validation (and test) run."""


@dataclass(kw_only=True)
class CheckpointConfig(_CheckpointConfig):
    """Saving and loading checkpoints (megatron's fields, plus Megatron Bridge's
    ``also_save_hf_checkpoint``; ``use_persistent_ckpt_worker`` defaults to True)."""

    also_save_hf_checkpoint: bool = False
    """Each saved iteration also gets a Hugging Face folder, ``<save>/iter_N/hf/`` (weights
    streamed from the model, adapters merged, config and tokenizer from hf_assets)."""

    use_persistent_ckpt_worker: bool = True
    """With ``async_save`` on a GPU: one background writer process per rank for the whole run
    (megatron's default, False, starts a process per save)."""


@dataclass(kw_only=True)
class LoggerConfig(_LoggerConfig):
    """Console, TensorBoard and W&B logging (megatron's fields, unchanged)."""


@dataclass(kw_only=True)
class SchedulerConfig(_SchedulerConfig):
    """Learning-rate and weight-decay schedules (megatron's fields, unchanged)."""


@dataclass(kw_only=True)
class RNGConfig(_RNGConfig):
    """Seeds (megatron's fields, unchanged)."""


@dataclass(kw_only=True)
class ProfilingConfig(_ProfilingConfig):
    """nsys / PyTorch profiler windows and CUDA memory history (megatron's fields, unchanged)."""


@dataclass(kw_only=True)
class DistributedInitConfig(_DistributedInitConfig):
    """Process-group initialisation. Adds from Megatron Bridge ``lazy_init`` (NeMo 2.0's
    ``strategy.lazy_init``: defer model-parallel initialisation to the caller) and
    ``enable_megatron_core_experimental`` (NeMo 2.0's MegatronEnableExperimentalCallback), and
    mbridge's own ``cpu_compute_dtype``."""

    lazy_init: bool = False
    enable_megatron_core_experimental: bool = False
    """Turn on megatron-core's experimental features (``megatron.core.config``'s flag) at setup."""
    cpu_compute_dtype: Literal["auto", "fp32", "keep"] = "auto"
    """mbridge's, for CPU runs only (inert with CUDA): the arithmetic of bf16/fp16 matmuls.
    ``auto`` computes them in fp32 where the CPU has no native kernels for the dtype, ``fp32``
    always, ``keep`` never; tensors and checkpoints keep the configured dtype in every case
    (mbridge_train.cpu_precision)."""


@dataclass(kw_only=True)
class TokenizerConfig(_TokenizerConfig):
    """Which tokenizer to build and from which files (megatron's fields, unchanged)."""
