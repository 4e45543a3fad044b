"""The two builders behind every recipe: a bound spec (``spec.bind(arguments)``) -> ConfigContainer.

Each recipe body calls one of them and then applies what is particular to its model (dotted
settings through ``mbridge_config.overrides.apply_overrides``, a pipeline layout, ...).
"""

from __future__ import annotations

import copy
import os

from megatron.core.distributed import DistributedDataParallelConfig

from mbridge_config import (
    CheckpointConfig,
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
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec
from mbridge_train.recipes.utils.dataset_utils import blend_fields
from mbridge_train.recipes.utils.finetune_utils import default_peft_config

OUTPUT_ROOT = "nemo_experiments"
"""Where runs go without ``dir`` (``./nemo_experiments/<name>``), as in Megatron Bridge."""

PIPELINE_SPLIT = {"model.account_for_embedding_in_pipeline_split": True,
                  "model.account_for_loss_in_pipeline_split": True}
"""For fine-tuning recipes (whose arguments do not include them): the embedding and the loss
count as a layer each when layers are split over pipeline stages."""


def build_pretrain(spec: PretrainSpec) -> ConfigContainer:
    """ConfigContainer for pretraining ``spec.provider`` with the bound arguments of ``spec``."""
    model = _provider(spec, spec.seq_length,
                      account_for_embedding_in_pipeline_split=(
                          spec.account_for_embedding_in_pipeline_split),
                      account_for_loss_in_pipeline_split=spec.account_for_loss_in_pipeline_split)
    optimizer, scheduler = distributed_fused_adam_with_cosine_annealing(
        precision=_precision_name(spec.precision_config), lr_warmup_iters=spec.lr_warmup_iters,
        lr_decay_iters=spec.lr_decay_iters, max_lr=spec.lr, min_lr=spec.min_lr,
        adam_eps=spec.adam_eps)
    return ConfigContainer(
        model=model,
        train=_training(spec, spec.global_batch_size),
        optimizer=optimizer,
        scheduler=scheduler,
        ddp=DistributedDataParallelConfig(
            check_for_nan_in_grad=True, grad_reduce_in_fp32=True, overlap_grad_reduce=True,
            overlap_param_gather=True, average_in_collective=True,
            use_distributed_optimizer=True, use_megatron_fsdp=spec.use_megatron_fsdp),
        dataset=GPTDatasetConfig(
            sequence_length=spec.seq_length, random_seed=1234, reset_attention_mask=False,
            reset_position_ids=False, eod_mask_loss=False, num_dataset_builder_threads=1,
            data_sharding=True, dataloader_type="single", num_workers=8,
            **blend_fields(spec.data_paths, spec.data_args_path, spec.train_data_path,
                           spec.valid_data_path, spec.test_data_path,
                           spec.per_split_data_args_path, spec.mock)),
        tokenizer=_tokenizer(spec.tokenizer_model, model),
        checkpoint=_checkpoint(spec),
        logger=LoggerConfig(log_interval=10, tensorboard_dir=_output_dirs(spec)[1]),
        rng=RNGConfig(seed=1234),
        comm_overlap=copy.deepcopy(spec.comm_overlap_config),
        mixed_precision=_copy_precision(spec.precision_config),
    )


def build_finetune(spec: FinetuneSpec) -> ConfigContainer:
    """ConfigContainer for (PEFT or full) supervised fine-tuning with the bound ``spec``."""
    peft = default_peft_config(spec.peft, **copy.deepcopy(dict(spec.peft_fields))) \
        if isinstance(spec.peft, str) else spec.peft
    packed = spec.packed_sequence
    seq_length = spec.seq_length or (4096 if packed else 2048)
    lr = spec.finetune_lr if spec.finetune_lr is not None else (1e-4 if peft else 5e-6)
    model = _provider(spec, seq_length)
    optimizer, scheduler = distributed_fused_adam_with_cosine_annealing(
        precision=_precision_name(spec.precision_config), lr_warmup_iters=spec.lr_warmup_iters,
        lr_decay_iters=spec.lr_decay_iters, max_lr=lr, min_lr=spec.min_lr, adam_beta2=0.98)
    if peft is not None:  # adapters are small: plain Adam state, nothing to shard
        optimizer.use_distributed_optimizer = False
        model.cross_entropy_loss_fusion = False
    specs = None
    if packed:
        cp = spec.context_parallel_size or 1
        specs = PackedSequenceSpecs(packed_sequence_size=seq_length,
                                    pad_seq_to_mult=2 * cp if cp > 1 else 1)
    return ConfigContainer(
        model=model,
        train=_training(spec, spec.global_batch_size or (8 if packed else 128)),
        optimizer=optimizer,
        scheduler=scheduler,
        ddp=DistributedDataParallelConfig(check_for_nan_in_grad=True, grad_reduce_in_fp32=True,
                                          use_distributed_optimizer=peft is None),
        dataset=FinetuningDatasetConfig(
            dataset_root=spec.dataset_root, seq_length=seq_length, seed=5678,
            packed_sequence_specs=specs, dataloader_type="cyclic", num_workers=1,
            do_validation=True, do_test=True,
            # pipeline stages exchange fixed-shape activations: pad every sample to seq_length
            dataset_kwargs={"pad_to_max_length": True}
            if spec.pipeline_model_parallel_size > 1 and not packed else None),
        tokenizer=_tokenizer(spec.tokenizer_model or getattr(model, "hf_model_id", None), model),
        checkpoint=_checkpoint(spec, pretrained_checkpoint=spec.pretrained_checkpoint),
        logger=LoggerConfig(log_interval=1, tensorboard_dir=_output_dirs(spec)[1]),
        rng=RNGConfig(seed=5678),
        peft=peft,
        comm_overlap=copy.deepcopy(spec.comm_overlap_config),
        mixed_precision=_copy_precision(spec.precision_config),
    )


def _provider(spec: PretrainSpec | FinetuneSpec, seq_length: int, **fields):
    if spec.expert_tensor_parallel_size is not None:  # else megatron-core: follows TP
        fields["expert_tensor_parallel_size"] = spec.expert_tensor_parallel_size
    return spec.provider(
        seq_length=seq_length, tensor_model_parallel_size=spec.tensor_model_parallel_size,
        pipeline_model_parallel_size=spec.pipeline_model_parallel_size,
        pipeline_dtype=spec.pipeline_dtype,
        virtual_pipeline_model_parallel_size=spec.virtual_pipeline_model_parallel_size,
        context_parallel_size=spec.context_parallel_size,
        expert_model_parallel_size=spec.expert_model_parallel_size,
        sequence_parallel=spec.sequence_parallel, **fields)


def _training(spec: PretrainSpec | FinetuneSpec, global_batch_size: int) -> TrainingConfig:
    return TrainingConfig(
        train_iters=spec.train_iters, global_batch_size=global_batch_size,
        micro_batch_size=spec.micro_batch_size, eval_interval=spec.eval_interval,
        eval_iters=spec.eval_iters, manual_gc=True, manual_gc_interval=100, manual_gc_eval=True)


def _checkpoint(spec: PretrainSpec | FinetuneSpec, **fields) -> CheckpointConfig:
    """Saved to and resumed from ``dir/name/checkpoints``: the same recipe run again resumes."""
    directory = _output_dirs(spec)[0]
    return CheckpointConfig(save=directory, load=directory,
                            save_interval=spec.save_interval if directory else None,
                            ckpt_format="torch_dist", fully_parallel_save=True, **fields)


def _tokenizer(tokenizer_model: str | None, model) -> TokenizerConfig:
    """A Hugging Face tokenizer when one is named (a local tokenizer.json folder; the preset's
    hub id for fine-tuning), else mbridge's byte-level NullTokenizer sized like the model, which
    needs no files and suits mock data."""
    if tokenizer_model:
        return TokenizerConfig(tokenizer_type="HuggingFaceTokenizer",
                               tokenizer_model=str(tokenizer_model))
    return TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=model.vocab_size or 257)


def _output_dirs(spec: PretrainSpec | FinetuneSpec) -> tuple[str | None, str | None]:
    """(checkpoint dir, TensorBoard dir) under ``dir/name`` (default ./nemo_experiments/name)."""
    if spec.dir is None and not spec.outputs_without_dir:
        return None, None
    base = spec.dir if spec.dir is not None else os.path.join(os.getcwd(), OUTPUT_ROOT)
    run = os.path.join(base, spec.run_name)
    return os.path.join(run, "checkpoints"), os.path.join(run, "tb_logs")


def _precision_name(precision) -> str:
    if precision is None:
        return "32"
    config = get_mixed_precision_config(precision)
    return "bf16-mixed" if config.bf16 else "16-mixed" if config.fp16 else "32"


def _copy_precision(precision):
    """Recipes never share a MixedPrecisionConfig object (a spec's default is one object)."""
    return get_mixed_precision_config(precision) if isinstance(precision, MixedPrecisionConfig) \
        else precision
