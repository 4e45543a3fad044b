"""Qwen3-235B-A22B (Qwen/Qwen3-235B-A22B): 128 GPUs; TP4 x PP16 x CP2, experts over 8 ranks.

94 layers split over 16 stages only when the embedding and the loss count as a layer each.
"""

import torch
from mbridge_models.presets import Qwen3MoEModelProvider235B_A22B

from mbridge_config import ConfigContainer
from mbridge_config.overrides import apply_overrides
from mbridge_train.recipes.build import PIPELINE_SPLIT, build_finetune, build_pretrain
from mbridge_train.recipes.qwen._qwen import FP32_ROUTER, RECOMPUTE, QwenPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = QwenPretrainSpec(__name__, Qwen3MoEModelProvider235B_A22B, micro_batch_size=1,
                            tensor_model_parallel_size=4, pipeline_model_parallel_size=16,
                            pipeline_dtype=torch.bfloat16, context_parallel_size=2,
                            expert_model_parallel_size=8, expert_tensor_parallel_size=1,
                            sequence_parallel=True, account_for_embedding_in_pipeline_split=True,
                            account_for_loss_in_pipeline_split=True)
FINETUNE = FinetuneSpec(__name__, Qwen3MoEModelProvider235B_A22B, tensor_model_parallel_size=4,
                        pipeline_model_parallel_size=16, pipeline_dtype=torch.bfloat16,
                        expert_model_parallel_size=4, expert_tensor_parallel_size=1,
                        sequence_parallel=True)


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Qwen3-235B-A22B pretraining: TP4 PP16 CP2 EP8 SP, full recompute, 4K sequences, GBS 32."""
    return apply_overrides(build_pretrain(PRETRAIN.bind(arguments)), RECOMPUTE | FP32_ROUTER)


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Qwen3-235B-A22B fine-tuning: LoRA or full SFT at TP4 PP16 EP4 SP (64 GPUs)."""
    cfg = build_finetune(FINETUNE.bind(arguments))
    return apply_overrides(cfg, PIPELINE_SPLIT | RECOMPUTE | FP32_ROUTER)
