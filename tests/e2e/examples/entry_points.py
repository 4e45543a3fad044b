# The spec's "Entry Points: pretrain and finetune" section (Megatron Bridge halves), with
# `megatron.bridge` replaced by `mbridge`: converting a Hugging Face checkpoint with AutoBridge,
# then the SFT and the PEFT `finetune` examples starting from it. Scaled down: the model's
# dimensions (those of the tiny Hugging Face Llama the test saved), batch/sequence/step counts;
# paths from the environment; the tokenizer is added (the spec's examples leave it out).
import os

from mbridge.training.config import (CheckpointConfig, ConfigContainer, FinetuningDatasetConfig,
                                     TrainingConfig)
from mbridge.training.tokenizers.config import TokenizerConfig
from megatron.core.optimizer import OptimizerConfig
from mbridge.models import Llama3ModelProvider8B

HF, OUT = os.environ["E2E_HF_MODEL"], os.environ["E2E_OUT"]
SCALED_DOWN = dict(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                   num_query_groups=2, vocab_size=int(os.environ["E2E_VOCAB"]), seq_length=64)
TOKENIZER = TokenizerConfig(tokenizer_type="HuggingFaceTokenizer",
                            tokenizer_model=os.environ["E2E_TOKENIZER_DIR"])

from mbridge import AutoBridge

# Convert HuggingFace to Megatron format
AutoBridge.import_ckpt(
    HF,
    f"{OUT}/megatron_checkpoint"
)

from mbridge.training import finetune
from mbridge.training.gpt_step import forward_step

config = ConfigContainer(
    model=Llama3ModelProvider8B(**SCALED_DOWN),
    train=TrainingConfig(
        train_iters=3,
        eval_interval=2,
        micro_batch_size=1,
        global_batch_size=4,
    ),
    dataset=FinetuningDatasetConfig(
        dataset_root=os.environ["E2E_SFT_ROOT"],
        seq_length=64,
        do_validation=True,
    ),
    checkpoint=CheckpointConfig(
        pretrained_checkpoint=f"{OUT}/megatron_checkpoint",  # Must be Megatron format
        save=f"{OUT}/sft_checkpoints",
    ),
    optimizer=OptimizerConfig(optimizer="adam", lr=1e-5),
    mixed_precision="bf16_mixed",
    tokenizer=TOKENIZER,
)

finetune(config, forward_step_func=forward_step)

from mbridge.peft import LoRA

config = ConfigContainer(
    model=Llama3ModelProvider8B(**SCALED_DOWN),
    train=TrainingConfig(
        train_iters=3,
        eval_interval=2,
        micro_batch_size=1,
        global_batch_size=4,
    ),
    dataset=FinetuningDatasetConfig(
        dataset_root=os.environ["E2E_SFT_ROOT"],
        seq_length=64,
        do_validation=True,
    ),
    checkpoint=CheckpointConfig(
        pretrained_checkpoint=f"{OUT}/megatron_checkpoint",
        save=f"{OUT}/peft_checkpoints",
    ),
    peft=LoRA(
        target_modules=["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"],
        dim=32,
        alpha=16,
    ),
    optimizer=OptimizerConfig(optimizer="adam", lr=1e-4),
    mixed_precision="bf16_mixed",
    tokenizer=TOKENIZER,
)

finetune(config, forward_step_func=forward_step)
