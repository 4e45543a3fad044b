"""What the Nemotron-H recipes share: 8K sequences, global batch 768 and sequence parallelism for
pretraining; LoRA on the Mamba mixer's in/out projections as well as attention and MLP."""

from dataclasses import dataclass, field

import torch

from mbridge_train.recipes.spec import PretrainSpec


@dataclass(frozen=True)
class NemotronHPretrainSpec(PretrainSpec):
    """A Nemotron-H pretraining spec: the family's sequence length and batch sizes as defaults."""

    seq_length: int = field(default=8192, kw_only=True)
    global_batch_size: int = field(default=768, kw_only=True)
    micro_batch_size: int = field(default=1, kw_only=True)
    pipeline_dtype: torch.dtype | None = field(default=torch.bfloat16, kw_only=True)
    sequence_parallel: bool = field(default=True, kw_only=True)


LORA = dict(target_modules=["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2", "in_proj",
                            "out_proj"])
