"""ConfigContainer: every setting of a training run in one typed, serialisable object."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.optimizer import OptimizerConfig

from mbridge_config import launch, serialization
from mbridge_config.comm_overlap import CommOverlapConfig
from mbridge_config.data import FinetuningDatasetConfig, GPTDatasetConfig
from mbridge_config.errors import ConfigError
from mbridge_config.mixed_precision import (
    MixedPrecisionConfig,
    get_mixed_precision_config,
    preset_name,
)
from mbridge_config.overrides import apply_overrides
from mbridge_config.protocols import ModelProviderProtocol, PEFTProtocol
from mbridge_config.vocab import resolve_vocab_size
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


@dataclass(kw_only=True)
class ConfigContainer:
    """The whole run: model provider, loop, optimizer, schedule, data, checkpoints, logging, ...

    ``finalize()`` applies the mixed-precision and comm-overlap settings to the model, optimizer
    and DDP configs; ``validate()`` checks the cross-field rules and reports every violation,
    one line each, naming the field.
    """

    model: ModelProviderProtocol
    train: TrainingConfig = field(default_factory=TrainingConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    ddp: DistributedDataParallelConfig = field(default_factory=DistributedDataParallelConfig)
    dataset: GPTDatasetConfig | FinetuningDatasetConfig | None = None
    tokenizer: TokenizerConfig | None = None
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    dist: DistributedInitConfig = field(default_factory=DistributedInitConfig)
    rng: RNGConfig = field(default_factory=RNGConfig)
    profiling: ProfilingConfig | None = None
    peft: PEFTProtocol | None = None
    comm_overlap: CommOverlapConfig | None = None
    mixed_precision: MixedPrecisionConfig | str | None = None
    rerun_state_machine: RerunStateMachineConfig = field(default_factory=RerunStateMachineConfig)
    ft: FaultToleranceConfig | None = None

    # ------------------------------------------------------------------ setting up

    def finalize(self) -> "ConfigContainer":
        """Make model, optimizer and DDP agree with mixed_precision and comm_overlap (they win)."""
        if self.mixed_precision is not None:
            get_mixed_precision_config(self.mixed_precision).setup(
                self.model, self.optimizer, self.ddp)
        if self.comm_overlap is not None:
            self.comm_overlap.setup(self.model, self.ddp)
        if self.optimizer.use_distributed_optimizer:
            self.ddp.use_distributed_optimizer = True
        model, optimizer = self.model, self.optimizer
        optimizer.bf16 = bool(getattr(model, "bf16", False))  # main params follow the model
        optimizer.fp16 = bool(getattr(model, "fp16", False))
        optimizer.params_dtype = getattr(model, "params_dtype", optimizer.params_dtype)
        if optimizer.min_lr is None:  # megatron's param groups carry it; decay ends at 0
            optimizer.min_lr = 0.0
        finalize_model = getattr(self.model, "finalize", None)
        if callable(finalize_model):  # providers validate once their fields are settled
            finalize_model()
        return self

    def resolve_vocab_size(self, tokenizer_vocab_size: int) -> "ConfigContainer":
        """The last derivation, once the tokenizer is built: the model's vocab size by the
        Megatron Bridge priority rule (``mbridge_config.vocab``). Idempotent: a size already
        derived (or set with ``should_pad_vocab=True``) stays padded."""
        model = self.model
        size, padded = resolve_vocab_size(
            model.vocab_size, tokenizer_vocab_size, model.make_vocab_size_divisible_by,
            model.tensor_model_parallel_size)
        model.vocab_size, model.should_pad_vocab = size, padded or model.should_pad_vocab
        return self

    def validate(self, world_size: int | None = None) -> "ConfigContainer":
        """Raise one ConfigError listing every violated rule (``all_rules()``: RULES and those
        of installed packages); return self when all hold. ``world_size`` defaults to the
        launcher's (torchrun's or SLURM's variables)."""
        if world_size is None:
            world_size = launch.world_size()
        problems: list[tuple[str, str]] = []
        for rule in all_rules():
            problems += rule(self, world_size)
        if problems:
            raise ConfigError(problems)
        return self

    # ------------------------------------------------------------------ (de)serialising

    def to_dict(self) -> dict[str, Any]:
        return serialization.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ConfigContainer":
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}")
        data = {serialization.TARGET: f"{cls.__module__}.{cls.__qualname__}", **data}
        return serialization.from_dict(data, cls)

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        """The YAML text; also written (atomically) to ``path`` when given."""
        text = serialization.to_yaml_text(self)
        if path is not None:
            serialization.write_text(path, text)
        return text

    @classmethod
    def from_yaml(cls, path: str | os.PathLike,
                  overrides: list[str] | None = None) -> "ConfigContainer":
        data = serialization.read_yaml(path)
        try:
            config = cls.from_dict(data)
        except ConfigError as error:
            raise ConfigError([(f"{path}: {f}" if f else str(path), m)
                               for f, m in error.problems]) from None
        return config.apply_overrides(overrides or [])

    def apply_overrides(self, overrides: list[str]) -> "ConfigContainer":
        return apply_overrides(self, overrides)

    def print_yaml(self) -> None:
        print(self.to_yaml(), end="")


