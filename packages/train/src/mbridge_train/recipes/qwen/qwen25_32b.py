"""Qwen2.5 32B (Qwen/Qwen2.5-32B)."""

import torch
from mbridge_models.presets import Qwen25ModelProvider32B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.qwen._qwen import QwenPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = QwenPretrainSpec(__name__, Qwen25ModelProvider32B, tensor_model_parallel_size=8,
                            pipeline_model_parallel_size=2, pipeline_dtype=torch.bfloat16)
FINETUNE = FinetuneSpec(__name__, Qwen25ModelProvider32B, tensor_model_parallel_size=4,
                        full_sft=dict(tensor_model_parallel_size=8,
                                      pipeline_model_parallel_size=2,
                                      pipeline_dtype=torch.bfloat16))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Qwen2.5 32B pretraining: TP8 PP2, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Qwen2.5 32B fine-tuning: LoRA at TP4, full SFT at TP8 PP2."""
    return build_finetune(FINETUNE.bind(arguments))
