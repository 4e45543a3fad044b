# The spec's "Configuration Migration" section (Megatron Bridge halves), with `megatron.bridge`
# replaced by `mbridge`: every config it shows is built as written (paths from the environment,
# the hub tokenizer id replaced by a local folder: nothing is downloaded), each is validated
# inside a ConfigContainer, and one scaled-down run trains with the section's logger
# (TensorBoard + offline W&B), profiler and checkpoint settings.
import os

import torch

OUT = os.environ["E2E_OUT"]
DATA = os.environ["E2E_DATA_PREFIX"]
TOKENIZER_DIR = os.environ["E2E_TOKENIZER_DIR"]
os.environ.setdefault("WANDB_MODE", "offline")  # no network here

# Training Configuration Migration
from mbridge.training.config import LoggerConfig, TrainingConfig

train_config = TrainingConfig(
    train_iters=1000,           # was max_steps
    eval_interval=100,          # was val_check_interval
    eval_iters=50,              # was limit_val_batches (for both val and test)
)
logger_config = LoggerConfig(log_interval=10)  # was log_every_n_steps

# Data Configuration Migration
from mbridge.training.config import GPTDatasetConfig, TrainingConfig

# Single dataset
dataset_config = GPTDatasetConfig(
    blend=[DATA],
    sequence_length=4096,
    split="949,50,1",
)
train_config = TrainingConfig(
    micro_batch_size=1,
    global_batch_size=512,
)

# Multiple datasets with weights (blending)
dataset_config = GPTDatasetConfig(
    blend=[
        DATA,
        DATA,
    ],
    blend_weights=[0.3, 0.7],  # Explicit weights (not zipped with paths)
    sequence_length=4096,
    split="949,50,1",
)

from mbridge.training.config import FinetuningDatasetConfig, TrainingConfig

finetune_dataset_config = FinetuningDatasetConfig(
    dataset_root=os.environ["E2E_SFT_ROOT"],
    seq_length=2048,
    do_validation=True,
    do_test=False,
    # Dataloader options (inherited from DataloaderConfig)
    num_workers=8,
    pin_memory=True,
    persistent_workers=False,
)

# Tokenizer Migration
from mbridge.training.tokenizers.config import TokenizerConfig

# GPT2 BPE Tokenizer
gpt2_tokenizer_config = TokenizerConfig(
    tokenizer_type="GPT2BPETokenizer",
    vocab_file=f"{OUT}/vocab.json",
    merge_file=f"{OUT}/merges.txt",
)

# HuggingFace Tokenizer
tokenizer_config = TokenizerConfig(
    tokenizer_type="HuggingFaceTokenizer",
    tokenizer_model=TOKENIZER_DIR,  # was "meta-llama/Llama-3-8B" (a hub id)
)

# Vocab Size Priority
from mbridge.training.config import ConfigContainer
from mbridge.models import Llama3ModelProvider8B

vocab_from_tokenizer = ConfigContainer(
    model=Llama3ModelProvider8B(
        # vocab_size not set - will use tokenizer's vocab size
        vocab_size=None,
    ),
    tokenizer=TokenizerConfig(
        tokenizer_type="HuggingFaceTokenizer",
        tokenizer_model=TOKENIZER_DIR,
    ),
)
vocab_from_model = ConfigContainer(
    model=Llama3ModelProvider8B(
        vocab_size=128256,  # Explicitly set (must be >= tokenizer vocab size)
    ),
    tokenizer=tokenizer_config,
)

# Parallelism Configuration Migration
from mbridge.models import GPTModelProvider

model = GPTModelProvider(
    # Model architecture
    num_layers=32,
    hidden_size=4096,
    # Parallelism co-located with model
    tensor_model_parallel_size=8,
    pipeline_model_parallel_size=2,
    context_parallel_size=2,
    sequence_parallel=True,
)

# Mixed Precision Migration
from mbridge.training.mixed_precision import MixedPrecisionConfig

preset_precision = ConfigContainer(
    model=GPTModelProvider(num_layers=2, hidden_size=64, num_attention_heads=4),
    mixed_precision="bf16_mixed",  # Simple preset
)
detailed_precision = ConfigContainer(
    model=GPTModelProvider(num_layers=2, hidden_size=64, num_attention_heads=4),
    mixed_precision=MixedPrecisionConfig(
        fp16=False,
        bf16=True,
        params_dtype=torch.bfloat16,
        pipeline_dtype=torch.bfloat16,
    ),
)

# Checkpointing Configuration Migration
from mbridge.training.config import CheckpointConfig

checkpoint_config = CheckpointConfig(
    # Saving configuration
    save=f"{OUT}/checkpoints",
    save_interval=1000,
    most_recent_k=3,        # Keeps 3 most recent checkpoints (not metric-based)
    save_optim=True,
    save_rng=True,

    # Loading/resumption configuration
    load=f"{OUT}/checkpoints",  # Resume from this directory (if exists)
    load_optim=True,               # Load optimizer state
    exit_on_missing_checkpoint=False,  # Don't exit if no checkpoint found (was resume_ignore_no_checkpoint)

    # Format and performance options
    ckpt_format="torch_dist",
    async_save=True,
    fully_parallel_save=True,
    fully_parallel_load=True,
    dist_ckpt_strictness="assume_ok_unexpected",
)