# ---------------------------------------------------------------------- validation rules
# Each rule returns (field, problem) pairs; validate() reports all of them at once.

Problems = list[tuple[str, str]]


def _parallel_sizes(cfg: ConfigContainer) -> tuple[int, int, int]:
    model = cfg.model
    return (getattr(model, "tensor_model_parallel_size", 1) or 1,
            getattr(model, "pipeline_model_parallel_size", 1) or 1,
            getattr(model, "context_parallel_size", 1) or 1)


def rule_batch_sizes(cfg: ConfigContainer, world_size: int) -> Problems:
    train = cfg.train
    tp, pp, cp = _parallel_sizes(cfg)
    model_parallel = tp * pp * cp
    if world_size % model_parallel:
        return [("model", f"tensor x pipeline x context parallel = {tp} x {pp} x {cp} = "
                          f"{model_parallel} does not divide the world size {world_size}")]
    dp = world_size // model_parallel
    mbs, gbs = train.micro_batch_size, train.global_batch_size
    if mbs is None or mbs < 1:
        return [("train.micro_batch_size", f"must be a positive integer, got {mbs}")]
    if gbs is not None and (gbs < 1 or gbs % (mbs * dp)):
        return [("train.global_batch_size",
                 f"{gbs} is not a positive multiple of micro_batch_size x data-parallel size = "
                 f"{mbs} x {dp} = {mbs * dp}")]
    return []


def rule_train_length(cfg: ConfigContainer, world_size: int) -> Problems:
    train = cfg.train
    if train.train_iters is None and train.train_samples is None:
        return [("train.train_iters", "set train_iters (or train_samples)")]
    if train.train_iters is not None and train.train_samples is not None:
        return [("train.train_samples", "set either train_iters or train_samples, not both")]
    if (train.train_iters or 1) < 1:
        return [("train.train_iters", f"must be positive, got {train.train_iters}")]
    if train.eval_interval is not None and train.eval_interval < 1:
        return [("train.eval_interval", f"must be positive or null, got {train.eval_interval}")]
    return []


def rule_peft_needs_pretrained(cfg: ConfigContainer, world_size: int) -> Problems:
    if cfg.peft is not None and not cfg.checkpoint.pretrained_checkpoint:
        return [("checkpoint.pretrained_checkpoint",
                 "PEFT fine-tunes a pretrained model: set the checkpoint it starts from")]
    return []


def rule_checkpoint(cfg: ConfigContainer, world_size: int) -> Problems:
    ckpt, problems = cfg.checkpoint, []
    if ckpt.async_save and ckpt.ckpt_format != "torch_dist":
        problems.append(("checkpoint.async_save",
                         f"works only with ckpt_format='torch_dist', not '{ckpt.ckpt_format}'"))
    if ckpt.save_interval is not None and ckpt.save_interval < 1:
        problems.append(("checkpoint.save_interval", f"must be positive, got {ckpt.save_interval}"))
    if ckpt.save_interval is not None and not ckpt.save:
        problems.append(("checkpoint.save", "save_interval is set but there is no save directory"))
    keep = ckpt.most_recent_k
    if keep is not None and (keep < -1 or keep == 0):
        problems.append(("checkpoint.most_recent_k",
                         f"must be -1 (keep all) or positive, got {keep}"))
    return problems


def rule_sequence_length(cfg: ConfigContainer, world_size: int) -> Problems:
    dataset = cfg.dataset
    if dataset is None:
        return [("dataset", "required for training: a GPTDatasetConfig, "
                            "FinetuningDatasetConfig or MockGPTDatasetConfig")]
    name = "sequence_length" if isinstance(dataset, GPTDatasetConfig) else "seq_length"
    data_len, model_len = getattr(dataset, name), getattr(cfg.model, "seq_length", None)
    if model_len is not None and data_len != model_len:
        return [(f"dataset.{name}", f"{data_len} differs from model.seq_length {model_len}")]
    return []


