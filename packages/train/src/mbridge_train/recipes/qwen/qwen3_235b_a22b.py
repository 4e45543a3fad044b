"""Qwen3-235B-A22B (Qwen/Qwen3-235B-A22B): 128 GPUs; TP4 x PP16 x CP2, experts over 8 ranks.

94 layers split over 16 stages only when the embedding and the loss count as a layer each.
"""

from mbridge_models.presets import Qwen3MoEModelProvider235B_A22B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import FP32_ROUTER, PIPELINE, PRETRAIN, RECOMPUTE

_MOE = dict(expert_model_parallel_size=8, expert_tensor_parallel_size=1, sequence_parallel=True,
            tensor_model_parallel_size=4, pipeline_model_parallel_size=16, **PIPELINE)
_SPLIT = {"model.account_for_embedding_in_pipeline_split": True,
          "model.account_for_loss_in_pipeline_split": True}


@pretrain_recipe(Qwen3MoEModelProvider235B_A22B, **{**PRETRAIN, "micro_batch_size": 1}, **_MOE,
                 context_parallel_size=2, account_for_embedding_in_pipeline_split=True,
                 account_for_loss_in_pipeline_split=True,
                 extra={**RECOMPUTE, **FP32_ROUTER})
def pretrain_config(*args, **kwargs):
    """Qwen3-235B-A22B pretraining: TP4 PP16 CP2 EP8 SP, full recompute, 4K sequences, GBS 32."""


@finetune_recipe(Qwen3MoEModelProvider235B_A22B, **{**_MOE, "expert_model_parallel_size": 4},
                 extra={**_SPLIT, **RECOMPUTE, **FP32_ROUTER})
def finetune_config(*args, **kwargs):
    """Qwen3-235B-A22B fine-tuning: LoRA or full SFT at TP4 PP16 EP4 SP (64 GPUs)."""
