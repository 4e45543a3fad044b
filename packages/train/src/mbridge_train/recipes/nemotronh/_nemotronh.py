"""What the Nemotron-H recipes share: 8K sequences, global batch 768, LoRA on the Mamba mixer's
in/out projections as well as attention and MLP."""

import torch

PRETRAIN = dict(seq_length=8192, global_batch_size=768, micro_batch_size=1,
                pipeline_dtype=torch.bfloat16, sequence_parallel=True)
LORA = dict(target_modules=["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2", "in_proj",
                            "out_proj"])
