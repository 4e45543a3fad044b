# The spec's "Recipe Migration" examples, with `megatron.bridge` replaced by `mbridge`:
# "Using Pre-Built Recipes" and "Migrating a Custom Recipe -- After". Scaled down: the model's
# dimensions and the batch/step counts (assignments after the recipe call, as the spec's
# "Customize as needed" does), mock data, checkpoint paths from the environment.
import os
from typing import Optional

from mbridge.recipes.llama.llama3_8b import pretrain_config
from mbridge.training import pretrain
from mbridge.training.gpt_step import forward_step

SMALL = dict(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
             num_query_groups=4, vocab_size=1024, seq_length=32)  # the e2e data's tokenizer


def scale_down(cfg, tensor_parallel):
    for name, value in SMALL.items():
        setattr(cfg.model, name, value)
    cfg.model.tensor_model_parallel_size = tensor_parallel
    cfg.model.context_parallel_size = 1  # the 8B recipe's CP=2 needs Transformer Engine
    cfg.tokenizer.vocab_size = SMALL["vocab_size"]  # the recipe sized its NullTokenizer like the 8B
    cfg.dataset.sequence_length = 32
    cfg.dataset.num_workers = 0
    cfg.train.global_batch_size, cfg.train.micro_batch_size = 4, 1
    cfg.train.eval_interval, cfg.train.eval_iters = 2, 1
    cfg.scheduler.lr_warmup_iters = 1
    cfg.logger.tensorboard_dir = None
    cfg.mixed_precision = None  # fp32 on CPU
    return cfg


# Use pre-built recipe
cfg = pretrain_config(dir=os.environ["E2E_OUT"], mock=True)

# Customize as needed
cfg.train.train_iters = 4
cfg.model.tensor_model_parallel_size = 4
scale_down(cfg, tensor_parallel=4)

# Launch training
pretrain(cfg, forward_step_func=forward_step)


# my_recipes/llama3_8b.py
from mbridge.training.config import (
    ConfigContainer,
    TrainingConfig,
    GPTDatasetConfig,
    CheckpointConfig,
    SchedulerConfig,
)
from megatron.core.optimizer import OptimizerConfig
from mbridge.models import Llama3ModelProvider8B
from mbridge.training import pretrain

def llama3_8b_config(
    # Model/parallelism params
    tensor_parallelism: int = 1,
    pipeline_parallelism: int = 1,
    # Training params
    train_iters: int = 1000,
    eval_interval: int = 100,
    eval_iters: int = 50,
    # Data params
    data_path: str = "/path/to/data_text_document",
    seq_length: int = 8192,
    global_batch_size: int = 512,
    micro_batch_size: int = 1,
    # Checkpoint params
    checkpoint_dir: Optional[str] = None,
    save_interval: int = 1000,
) -> ConfigContainer:
    """Create a Llama3 8B pretraining configuration."""
    return ConfigContainer(
        model=Llama3ModelProvider8B(
            # Preset architecture from Llama3Config8B (num_layers=32, hidden_size=4096, etc.)
            # Only need to specify parallelism and overrides
            tensor_model_parallel_size=tensor_parallelism,
            pipeline_model_parallel_size=pipeline_parallelism,
            **SMALL,  # scaled down
        ),
        train=TrainingConfig(
            train_iters=train_iters,
            eval_interval=eval_interval,
            eval_iters=eval_iters,
            global_batch_size=global_batch_size,
            micro_batch_size=micro_batch_size,
        ),
        dataset=GPTDatasetConfig(
            blend=[data_path],
            sequence_length=seq_length,
            num_workers=0,  # scaled down
        ),
        optimizer=OptimizerConfig(
            optimizer="adam",
            lr=3e-4,
            use_distributed_optimizer=True,
        ),
        scheduler=SchedulerConfig(
            lr_decay_style="cosine",
            lr_warmup_iters=1,  # scaled down (100)
        ),
    checkpoint=CheckpointConfig(
            save=checkpoint_dir or "/results/checkpoints",
            save_interval=save_interval,
        ),
        mixed_precision="bf16-mixed",
    )

# Usage
if __name__ == "__main__":
    from mbridge.training.gpt_step import forward_step

    cfg = llama3_8b_config(
        train_iters=4,
        checkpoint_dir=os.environ["E2E_CUSTOM_CHECKPOINTS"],
        tensor_parallelism=2,
        pipeline_parallelism=2,  # scaled down: 4 CPU ranks
        data_path=os.environ["E2E_DATA_PREFIX"],
        seq_length=32, global_batch_size=4, eval_interval=2, eval_iters=1, save_interval=2,
    )
    pretrain(cfg, forward_step_func=forward_step)
