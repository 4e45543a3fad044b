"""The one builder behind every recipe; model modules only state what differs.

A model module decorates a docstring-only stub::

    @pretrain_recipe(Llama3ModelProvider8B, context_parallel_size=2)
    def pretrain_config(*args, **kwargs) -> ConfigContainer:
        '''Llama 3 8B pretraining: ...'''

and gets a function with the full keyword signature of Megatron Bridge's recipes (``dir``,
``name``, data paths / ``mock``, parallel sizes, ``train_iters``, batch sizes, ``seq_length``,
``lr``, ``min_lr``, ``lr_warmup_iters``, ``precision_config``, ``comm_overlap_config``; for
fine-tuning ``pretrained_checkpoint``, ``peft``, ``packed_sequence``, ``dataset_root``, ...),
whose defaults are that model's. ``inspect.signature`` and ``help()`` show them, unknown
arguments fail with the closest valid name, and the older Bridge spellings
(``tensor_parallelism``, ``context_parallelism``, ...) are accepted.

Settings that are not arguments (activation recomputation, MoE dispatcher, DDP details) go in
``extra``: dotted config paths set after the config is built, so a typo fails at import.
"""

import difflib
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from megatron.core.distributed import DistributedDataParallelConfig

from mbridge_config import (
    CheckpointConfig,
    CommOverlapConfig,
    ConfigContainer,
    FinetuningDatasetConfig,
    GPTDatasetConfig,
    LoggerConfig,
    MixedPrecisionConfig,
    PackedSequenceSpecs,
    RNGConfig,
    TokenizerConfig,
    TrainingConfig,
)
from mbridge_config.mixed_precision import get_mixed_precision_config
from mbridge_train.optim import distributed_fused_adam_with_cosine_annealing
from mbridge_train.recipes.utils.dataset_utils import blend_fields
from mbridge_train.recipes.utils.finetune_utils import default_peft_config

OUTPUT_ROOT = "nemo_experiments"
"""Where runs go without ``dir`` (``./nemo_experiments/<name>``), as in Megatron Bridge."""

LEGACY_NAMES = {
    "tensor_parallelism": "tensor_model_parallel_size",
    "pipeline_parallelism": "pipeline_model_parallel_size",
    "pipeline_parallelism_dtype": "pipeline_dtype",
    "virtual_pipeline_parallelism": "virtual_pipeline_model_parallel_size",
    "context_parallelism": "context_parallel_size",
    "sequence_parallelism": "sequence_parallel",
    "expert_parallelism": "expert_model_parallel_size",
    "expert_tensor_parallelism": "expert_tensor_parallel_size",
}
"""Argument names of Megatron Bridge's first recipe modules -> today's (the provider's)."""

FINETUNE_ALIASES = {**LEGACY_NAMES, "lr": "finetune_lr"}


class RecipeArgumentError(TypeError):
    """A recipe was called with an argument it does not take (the message names the closest)."""


# ------------------------------------------------------------------ the shared signatures
# These two functions exist for their signatures (names, types, shared defaults); the bodies
# are build_pretrain / build_finetune below.


def _pretrain_signature(
    dir: str | None = None,
    name: str = "default",
    # data: mock unless paths are given
    data_paths: list[str] | None = None,
    data_args_path: str | None = None,
    train_data_path: list[str] | None = None,
    valid_data_path: list[str] | None = None,
    test_data_path: list[str] | None = None,
    per_split_data_args_path: str | None = None,
    mock: bool = False,
    tokenizer_model: str | None = None,
    # parallelism
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    pipeline_dtype: torch.dtype | None = None,
    virtual_pipeline_model_parallel_size: int | None = None,
    context_parallel_size: int = 1,
    expert_model_parallel_size: int = 1,
    expert_tensor_parallel_size: int | None = None,
    sequence_parallel: bool = False,
    use_megatron_fsdp: bool = False,
    account_for_embedding_in_pipeline_split: bool = False,
    account_for_loss_in_pipeline_split: bool = False,
    # training
    train_iters: int = 1_168_251,
    global_batch_size: int = 512,
    micro_batch_size: int = 1,
    seq_length: int = 8192,
    lr: float = 3e-4,
    min_lr: float = 3e-5,
    adam_eps: float = 1e-5,
    lr_warmup_iters: int = 2000,
    lr_decay_iters: int | None = None,
    eval_interval: int = 2000,
    eval_iters: int = 32,
    save_interval: int = 2000,
    # precision / overlap
    precision_config: MixedPrecisionConfig | str | None = "bf16_mixed",
    comm_overlap_config: CommOverlapConfig | None = None,
) -> ConfigContainer: ...


