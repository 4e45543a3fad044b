"""NeMo-Run plugins for mbridge training scripts (Megatron Bridge's
``megatron.bridge.recipes.run_plugins``; also importable as ``mbridge.recipes.run_plugins``).

A plugin is handed the task and the executor before NeMo-Run launches them. For a ``run.Script``
task (the recommended mode) it appends Hydra-style overrides that ``ConfigContainer
.apply_overrides`` understands (``profiling.use_nsys_profiler=true``, ...) to ``task.args``, and
sets the executor's environment, launcher and signals. The script must apply its argv as
overrides, as ``mbridge pretrain RECIPE KEY=VALUE ...`` and the launching guide's script do.
Each plugin takes ``script_args_converter_fn`` to render its ``*ScriptArgs`` differently (e.g.
argparse flags). For a ``run.Partial`` task whose ``config`` is the ConfigContainer (or its
``run.Config``), the same fields are set on it directly.

Needs the ``mbridge[run]`` extra (nemo-run); importing this module without it raises one line
saying so.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Callable

from mbridge_config.serialization import field_types, single_dataclass

try:
    import nemo_run as run
    from nemo_run import Partial, Plugin, Script, SlurmExecutor
except ImportError as error:  # pragma: no cover - exercised in a subprocess
    raise ImportError("mbridge.recipes.run_plugins needs NeMo-Run: install the extra "
                      "mbridge[run] (pip install 'mbridge[run]')") from error

logger = logging.getLogger(__name__)

__all__ = [
    "FaultTolerancePlugin", "FaultTolerancePluginScriptArgs", "NsysPlugin", "NsysPluginScriptArgs",
    "PerfEnvPlugin", "PerfEnvPluginScriptArgs", "PreemptionPlugin", "PreemptionPluginScriptArgs",
    "PyTorchProfilerPlugin", "PyTorchProfilerPluginScriptArgs", "WandbPlugin",
    "WandbPluginScriptArgs",
]


def _value(value) -> str:
    """A value as the override parser (YAML) reads it back: true/false, [0,3], null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def _overrides(fields: dict) -> list[str]:
    return [f"{key}={_value(value)}" for key, value in fields.items()]


def _apply(plugin, task, script_args, converter: Callable, fields: dict) -> None:
    """Script: append ``converter(script_args)`` to its args. Partial: set ``fields`` (dotted
    config paths) on ``task.config``."""
    if isinstance(task, Script):
        extra = (plugin.script_args_converter_fn or converter)(script_args)
        task.args.extend(extra)
        logger.info("%s added overrides: %s", type(plugin).__name__, " ".join(extra))
        return
    config = getattr(task, "config", None)
    if not isinstance(task, Partial) or config is None:
        raise TypeError(f"{type(plugin).__name__}: expected a run.Script task or a run.Partial "
                        f"with a 'config' argument, got {type(task).__name__}")
    for path, value in fields.items():
        *sections, name = path.split(".")
        target = config
        for section in sections:
            parent, target = target, getattr(target, section)
            if target is None:  # an optional sub-config (ft): create it with its defaults
                target = _default_section(parent, section)
            if target is None:
                raise ValueError(f"{type(plugin).__name__}: config.{section} is None; set it "
                                 f"before adding the plugin (needed for {path})")
        setattr(target, name, value)


def _default_section(parent, section: str):
    """A None sub-config of a ConfigContainer (or of its ``run.Config``) set to its type's
    defaults (a ``run.Config`` of it under a ``run.Config``); None when the field's type names
    no single dataclass."""
    owner = getattr(parent, "__fn_or_cls__", None)  # a run.Config (fiddle) holds its class
    fiddled = owner is not None
    owner = owner if fiddled else type(parent)
    if not dataclasses.is_dataclass(owner):
        return None
    kind = single_dataclass(field_types(owner).get(section))
    if kind is None:
        return None
    value = run.Config(kind) if fiddled else kind()
    setattr(parent, section, value)
    return value


# ----------------------------------------------------------------------------- preemption


@dataclass
class PreemptionPluginScriptArgs:
    enable_exit_handler: bool
    enable_exit_handler_for_data_loader: bool


