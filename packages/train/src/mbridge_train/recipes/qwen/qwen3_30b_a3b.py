"""Qwen3-30B-A3B (Qwen/Qwen3-30B-A3B): 128 experts over 4 expert-parallel ranks, 8 GPUs."""

import torch
from mbridge_models.presets import Qwen3MoEModelProvider30B_A3B

from mbridge_config import ConfigContainer
from mbridge_config.overrides import apply_overrides
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.qwen._qwen import FP32_ROUTER, RECOMPUTE, QwenPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = QwenPretrainSpec(__name__, Qwen3MoEModelProvider30B_A3B, tensor_model_parallel_size=4,
                            pipeline_model_parallel_size=2, pipeline_dtype=torch.bfloat16,
                            expert_model_parallel_size=4, expert_tensor_parallel_size=1,
                            sequence_parallel=True)
FINETUNE = FinetuneSpec(__name__, Qwen3MoEModelProvider30B_A3B, tensor_model_parallel_size=4,
                        expert_model_parallel_size=4, expert_tensor_parallel_size=1,
                        sequence_parallel=True,
                        full_sft=dict(pipeline_model_parallel_size=2,
                                      pipeline_dtype=torch.bfloat16))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Qwen3-30B-A3B pretraining: TP4 PP2 EP4 SP, full recompute, 4K sequences, GBS 32."""
    return apply_overrides(build_pretrain(PRETRAIN.bind(arguments)), RECOMPUTE | FP32_ROUTER)


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Qwen3-30B-A3B fine-tuning: LoRA at TP4 EP4 SP (8 GPUs), full SFT adds PP2."""
    return apply_overrides(build_finetune(FINETUNE.bind(arguments)), FP32_ROUTER)