def _finetune_signature(
    dir: str | None = None,
    name: str = "default",
    pretrained_checkpoint: str | None = None,
    peft: Any = "lora",
    packed_sequence: bool = False,
    dataset_root: str | None = None,
    tokenizer_model: str | None = None,
    tensor_model_parallel_size: int = 1,
    pipeline_model_parallel_size: int = 1,
    pipeline_dtype: torch.dtype | None = None,
    virtual_pipeline_model_parallel_size: int | None = None,
    context_parallel_size: int = 1,
    expert_model_parallel_size: int = 1,
    expert_tensor_parallel_size: int | None = None,
    sequence_parallel: bool = False,
    train_iters: int = 1000,
    global_batch_size: int | None = None,
    micro_batch_size: int = 1,
    seq_length: int | None = None,
    finetune_lr: float | None = None,
    min_lr: float = 0.0,
    lr_warmup_iters: int = 50,
    lr_decay_iters: int | None = None,
    eval_interval: int = 30,
    eval_iters: int = 32,
    save_interval: int = 50,
    precision_config: MixedPrecisionConfig | str | None = "bf16_mixed",
    comm_overlap_config: CommOverlapConfig | None = None,
) -> ConfigContainer: ...


PRETRAIN_SIGNATURE = inspect.signature(_pretrain_signature)
FINETUNE_SIGNATURE = inspect.signature(_finetune_signature)
PARALLEL_ARGS = ("tensor_model_parallel_size", "pipeline_model_parallel_size", "pipeline_dtype",
                 "virtual_pipeline_model_parallel_size", "context_parallel_size",
                 "expert_model_parallel_size", "expert_tensor_parallel_size", "sequence_parallel")


# ------------------------------------------------------------------ decorators


def pretrain_recipe(provider: Callable, *, extra: Mapping[str, Any] | None = None,
                    customize: Callable[[ConfigContainer], None] | None = None,
                    outputs_without_dir: bool = True, **defaults):
    """Make a docstring-only stub into a pretraining recipe for ``provider`` (a preset class).

    defaults: this model's values for the shared arguments; extra: {"model.x": value, ...} set
    after building; customize(cfg): last step for what depends on the final arguments (e.g. a
    pipeline layout); outputs_without_dir=False: no checkpoints / TensorBoard unless ``dir``."""
    settings = dict(provider=provider, extra=dict(extra or {}), customize=customize,
                    outputs_without_dir=outputs_without_dir)
    return _decorator(build_pretrain, PRETRAIN_SIGNATURE, LEGACY_NAMES, settings, defaults, {})


def finetune_recipe(provider: Callable, *, extra: Mapping[str, Any] | None = None,
                    customize: Callable[[ConfigContainer], None] | None = None,
                    outputs_without_dir: bool = True, peft_fields: Mapping[str, Any] | None = None,
                    full_sft: Mapping[str, Any] | None = None, **defaults):
    """Like pretrain_recipe, for supervised fine-tuning. peft_fields: set on the LoRA / DoRA
    made from a ``peft`` string (dim, alpha, target_modules); full_sft: defaults that replace
    ``defaults`` when ``peft=None`` (a full fine-tune usually needs more model parallelism)."""
    settings = dict(provider=provider, extra=dict(extra or {}), customize=customize,
                    outputs_without_dir=outputs_without_dir, peft_fields=dict(peft_fields or {}))
    return _decorator(build_finetune, FINETUNE_SIGNATURE, FINETUNE_ALIASES, settings, defaults,
                      dict(full_sft or {}))


