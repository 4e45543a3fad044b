"""Llama 3.1 70B (meta-llama/Llama-3.1-70B): 32 GPUs; TP4 x PP4 (5 virtual stages each) x CP2,
with sequence parallelism."""

import torch
from mbridge_models.presets import Llama31ModelProvider70B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe

PRETRAIN = PretrainSpec(__name__, Llama31ModelProvider70B, tensor_model_parallel_size=4,
                        pipeline_model_parallel_size=4, virtual_pipeline_model_parallel_size=5,
                        context_parallel_size=2, sequence_parallel=True,
                        pipeline_dtype=torch.bfloat16)
FINETUNE = FinetuneSpec(__name__, Llama31ModelProvider70B, tensor_model_parallel_size=8,
                        peft_fields=dict(dim=16, alpha=32),
                        full_sft=dict(pipeline_model_parallel_size=4,
                                      pipeline_dtype=torch.bfloat16))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Llama 3.1 70B pretraining: TP4 PP4 VPP5 CP2 SP, 8K sequences, GBS 512,
    cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Llama 3.1 70B fine-tuning: LoRA (dim 16, alpha 32) at TP8 on one node,
    or full SFT at TP8 PP4."""
    return build_finetune(FINETUNE.bind(arguments))