def rule_vocab_size(cfg: ConfigContainer, world_size: int) -> Problems:
    model_vocab = getattr(cfg.model, "vocab_size", None)
    tokenizer_vocab = cfg.tokenizer.vocab_size if cfg.tokenizer is not None else None
    if model_vocab is not None and tokenizer_vocab is not None and model_vocab < tokenizer_vocab:
        return [("model.vocab_size",
                 f"{model_vocab} is smaller than the tokenizer's vocab size {tokenizer_vocab}; "
                 f"set it >= {tokenizer_vocab} or null to derive and pad it")]
    return []


def rule_tokenizer_files(cfg: ConfigContainer, world_size: int) -> Problems:
    tok = cfg.tokenizer
    if tok is None or tok.tokenizer_type is None:
        return []
    needs = {"GPT2BPETokenizer": ("vocab_file", "merge_file"),
             "HuggingFaceTokenizer": ("tokenizer_model",),
             "SentencePieceTokenizer": ("tokenizer_model",),
             "GPTSentencePieceTokenizer": ("tokenizer_model",),
             "Llama2Tokenizer": ("tokenizer_model",),
             "TikTokenizer": ("tokenizer_model",)}.get(tok.tokenizer_type, ())
    return [(f"tokenizer.{name}", f"{tok.tokenizer_type} needs it")
            for name in needs if not getattr(tok, name)]


def schedule_lengths(cfg: ConfigContainer) -> tuple[int, int] | None:
    """(warm-up, decay) iterations of the learning-rate schedule, or None without a length;
    the scheduler builder and rule_scheduler both read them from here."""
    sched = cfg.scheduler
    decay = sched.lr_decay_iters or cfg.train.train_iters
    if decay is None:
        return None
    if sched.lr_warmup_fraction is not None:
        return int(sched.lr_warmup_fraction * decay), decay
    return sched.lr_warmup_iters or 0, decay


def rule_scheduler(cfg: ConfigContainer, world_size: int) -> Problems:
    sched, problems = cfg.scheduler, []
    if sched.lr_warmup_fraction is not None:
        if sched.lr_warmup_iters:
            problems.append(("scheduler.lr_warmup_fraction",
                             "set either lr_warmup_fraction or lr_warmup_iters, not both"))
        if not 0.0 <= sched.lr_warmup_fraction <= 1.0:
            problems.append(("scheduler.lr_warmup_fraction",
                             f"must lie in [0, 1], got {sched.lr_warmup_fraction}"))
    lengths = schedule_lengths(cfg)
    if lengths is None:
        problems.append(("scheduler.lr_decay_iters", "set train.train_iters or lr_decay_iters"))
        return problems
    warmup, decay = lengths
    if warmup and warmup >= decay:  # megatron's scheduler asserts warm-up < decay
        field = ("scheduler.lr_warmup_fraction" if sched.lr_warmup_fraction is not None
                 else "scheduler.lr_warmup_iters")
        problems.append((field, f"{warmup} warm-up iterations must be fewer than the "
                                f"{decay} decay iterations"))
    if sched.lr_decay_style == "WSD" and sched.lr_wsd_decay_iters is not None:
        if sched.lr_wsd_decay_iters > decay:
            problems.append(("scheduler.lr_wsd_decay_iters",
                             f"{sched.lr_wsd_decay_iters} exceeds the {decay} decay iterations"))
    if sched.lr_decay_style != "constant" and cfg.optimizer.min_lr is not None and \
            cfg.optimizer.lr is not None and cfg.optimizer.min_lr > cfg.optimizer.lr:
        problems.append(("optimizer.min_lr",
                         f"{cfg.optimizer.min_lr} is above the peak lr {cfg.optimizer.lr}"))
    return problems


def rule_profiling(cfg: ConfigContainer, world_size: int) -> Problems:
    prof = cfg.profiling
    if prof is None:
        return []
    problems = []
    if prof.use_nsys_profiler and prof.use_pytorch_profiler:
        problems.append(("profiling.use_pytorch_profiler",
                         "use either the nsys or the PyTorch profiler, not both"))
    if not 0 <= prof.profile_step_start < prof.profile_step_end:
        problems.append(("profiling.profile_step_end",
                         f"the window {prof.profile_step_start}..{prof.profile_step_end} needs "
                         "0 <= profile_step_start < profile_step_end"))
    bad = [r for r in prof.profile_ranks if not 0 <= r < world_size]
    if bad:
        problems.append(("profiling.profile_ranks",
                         f"{bad} are not ranks of a world of size {world_size}"))
    return problems