def _decorator(build, base: inspect.Signature, aliases: dict, settings: dict, defaults: dict,
               full_sft: dict):
    for given in (defaults, full_sft):
        unknown = sorted(set(given) - set(base.parameters))
        if unknown:
            raise TypeError(f"not recipe arguments: {', '.join(unknown)}")
    signature = base.replace(parameters=[
        p.replace(default=defaults.get(p.name, p.default)) for p in base.parameters.values()])
    _check_extra(settings["extra"])

    def decorate(stub: Callable) -> Callable:
        @functools.wraps(stub)
        def recipe(*args, **kwargs) -> ConfigContainer:
            explicit = _bind(signature, f"{stub.__module__}.{stub.__name__}", aliases, args,
                             kwargs)
            values = {n: p.default for n, p in signature.parameters.items()}
            if full_sft and _is_full_sft(explicit.get("peft", values.get("peft"))):
                values.update(full_sft)
            values.update(explicit)
            return build(settings, values)

        recipe.__signature__ = signature
        recipe.__doc__ = _document(stub.__doc__, defaults, full_sft, settings["extra"])
        recipe.recipe_defaults = {n: p.default for n, p in signature.parameters.items()}
        recipe.provider = settings["provider"]
        return recipe

    return decorate


def _bind(signature: inspect.Signature, where: str, aliases: dict, args, kwargs) -> dict:
    for old, new in aliases.items():
        if old in kwargs:
            if new in kwargs:
                raise RecipeArgumentError(f"{where}: give {new} or its older name {old}, not both")
            kwargs[new] = kwargs.pop(old)
    names = list(signature.parameters)
    for key in kwargs:
        if key not in signature.parameters:
            close = difflib.get_close_matches(key, names + list(aliases), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise RecipeArgumentError(f"{where}() has no argument {key!r}{hint}")
    try:
        return dict(signature.bind(*args, **kwargs).arguments)
    except TypeError as error:
        raise RecipeArgumentError(f"{where}(): {error}") from None


def _is_full_sft(peft) -> bool:
    return peft is None or (isinstance(peft, str) and peft.strip().lower() == "none")


def _document(doc: str | None, defaults: dict, full_sft: dict, extra: dict) -> str:
    """The stub's docstring plus the model-specific defaults, so help() shows what differs."""
    lines = [inspect.cleandoc(doc or "")]
    if defaults:
        lines.append("Defaults for this model: " + ", ".join(
            f"{k}={_short(v)}" for k, v in defaults.items()) + ".")
    if full_sft:
        lines.append("With peft=None (full fine-tune): " + ", ".join(
            f"{k}={_short(v)}" for k, v in full_sft.items()) + ".")
    if extra:
        lines.append("Also sets: " + ", ".join(f"{k}={_short(v)}" for k, v in extra.items()) + ".")
    lines.append("Other arguments: see mbridge_train.recipes._common (the shared builder).")
    return "\n\n".join(lines)


def _short(value) -> str:
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, CommOverlapConfig):
        set_fields = {k: v for k, v in vars(value).items() if v not in (None, False)}
        return f"CommOverlapConfig({', '.join(f'{k}={v}' for k, v in set_fields.items())})"
    if isinstance(value, MixedPrecisionConfig):
        return "MixedPrecisionConfig(...)"
    return repr(value)


# ------------------------------------------------------------------ building


