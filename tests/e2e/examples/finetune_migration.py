# The spec's "Fine-Tuning Migration Example (SFT/PEFT), After: Megatron Bridge", with
# `megatron.bridge` replaced by `mbridge`. Scaled down: model dimensions (the ones the
# pretraining example trained), batch, sequence and step counts; paths from the environment.
# "# ... other configs" is filled in with the optimizer and the tokenizer (fine-tuning data is
# text). One rank: the TP=2 x PP=2 pretraining checkpoint is resharded on load.
import os

from mbridge.training.config import (CheckpointConfig, ConfigContainer, FinetuningDatasetConfig,
                                     PackedSequenceSpecs, TrainingConfig)
from megatron.core.optimizer import OptimizerConfig
from mbridge.training.config import SchedulerConfig
from mbridge.training.tokenizers.config import TokenizerConfig
from mbridge.training import finetune
from mbridge.training.gpt_step import forward_step

# Megatron Bridge fine-tuning configuration (with optional PEFT)
from mbridge.models import Llama3ModelProvider8B
from mbridge.peft import LoRA

SCALED_DOWN = dict(num_layers=4, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                   num_query_groups=2, seq_length=64)


def create_finetune_config():
    return ConfigContainer(
        model=Llama3ModelProvider8B(
            # Preset config matching Llama3Config8B
            **SCALED_DOWN,
        ),
        train=TrainingConfig(
            micro_batch_size=1,
            global_batch_size=4,
            train_iters=4,
            eval_interval=2,
            eval_iters=1,
        ),
        # Finetuning dataset instead of pretraining dataset
        dataset=FinetuningDatasetConfig(
            dataset_root=os.environ["E2E_SFT_ROOT"],
            seq_length=64,
            do_validation=True,
            do_test=True,
            # Optional: packed sequence support
            packed_sequence_specs=PackedSequenceSpecs(
                packed_sequence_size=64,
            ),
        ),
        # Must specify pretrained checkpoint
        checkpoint=CheckpointConfig(
            pretrained_checkpoint=os.environ["E2E_PRETRAINED"],
            save=os.environ["E2E_CHECKPOINTS"],
            load=os.environ["E2E_CHECKPOINTS"],
            save_interval=2,
        ),
        # Optional: Enable PEFT
        peft=LoRA(
            target_modules=["linear_qkv", "linear_proj"],
            dim=32,
            alpha=16,
        ),
        # ... other configs
        optimizer=OptimizerConfig(optimizer="adam", lr=1e-3, use_distributed_optimizer=True),
        scheduler=SchedulerConfig(lr_warmup_iters=1),
        tokenizer=TokenizerConfig(tokenizer_type="HuggingFaceTokenizer",
                                  tokenizer_model=os.environ["E2E_TOKENIZER_DIR"]),
    )


finetune(create_finetune_config(), forward_step_func=forward_step)
