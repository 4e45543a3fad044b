"""Llama 3.1 70B (meta-llama/Llama-3.1-70B): 32 GPUs; TP4 x PP4 (5 virtual stages each) x CP2,
with sequence parallelism."""

import torch
from mbridge_models.presets import Llama31ModelProvider70B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe

_PIPELINE = dict(pipeline_model_parallel_size=4, pipeline_dtype=torch.bfloat16)


@pretrain_recipe(Llama31ModelProvider70B, **_PIPELINE, tensor_model_parallel_size=4,
                 virtual_pipeline_model_parallel_size=5, context_parallel_size=2,
                 sequence_parallel=True)
def pretrain_config(*args, **kwargs):
    """Llama 3.1 70B pretraining: TP4 PP4 VPP5 CP2 SP, 8K sequences, GBS 512,
    cosine 3e-4 -> 3e-5."""


@finetune_recipe(Llama31ModelProvider70B, tensor_model_parallel_size=8,
                 peft_fields=dict(dim=16, alpha=32),
                 full_sft=dict(tensor_model_parallel_size=8, **_PIPELINE))
def finetune_config(*args, **kwargs):
    """Llama 3.1 70B fine-tuning: LoRA (dim 16, alpha 32) at TP8 on one node,
    or full SFT at TP8 PP4."""
