"""Training-loop, checkpoint, logging, scheduler, RNG, profiling, distributed, tokenizer and
resilience (step checks, fault tolerance) configs.

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
    RerunStateMachineConfig as _RerunStateMachineConfig,
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
    skip_nonfinite_steps: int = 0
    """How many steps failing a ``rerun_state_machine`` check (NaN/Inf loss or gradients, a loss
    spike) the run may skip (gradients dropped, no optimizer or scheduler step, counted as
    "skipped" in the console line) before the next one stops it; 0 stops at the first. Counted
    per process lifetime: a resumed run starts again from 0."""


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


@dataclass(kw_only=True)
class RerunStateMachineConfig(_RerunStateMachineConfig):
    """Checks on every training step's reduced loss and gradients (megatron's fields plus
    Megatron Bridge's ``spiky_loss_factor``); ``mbridge_train.step_checks`` applies them.

    mbridge detects and stops (or skips, ``train.skip_nonfinite_steps``); it does not re-run a
    step to attribute the fault to a device, so ``rerun_mode`` "disabled" and
    "validate_results" behave the same, "report_stats" and error injection are refused."""

    rerun_mode: Literal["disabled", "validate_results", "report_stats"] = "disabled"
    """"disabled" or "validate_results" (both check; no re-run); megatron's third mode,
    "report_stats", is not supported."""
    spiky_loss_factor: float = 10.0
    """With ``check_for_spiky_loss``: a step whose reduced loss exceeds this factor times the
    median loss of the last accepted steps (up to 100 of them) is a spike."""


@dataclass(kw_only=True)
class FaultToleranceConfig:
    """Megatron Bridge's ``ft`` config. Bridge hands it to NVRx's rank monitor; mbridge has no
    extra service: ``enable_ft_package`` starts an in-process hang watchdog on every rank
    (``mbridge_train.watchdog``) which, on a hang, dumps the rank's Python stacks and exits the
    process non-zero, so that ``torchrun --max-restarts=N`` restarts the job and it resumes from
    its last complete checkpoint."""

    enable_ft_package: bool = False
    """Start the hang watchdog."""
    calc_ft_timeouts: bool = False
    """Also judge each training step against the running median of step times
    (``step_time_factor``), not only the fixed ``hang_timeout_s``."""
    simulate_fault: bool = False
    """Bridge's fault injection (NVRx); not supported by mbridge, must stay False."""
    simulated_fault_type: Literal["rank_hung", "rank_killed", "random"] = "random"
    simulated_fault_rank: int | None = None
    simulated_fault_base_delay: int = 0
    hang_timeout_s: float = 600.0
    """No progress (a step started or finished, an evaluation or save done) for this many
    seconds is a hang; choose it above the longest evaluation or checkpoint save."""
    initial_hang_timeout_s: float = 1800.0
    """The same limit until the process's first step has finished (NVRx's
    ``initial_rank_heartbeat_timeout``): warm-up and compilation take longer."""
    step_time_factor: float = 10.0
    """With ``calc_ft_timeouts``: a training step running longer than this factor times the
    median of the previous steps (once ``3`` have finished, the first of the process excluded)
    is a hang, but never before ``min_step_timeout_s``."""
    min_step_timeout_s: float = 60.0
    """The shortest time the step rule lets a step run (steps of milliseconds jitter)."""
