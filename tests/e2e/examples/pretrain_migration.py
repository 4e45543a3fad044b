# The spec's "Pretraining Migration Example, After: Megatron Bridge", with `megatron.bridge`
# replaced by `mbridge`. Scaled down: the model dimensions (kwargs added to the preset), the
# batch, sequence and step counts, and the paths (from the environment). Runs on 4 ranks
# (TP=2 x PP=2, as in the spec).
import os

# Megatron Bridge configuration pattern
from mbridge.training.config import (
    CheckpointConfig,
    ConfigContainer,
    GPTDatasetConfig,
    LoggerConfig,
    TrainingConfig,
)
from mbridge.models import Llama3ModelProvider8B  # Direct equivalent to Llama3Config8B
from megatron.core.optimizer import OptimizerConfig
from mbridge.training.config import SchedulerConfig
from mbridge.training import pretrain
# Use the provided GPT forward step
from mbridge.training.gpt_step import forward_step

DATA = os.environ["E2E_DATA_PREFIX"]
CHECKPOINTS = os.environ["E2E_CHECKPOINTS"]
SCALED_DOWN = dict(num_layers=4, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                   num_query_groups=2)


def create_config():
    return ConfigContainer(
        # Model with parallelism built-in - using preset 8B config
        model=Llama3ModelProvider8B(
            # Parallelism settings (moved from MegatronStrategy)
            tensor_model_parallel_size=2,
            pipeline_model_parallel_size=2,
            context_parallel_size=1,
            sequence_parallel=False,
            # Can still override any model params if needed
            seq_length=64,
            **SCALED_DOWN,
        ),
        # Training loop configuration
        train=TrainingConfig(
            global_batch_size=8,
            micro_batch_size=1,
            train_iters=6,              # was max_steps
            eval_interval=3,            # was val_check_interval
            eval_iters=2,               # was limit_val_batches
        ),
        # Optimization and scheduling
        optimizer=OptimizerConfig(
            optimizer="adam",
            lr=3e-3,
            min_lr=3e-4,
            use_distributed_optimizer=True,
        ),
        scheduler=SchedulerConfig(
            lr_decay_style="cosine",
            lr_warmup_iters=1,
            lr_decay_iters=6,
        ),
        # Data configuration
        dataset=GPTDatasetConfig(
            blend=[DATA],
            sequence_length=64,
        ),
        # Checkpointing and logging
        checkpoint=CheckpointConfig(
            save=CHECKPOINTS,
            save_interval=3,
            ckpt_format="torch_dist",
        ),
        logger=LoggerConfig(log_interval=1),  # was log_every_n_steps
        # Mixed precision
        mixed_precision="bf16_mixed",
    )


# Execute training
cfg = create_config()

pretrain(cfg, forward_step_func=forward_step)
