"""Qwen3-30B-A3B (Qwen/Qwen3-30B-A3B): 128 experts over 4 expert-parallel ranks, 8 GPUs."""

from mbridge_models.presets import Qwen3MoEModelProvider30B_A3B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import FP32_ROUTER, PIPELINE, PRETRAIN, RECOMPUTE

_MOE = dict(expert_model_parallel_size=4, expert_tensor_parallel_size=1, sequence_parallel=True)


@pretrain_recipe(Qwen3MoEModelProvider30B_A3B, **PRETRAIN, **PIPELINE, **_MOE,
                 tensor_model_parallel_size=4, pipeline_model_parallel_size=2,
                 extra={**RECOMPUTE, **FP32_ROUTER})
def pretrain_config(*args, **kwargs):
    """Qwen3-30B-A3B pretraining: TP4 PP2 EP4 SP, full recompute, 4K sequences, GBS 32."""


@finetune_recipe(Qwen3MoEModelProvider30B_A3B, **_MOE, tensor_model_parallel_size=4,
                 extra=FP32_ROUTER, full_sft=dict(pipeline_model_parallel_size=2, **PIPELINE))
def finetune_config(*args, **kwargs):
    """Qwen3-30B-A3B fine-tuning: LoRA at TP4 EP4 SP (8 GPUs), full SFT adds PP2."""