def rule_blend(cfg: ConfigContainer, world_size: int) -> Problems:
    data = cfg.dataset
    if not isinstance(data, GPTDatasetConfig):
        return []
    problems = []
    if data.blend_weights is not None:
        if data.blend is None:
            problems.append(("dataset.blend_weights", "given without a blend"))
        elif len(data.blend_weights) != len(data.blend):
            problems.append(("dataset.blend_weights",
                             f"{len(data.blend_weights)} weights for {len(data.blend)} "
                             "blend entries"))
        if any(w <= 0 for w in data.blend_weights):
            problems.append(("dataset.blend_weights",
                             f"weights must be positive, got {data.blend_weights}"))
    if data.blend is not None and data.blend_per_split is not None:
        problems.append(("dataset.blend_per_split", "set either blend or blend_per_split"))
    if data.split is not None and data.blend_per_split is None:
        parts = data.split.replace("/", ",").split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if not values or len(values) > 3 or any(v < 0 for v in values) or sum(values) <= 0:
            problems.append(("dataset.split",
                             f"'{data.split}' is not like '949,50,1' (up to three "
                             "non-negative numbers, not all zero)"))
    return problems


def rule_packing(cfg: ConfigContainer, world_size: int) -> Problems:
    data = cfg.dataset
    if isinstance(data, FinetuningDatasetConfig) and data.packed:
        if cfg.train.micro_batch_size != 1:
            return [("train.micro_batch_size",
                     "packed sequences take micro_batch_size 1 (a pack is the batch), got "
                     f"{cfg.train.micro_batch_size}")]
    return []


def rule_mixed_precision(cfg: ConfigContainer, world_size: int) -> Problems:
    if isinstance(cfg.mixed_precision, str):
        try:
            preset_name(cfg.mixed_precision)
        except ConfigError as error:
            return error.problems
    return []


def rule_logger(cfg: ConfigContainer, world_size: int) -> Problems:
    if cfg.logger.log_interval < 1:
        return [("logger.log_interval", f"must be positive, got {cfg.logger.log_interval}")]
    return []


def rule_resilience(cfg: ConfigContainer, world_size: int) -> Problems:
    """What mbridge's step checks and hang watchdog implement of Megatron Bridge's fields."""
    rerun, ft, problems = cfg.rerun_state_machine, cfg.ft, []
    if cfg.train.skip_nonfinite_steps < 0:
        problems.append(("train.skip_nonfinite_steps",
                         f"must be 0 or positive, got {cfg.train.skip_nonfinite_steps}"))
    if rerun.rerun_mode not in ("disabled", "validate_results"):
        problems.append(("rerun_state_machine.rerun_mode",
                         f"'{rerun.rerun_mode}' is not supported: mbridge checks each step and "
                         "stops or skips, it does not re-run steps ('disabled' or "
                         "'validate_results')"))
    if rerun.error_injection_rate:
        problems.append(("rerun_state_machine.error_injection_rate",
                         "error injection is not supported; leave it 0"))
    if rerun.check_for_spiky_loss and not rerun.spiky_loss_factor > 1:
        problems.append(("rerun_state_machine.spiky_loss_factor",
                         f"must be above 1, got {rerun.spiky_loss_factor}"))
    if ft is not None:
        if ft.simulate_fault:
            problems.append(("ft.simulate_fault", "fault simulation (NVRx) is not supported"))
        for name in ("hang_timeout_s", "initial_hang_timeout_s", "min_step_timeout_s"):
            if not getattr(ft, name) > 0:
                problems.append((f"ft.{name}", f"must be positive, got {getattr(ft, name)}"))
        if not ft.step_time_factor > 1:
            problems.append(("ft.step_time_factor",
                             f"must be above 1, got {ft.step_time_factor}"))
    return problems


RULES: list[Callable[[ConfigContainer, int], Problems]] = [
    rule_batch_sizes, rule_train_length, rule_peft_needs_pretrained, rule_checkpoint,
    rule_sequence_length, rule_vocab_size, rule_tokenizer_files, rule_scheduler, rule_profiling,
    rule_blend, rule_packing, rule_mixed_precision, rule_logger, rule_resilience,
]


def all_rules() -> list[Callable[[ConfigContainer, int], Problems]]:
    """RULES plus those installed packages declare under the ``mbridge_config.rules`` entry
    point (a list of rules each: what that package implements, e.g. mbridge-train's checkpoint
    formats), so every check runs in validate(), before anything is built."""
    return RULES + _installed_rules()


@functools.cache
def _installed_rules() -> list[Callable[[ConfigContainer, int], Problems]]:
    from importlib.metadata import entry_points

    rules: list = []
    for point in sorted(entry_points(group="mbridge_config.rules"), key=lambda p: p.name):
        rules += [rule for rule in point.load() if rule not in rules]
    return rules