# Optimizer and LR Scheduler Migration
from mbridge.recipes.utils.optimizer_utils import distributed_fused_adam_with_cosine_annealing
from megatron.core.optimizer import OptimizerConfig
from mbridge.training.config import SchedulerConfig

# Option 1: Using utility functions
optimizer_config, scheduler_config = distributed_fused_adam_with_cosine_annealing(
    max_lr=3e-4,
    min_lr=3e-5,
    lr_warmup_iters=2000,
    lr_decay_iters=100000,
)

# Option 2: Direct configuration
optimizer_config = OptimizerConfig(
    optimizer="adam",
    lr=3e-4,
    min_lr=3e-5,
    weight_decay=0.1,
    use_distributed_optimizer=True,
)

scheduler_config = SchedulerConfig(
    lr_decay_style="cosine",
    lr_warmup_iters=2000,
    lr_decay_iters=100000,
)

# Logging Configuration Migration
logger_config = LoggerConfig(
    # General logging
    log_interval=10,              # Log metrics every N iterations
    log_throughput=True,          # Log throughput per GPU

    # TensorBoard configuration
    tensorboard_dir=f"{OUT}/tensorboard",
    tensorboard_log_interval=1,   # Write to TensorBoard every N iterations
    log_timers_to_tensorboard=False,
    log_validation_ppl_to_tensorboard=False,

    # Weights & Biases configuration
    wandb_project="my_project",
    wandb_exp_name="my_run",
    wandb_entity="my_team",
    wandb_save_dir=f"{OUT}/wandb",
)

# Profiling Configuration Migration
from mbridge.training.config import ProfilingConfig

nsys_profiling_config = ProfilingConfig(
    use_nsys_profiler=True,
    profile_step_start=100,
    profile_step_end=110,
    profile_ranks=[0],
    record_shapes=True,
)
profiling_config = ProfilingConfig(
    use_pytorch_profiler=True,
    profile_step_start=100,
    profile_step_end=110,
    profile_ranks=[0],
    record_memory_history=True,
    memory_snapshot_path="memory_profile.pickle",
)

# PEFT Configuration Migration
from mbridge.peft import LoRA

peft_config = ConfigContainer(
    model=Llama3ModelProvider8B(),
    # ... other configs
    checkpoint=CheckpointConfig(
        pretrained_checkpoint="/path/to/megatron/checkpoint",  # Required for PEFT
        save="/path/to/peft/checkpoints",
    ),
    peft=LoRA(
        target_modules=["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"],
        dim=32,
        alpha=16,
        dropout=0.0,
    ),
)

# ----------------------------------------------------------------------------- checks
# Each container above validates at the world size its parallelism implies.
from mbridge_config import ConfigError

validated = {}
for name, cfg, world in (("vocab_from_tokenizer", vocab_from_tokenizer, 1),
                         ("vocab_from_model", vocab_from_model, 1),
                         ("preset_precision", preset_precision, 1),
                         ("detailed_precision", detailed_precision, 1),
                         ("peft", peft_config, 1)):
    cfg.train = TrainingConfig(micro_batch_size=1, global_batch_size=8, train_iters=10)
    if cfg.dataset is None:
        cfg.dataset = GPTDatasetConfig(blend=[DATA], sequence_length=cfg.model.seq_length)
    cfg.finalize()
    cfg.validate(world)
    validated[name] = (cfg.model.bf16, cfg.model.params_dtype)
parallel = ConfigContainer(model=model, train=TrainingConfig(micro_batch_size=1,
                                                             global_batch_size=64, train_iters=1),
                           dataset=GPTDatasetConfig(blend=[DATA], sequence_length=1024))
parallel.validate(64)  # TP8 x PP2 x CP2 x DP2

# One scaled-down run with the logging, profiling and checkpoint settings above (the profile
# window and intervals scaled to a 6-step run; the saves asynchronous, as configured above).
from mbridge.training import pretrain
from mbridge.training.gpt_step import forward_step

run_cfg = ConfigContainer(
    model=Llama3ModelProvider8B(num_layers=2, hidden_size=64, ffn_hidden_size=128,
                                num_attention_heads=4, num_query_groups=2, seq_length=64,
                                vocab_size=None),
    train=TrainingConfig(train_iters=6, eval_interval=3, eval_iters=1, micro_batch_size=2,
                         global_batch_size=4),
    dataset=GPTDatasetConfig(blend=[DATA, DATA], blend_weights=[0.3, 0.7], sequence_length=64,
                             split="949,50,1", num_workers=0),
    tokenizer=tokenizer_config,
    optimizer=optimizer_config,
    scheduler=SchedulerConfig(lr_decay_style="cosine", lr_warmup_iters=1, lr_decay_iters=6),
    checkpoint=checkpoint_config,
    logger=logger_config,
    profiling=profiling_config,
)
run_cfg.checkpoint.save_interval = 3  # async_save=True, as the spec writes it
run_cfg.logger.log_interval = 1
run_cfg.profiling.profile_step_start, run_cfg.profiling.profile_step_end = 2, 4
run_cfg.profiling.memory_snapshot_path = f"{OUT}/memory_profile.pickle"

pretrain(run_cfg, forward_step_func=forward_step)
RESULT = {"validated": validated, "async_save": run_cfg.checkpoint.async_save}