def _preemption_fields(args: PreemptionPluginScriptArgs) -> dict:
    return {"train.exit_signal_handler": args.enable_exit_handler,
            "train.exit_signal_handler_for_dataloader": args.enable_exit_handler_for_data_loader}


def _default_preemption_converter(args: PreemptionPluginScriptArgs) -> list[str]:
    return _overrides(_preemption_fields(args))


@dataclass(kw_only=True)
class PreemptionPlugin(Plugin):
    """Stop cleanly before the scheduler's time limit: the training script catches SIGTERM
    (``train.exit_signal_handler``), finishes the step, saves a checkpoint (when
    ``checkpoint.save`` is set) and exits; on a ``SlurmExecutor`` SLURM is asked to send that
    SIGTERM ``preempt_time`` seconds before the limit (``--signal=TERM@preempt_time``)."""

    preempt_time: int = 60
    enable_exit_handler: bool = True
    enable_exit_handler_for_data_loader: bool = False
    script_args_converter_fn: Callable[[PreemptionPluginScriptArgs], list[str]] | None = None

    def setup(self, task, executor) -> None:
        if self.enable_exit_handler:
            args = PreemptionPluginScriptArgs(self.enable_exit_handler,
                                              self.enable_exit_handler_for_data_loader)
            _apply(self, task, args, _default_preemption_converter, _preemption_fields(args))
        if isinstance(executor, SlurmExecutor):
            executor.signal = f"TERM@{self.preempt_time}"


# ----------------------------------------------------------------------------- fault tolerance


@dataclass
class FaultTolerancePluginScriptArgs:
    enable_ft_package: bool
    calc_ft_timeouts: bool
    rank_heartbeat_timeout: int
    initial_rank_heartbeat_timeout: int = 1800