def build_pretrain(settings: dict, a: dict) -> ConfigContainer:
    """ConfigContainer for pretraining from resolved arguments ``a``."""
    ckpt_dir, tb_dir = _output_dirs(a["dir"], a["name"], settings["outputs_without_dir"])
    model = _provider(settings["provider"], a, a["seq_length"])
    optimizer, scheduler = distributed_fused_adam_with_cosine_annealing(
        precision=_precision_name(a["precision_config"]), lr_warmup_iters=a["lr_warmup_iters"],
        lr_decay_iters=a["lr_decay_iters"], max_lr=a["lr"], min_lr=a["min_lr"],
        adam_eps=a["adam_eps"])
    cfg = ConfigContainer(
        model=model,
        train=TrainingConfig(
            train_iters=a["train_iters"], global_batch_size=a["global_batch_size"],
            micro_batch_size=a["micro_batch_size"], eval_interval=a["eval_interval"],
            eval_iters=a["eval_iters"], manual_gc=True, manual_gc_interval=100,
            manual_gc_eval=True),
        optimizer=optimizer,
        scheduler=scheduler,
        ddp=DistributedDataParallelConfig(
            check_for_nan_in_grad=True, grad_reduce_in_fp32=True, overlap_grad_reduce=True,
            overlap_param_gather=True, average_in_collective=True,
            use_distributed_optimizer=True, use_megatron_fsdp=a["use_megatron_fsdp"]),
        dataset=GPTDatasetConfig(
            sequence_length=a["seq_length"], random_seed=1234, reset_attention_mask=False,
            reset_position_ids=False, eod_mask_loss=False, num_dataset_builder_threads=1,
            data_sharding=True, dataloader_type="single", num_workers=8,
            **blend_fields(a["data_paths"], a["data_args_path"], a["train_data_path"],
                           a["valid_data_path"], a["test_data_path"],
                           a["per_split_data_args_path"], a["mock"])),
        tokenizer=_tokenizer(a["tokenizer_model"], model),
        checkpoint=CheckpointConfig(
            save=ckpt_dir, load=ckpt_dir, save_interval=a["save_interval"] if ckpt_dir else None,
            ckpt_format="torch_dist", fully_parallel_save=True),
        logger=LoggerConfig(log_interval=10, tensorboard_dir=tb_dir),
        rng=RNGConfig(seed=1234),
        comm_overlap=a["comm_overlap_config"],
        mixed_precision=_copy_precision(a["precision_config"]),
    )
    return _finish(cfg, settings)


def build_finetune(settings: dict, a: dict) -> ConfigContainer:
    """ConfigContainer for (PEFT or full) supervised fine-tuning from resolved arguments ``a``."""
    peft = default_peft_config(a["peft"], **settings["peft_fields"]) \
        if isinstance(a["peft"], str) else a["peft"]
    packed = a["packed_sequence"]
    seq_length = a["seq_length"] or (4096 if packed else 2048)
    gbs = a["global_batch_size"] or (8 if packed else 128)
    lr = a["finetune_lr"] if a["finetune_lr"] is not None else (1e-4 if peft else 5e-6)
    ckpt_dir, tb_dir = _output_dirs(a["dir"], a["name"], settings["outputs_without_dir"])
    model = _provider(settings["provider"], a, seq_length)
    optimizer, scheduler = distributed_fused_adam_with_cosine_annealing(
        precision=_precision_name(a["precision_config"]), lr_warmup_iters=a["lr_warmup_iters"],
        lr_decay_iters=a["lr_decay_iters"], max_lr=lr, min_lr=a["min_lr"], adam_beta2=0.98)
    if peft is not None:  # adapters are small: plain Adam state, nothing to shard
        optimizer.use_distributed_optimizer = False
        model.cross_entropy_loss_fusion = False
    specs = None
    if packed:
        cp = a["context_parallel_size"] or 1
        specs = PackedSequenceSpecs(packed_sequence_size=seq_length,
                                    pad_seq_to_mult=2 * cp if cp > 1 else 1)
    cfg = ConfigContainer(
        model=model,
        train=TrainingConfig(
            train_iters=a["train_iters"], global_batch_size=gbs,
            micro_batch_size=a["micro_batch_size"], eval_interval=a["eval_interval"],
            eval_iters=a["eval_iters"], manual_gc=True, manual_gc_interval=100,
            manual_gc_eval=True),
        optimizer=optimizer,
        scheduler=scheduler,
        ddp=DistributedDataParallelConfig(check_for_nan_in_grad=True, grad_reduce_in_fp32=True,
                                          use_distributed_optimizer=peft is None),
        dataset=FinetuningDatasetConfig(
            dataset_root=a["dataset_root"], seq_length=seq_length, seed=5678,
            packed_sequence_specs=specs, dataloader_type="cyclic", num_workers=1,
            do_validation=True, do_test=True,
            # pipeline stages exchange fixed-shape activations: pad every sample to seq_length
            dataset_kwargs={"pad_to_max_length": True}
            if a["pipeline_model_parallel_size"] > 1 and not packed else None),
        tokenizer=_tokenizer(a["tokenizer_model"] or getattr(model, "hf_model_id", None), model),
        checkpoint=CheckpointConfig(
            save=ckpt_dir, load=ckpt_dir, save_interval=a["save_interval"] if ckpt_dir else None,
            pretrained_checkpoint=a["pretrained_checkpoint"], ckpt_format="torch_dist",
            fully_parallel_save=True),
        logger=LoggerConfig(log_interval=1, tensorboard_dir=tb_dir),
        rng=RNGConfig(seed=5678),
        peft=peft,
        comm_overlap=a["comm_overlap_config"],
        mixed_precision=_copy_precision(a["precision_config"]),
    )
    return _finish(cfg, settings)


def _provider(provider: Callable, a: dict, seq_length: int):
    fields = {name: a[name] for name in PARALLEL_ARGS}
    if fields["expert_tensor_parallel_size"] is None:
        del fields["expert_tensor_parallel_size"]  # megatron-core: follows tensor parallelism
    if "account_for_embedding_in_pipeline_split" in a:
        fields["account_for_embedding_in_pipeline_split"] = \
            a["account_for_embedding_in_pipeline_split"]
        fields["account_for_loss_in_pipeline_split"] = a["account_for_loss_in_pipeline_split"]
    return provider(seq_length=seq_length, **fields)


def _tokenizer(tokenizer_model: str | None, model) -> TokenizerConfig:
    """A Hugging Face tokenizer when one is named (a local tokenizer.json folder; the preset's
    hub id for fine-tuning), else mbridge's byte-level NullTokenizer sized like the model, which
    needs no files and suits mock data."""
    if tokenizer_model:
        return TokenizerConfig(tokenizer_type="HuggingFaceTokenizer",
                               tokenizer_model=str(tokenizer_model))
    return TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=model.vocab_size or 257)


def _output_dirs(base: str | None, name: str, without_dir: bool) -> tuple[str | None, str | None]:
    """(checkpoint dir, TensorBoard dir) under ``dir/name`` (default ./nemo_experiments/name)."""
    if base is None and not without_dir:
        return None, None
    run = os.path.join(base if base is not None else os.path.join(os.getcwd(), OUTPUT_ROOT),
                       name)
    return os.path.join(run, "checkpoints"), os.path.join(run, "tb_logs")


def _precision_name(precision) -> str:
    if precision is None:
        return "32"
    config = get_mixed_precision_config(precision)
    return "bf16-mixed" if config.bf16 else "16-mixed" if config.fp16 else "32"


def _copy_precision(precision):
    """Recipes never share a MixedPrecisionConfig object (a default argument is one object)."""
    return get_mixed_precision_config(precision) if isinstance(precision, MixedPrecisionConfig) \
        else precision


def _finish(cfg: ConfigContainer, settings: dict) -> ConfigContainer:
    import copy

    if cfg.comm_overlap is not None:  # same reason as _copy_precision
        cfg.comm_overlap = copy.deepcopy(cfg.comm_overlap)
    for path, value in settings["extra"].items():
        set_path(cfg, path, copy.deepcopy(value))
    if settings["customize"] is not None:
        settings["customize"](cfg)
    return cfg


def set_path(cfg, path: str, value) -> None:
    """Set ``a.b.c`` on ``cfg``; the attribute must exist (a misspelt extra fails loudly)."""
    *parents, last = path.split(".")
    node = cfg
    for part in parents:
        node = getattr(node, part)
    if not hasattr(node, last):
        raise AttributeError(f"recipe extra {path!r}: {type(node).__name__} has no field {last!r}")
    setattr(node, last, value)


_EXTRA_ROOTS = {"model", "train", "optimizer", "scheduler", "ddp", "dataset", "tokenizer",
                "checkpoint", "logger", "dist", "rng", "mixed_precision", "comm_overlap"}


def _check_extra(extra: dict) -> None:
    for path in extra:
        if path.split(".")[0] not in _EXTRA_ROOTS or "." not in path:
            raise TypeError(f"recipe extra {path!r} is not a dotted config path such as "
                            "'model.recompute_granularity'")