def _fault_tolerance_fields(args: FaultTolerancePluginScriptArgs) -> dict:
    # A rank that stops answering collectives for longer than the heartbeat timeout fails
    # (instead of hanging forever), which is what lets the launcher restart the job; the hang
    # watchdog (ft.*) ends a rank that makes no progress for that long, wherever it is stuck.
    fields = {"dist.distributed_timeout_minutes": max(1, -(-args.rank_heartbeat_timeout // 60))}
    if args.enable_ft_package:
        fields.update({"ft.enable_ft_package": True, "ft.calc_ft_timeouts": args.calc_ft_timeouts,
                       "ft.hang_timeout_s": float(args.rank_heartbeat_timeout),
                       "ft.initial_hang_timeout_s": float(args.initial_rank_heartbeat_timeout)})
    return fields


def _default_fault_tolerance_converter(args: FaultTolerancePluginScriptArgs) -> list[str]:
    return _overrides(_fault_tolerance_fields(args))


def _have_ft_launcher() -> bool:
    return shutil.which("ft_launcher") is not None


@dataclass(kw_only=True)
class FaultTolerancePlugin(Plugin):
    """Restart a failed or hung run in place; it resumes from its last checkpoint
    (``checkpoint.load``), so set ``checkpoint.save``/``load`` and a ``save_interval``.

    Launcher: with nvidia-resiliency-ext's ``ft_launcher`` installed (``enable_ft_package``), or
    on a ``SlurmExecutor``, NeMo-Run's ``run.FaultTolerance`` (heartbeat monitoring with
    ``initial_rank_heartbeat_timeout`` / ``rank_heartbeat_timeout``, ``num_in_job_restarts``);
    otherwise torchrun with ``--max-restarts=num_in_job_restarts`` (``PET_MAX_RESTARTS``). Either
    way ``executor.retries = num_job_retries_on_failure`` and the script's collective timeout
    (``dist.distributed_timeout_minutes``) becomes ``rank_heartbeat_timeout`` rounded up to
    minutes, so a hung collective fails the rank instead of blocking the job. With
    ``enable_ft_package`` the script also runs mbridge's hang watchdog in place of NVRx's client
    (``ft.enable_ft_package``, ``ft.calc_ft_timeouts``; ``ft.hang_timeout_s`` and
    ``ft.initial_hang_timeout_s`` from ``rank_heartbeat_timeout`` and
    ``initial_rank_heartbeat_timeout``): a rank without progress for that long dumps its stacks
    and exits, for the launcher to restart."""

    enable_ft_package: bool = True
    calc_ft_timeouts: bool = True
    num_in_job_restarts: int = 3
    num_job_retries_on_failure: int = 2
    initial_rank_heartbeat_timeout: int = 1800
    rank_heartbeat_timeout: int = 300
    script_args_converter_fn: Callable[[FaultTolerancePluginScriptArgs], list[str]] | None = None

    def setup(self, task, executor) -> None:
        if self.enable_ft_package and (_have_ft_launcher() or isinstance(executor,
                                                                         SlurmExecutor)):
            executor.launcher = run.FaultTolerance(
                max_restarts=self.num_in_job_restarts,
                initial_rank_heartbeat_timeout=self.initial_rank_heartbeat_timeout,
                rank_heartbeat_timeout=self.rank_heartbeat_timeout)
        else:
            executor.launcher = run.Torchrun()
            executor.env_vars["PET_MAX_RESTARTS"] = str(self.num_in_job_restarts)
        executor.retries = self.num_job_retries_on_failure
        args = FaultTolerancePluginScriptArgs(self.enable_ft_package, self.calc_ft_timeouts,
                                              self.rank_heartbeat_timeout,
                                              self.initial_rank_heartbeat_timeout)
        _apply(self, task, args, _default_fault_tolerance_converter,
               _fault_tolerance_fields(args))


# ----------------------------------------------------------------------------- profiling


@dataclass
class NsysPluginScriptArgs:
    profile_step_start: int
    profile_step_end: int
    profile_ranks: list[int]
    record_shapes: bool


def _nsys_fields(args: NsysPluginScriptArgs) -> dict:
    return {"profiling.use_nsys_profiler": True,
            "profiling.profile_step_start": args.profile_step_start,
            "profiling.profile_step_end": args.profile_step_end,
            "profiling.profile_ranks": list(args.profile_ranks),
            "profiling.record_shapes": args.record_shapes}


def _default_nsys_converter(args: NsysPluginScriptArgs) -> list[str]:
    return _overrides(_nsys_fields(args))


@dataclass(kw_only=True)
class NsysPlugin(Plugin):
    """Profile steps ``profile_step_start+1 .. profile_step_end`` with nsys: the launcher runs
    the script under ``nsys profile -t <nsys_trace> --capture-range=cudaProfilerApi`` and the
    script opens the capture range over that window (``profiling.use_nsys_profiler``) on
    ``profile_ranks`` (default [0]). On SLURM the report files are named per job, node and
    rank."""

    profile_step_start: int
    profile_step_end: int
    profile_ranks: list[int] | None = None
    nsys_trace: list[str] | None = None
    record_shapes: bool = False
    nsys_gpu_metrics: bool = False
    script_args_converter_fn: Callable[[NsysPluginScriptArgs], list[str]] | None = None

    def setup(self, task, executor) -> None:
        launcher = executor.get_launcher()
        launcher.nsys_profile = True
        launcher.nsys_trace = list(self.nsys_trace or ["nvtx", "cuda"])
        if isinstance(executor, SlurmExecutor):  # %q{VAR}: nsys expands the variable
            launcher.nsys_filename = ("profile_%p_%q{SLURM_JOB_ID}_node%q{SLURM_NODEID}"
                                      "_rank%q{SLURM_PROCID}")
        if self.nsys_gpu_metrics:
            launcher.nsys_gpu_metrics = True
        args = NsysPluginScriptArgs(self.profile_step_start, self.profile_step_end,
                                    list(self.profile_ranks or [0]), self.record_shapes)
        _apply(self, task, args, _default_nsys_converter, _nsys_fields(args))


@dataclass
class PyTorchProfilerPluginScriptArgs:
    profile_step_start: int
    profile_step_end: int
    profile_ranks: list[int]
    record_memory_history: bool
    memory_snapshot_path: str
    record_shapes: bool


def _pytorch_profiler_fields(args: PyTorchProfilerPluginScriptArgs) -> dict:
    return {"profiling.use_pytorch_profiler": True,
            "profiling.profile_step_start": args.profile_step_start,
            "profiling.profile_step_end": args.profile_step_end,
            "profiling.profile_ranks": list(args.profile_ranks),
            "profiling.record_memory_history": args.record_memory_history,
            "profiling.memory_snapshot_path": args.memory_snapshot_path,
            "profiling.record_shapes": args.record_shapes}


def _default_pytorch_profiler_converter(args: PyTorchProfilerPluginScriptArgs) -> list[str]:
    return _overrides(_pytorch_profiler_fields(args))


@dataclass(kw_only=True)
class PyTorchProfilerPlugin(Plugin):
    """Profile steps ``profile_step_start+1 .. profile_step_end`` with the PyTorch profiler
    (a Chrome trace per profiled rank; see mbridge_train.profiling), optionally recording the
    CUDA memory history to ``memory_snapshot_path``."""

    profile_step_start: int
    profile_step_end: int
    profile_ranks: list[int] | None = None
    record_memory_history: bool = False
    memory_snapshot_path: str = "snapshot.pickle"
    record_shapes: bool = False
    script_args_converter_fn: Callable[[PyTorchProfilerPluginScriptArgs], list[str]] | None = None

    def setup(self, task, executor) -> None:
        args = PyTorchProfilerPluginScriptArgs(
            self.profile_step_start, self.profile_step_end, list(self.profile_ranks or [0]),
            self.record_memory_history, self.memory_snapshot_path, self.record_shapes)
        _apply(self, task, args, _default_pytorch_profiler_converter,
               _pytorch_profiler_fields(args))


# ----------------------------------------------------------------------------- W&B


@dataclass
class WandbPluginScriptArgs:
    project: str
    entity: str | None
    name: str | None
    save_dir: str


def _wandb_fields(args: WandbPluginScriptArgs) -> dict:
    fields = {"logger.wandb_project": args.project}
    if args.entity:
        fields["logger.wandb_entity"] = args.entity
    if args.name:
        fields["logger.wandb_exp_name"] = args.name
    fields["logger.wandb_save_dir"] = args.save_dir
    return fields


def _default_wandb_converter(args: WandbPluginScriptArgs) -> list[str]:
    return _overrides(_wandb_fields(args))


@dataclass(kw_only=True)
class WandbPlugin(Plugin):
    """Log the run to Weights & Biases (``logger.wandb_*``). Active when ``WANDB_API_KEY`` is
    set here (it is passed on to the executor) or when ``WANDB_MODE`` is ``offline`` (passed on
    too: the run is written under ``save_dir`` for a later ``wandb sync``); otherwise it warns
    and changes nothing. ``name`` defaults to the experiment's name."""

    project: str
    name: str | None = None
    entity: str | None = None
    save_dir: str = "/nemo_run/wandb"
    log_task_config: bool = True
    script_args_converter_fn: Callable[[WandbPluginScriptArgs], list[str]] | None = None

    def setup(self, task, executor) -> None:
        key, mode = os.environ.get("WANDB_API_KEY"), os.environ.get("WANDB_MODE")
        if not key and mode != "offline":
            logger.warning("%s has no effect: neither WANDB_API_KEY is set nor WANDB_MODE="
                           "offline", type(self).__name__)
            return
        if key:
            executor.env_vars["WANDB_API_KEY"] = key
        if mode:
            executor.env_vars["WANDB_MODE"] = mode
        name = self.name or (self.experiment_id.rsplit("_", 1)[0] if self.experiment_id
                             else None)
        args = WandbPluginScriptArgs(self.project, self.entity, name, self.save_dir)
        _apply(self, task, args, _default_wandb_converter, _wandb_fields(args))


# ----------------------------------------------------------------------------- performance env


@dataclass
class PerfEnvPluginScriptArgs:
    enable_manual_gc: bool
    manual_gc_interval: int


def _perf_env_fields(args: PerfEnvPluginScriptArgs) -> dict:
    return {"train.manual_gc": args.enable_manual_gc,
            "train.manual_gc_interval": args.manual_gc_interval}


def _default_perf_env_converter(args: PerfEnvPluginScriptArgs) -> list[str]:
    return _overrides(_perf_env_fields(args))


@dataclass(kw_only=True)
class PerfEnvPlugin(Plugin):
    """Performance environment for a GPU job:

    * ``CUDA_DEVICE_MAX_CONNECTIONS``: 1 when TP or CP communication must overlap GEMMs on
      Hopper and older (kernels queue in launch order), 32 on SM100+ with TP/CP and DP/PP (or
      with DeepEP), else 8;
    * ``NVTE_FWD/BWD_LAYERNORM_SM_MARGIN`` = ``layernorm_sm_margin`` (SMs kept free for DP
      communication beside Transformer Engine's LayerNorm);
    * ``NCCL_P2P_NET_CHUNKSIZE`` = ``nccl_pp_comm_chunksize`` when PP > 1;
    * manual garbage collection every ``manual_gc_interval`` steps (``train.manual_gc``);
    * on SLURM with ``enable_vboost``: ``nvidia-smi boost-slider --vboost 1`` on every node
      before the job.
    """

    enable_layernorm_sm_margin: bool = True
    layernorm_sm_margin: int = 16
    enable_vboost: bool = False
    nccl_pp_comm_chunksize: int | None = None
    gpu_sm100_or_newer: bool = False
    enable_manual_gc: bool = True
    manual_gc_interval: int = 100
    tp_size: int = 1
    cp_size: int = 1
    pp_size: int = 1
    script_args_converter_fn: Callable[[PerfEnvPluginScriptArgs], list[str]] | None = None
    num_gpus: int = 8
    deepep_enabled: bool = False
    a2a_overlap: bool = False

    def cuda_device_max_connections(self) -> int:
        dp_size = self.num_gpus // (self.tp_size * self.cp_size * self.pp_size)
        sharded = self.tp_size > 1 or self.cp_size > 1
        if self.gpu_sm100_or_newer:
            if sharded and (dp_size > 1 or self.pp_size > 1):
                return 32
        elif sharded and not self.a2a_overlap:
            return 1
        return 32 if self.deepep_enabled else 8

    def vboost_command(self, nodes: int, job_dir: str) -> str:
        out, err = os.path.join(job_dir, "vboost.out"), os.path.join(job_dir, "vboost.err")
        return (f"\n# enable vboost on every node\nsrun --ntasks={nodes} --output {out} "
                f"--error {err} bash -c 'sudo nvidia-smi boost-slider --vboost 1'\n")

    def setup(self, task, executor) -> None:
        env = executor.env_vars
        env["CUDA_DEVICE_MAX_CONNECTIONS"] = str(self.cuda_device_max_connections())
        if self.enable_layernorm_sm_margin:
            env["NVTE_FWD_LAYERNORM_SM_MARGIN"] = str(self.layernorm_sm_margin)
            env["NVTE_BWD_LAYERNORM_SM_MARGIN"] = str(self.layernorm_sm_margin)
        if self.pp_size > 1 and self.nccl_pp_comm_chunksize is not None:
            if not isinstance(self.nccl_pp_comm_chunksize, int) or \
                    self.nccl_pp_comm_chunksize <= 1:
                raise ValueError("PerfEnvPlugin.nccl_pp_comm_chunksize: expected an integer > 1, "
                                 f"got {self.nccl_pp_comm_chunksize!r}")
            env["NCCL_P2P_NET_CHUNKSIZE"] = str(self.nccl_pp_comm_chunksize)
        if self.enable_manual_gc:
            args = PerfEnvPluginScriptArgs(True, self.manual_gc_interval)
            _apply(self, task, args, _default_perf_env_converter, _perf_env_fields(args))
        if self.enable_vboost and isinstance(executor, SlurmExecutor):
            command = self.vboost_command(executor.nodes, executor.tunnel.job_dir)
            executor.setup_lines = (executor.setup_lines or "") + command
