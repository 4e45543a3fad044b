"""Qwen2.5 72B (Qwen/Qwen2.5-72B)."""

from mbridge_models.presets import Qwen25ModelProvider72B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PIPELINE, PRETRAIN


@pretrain_recipe(Qwen25ModelProvider72B, **PRETRAIN, **PIPELINE,
                 tensor_model_parallel_size=8, pipeline_model_parallel_size=4)
def pretrain_config(*args, **kwargs):
    """Qwen2.5 72B pretraining: TP8 PP4, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen25ModelProvider72B, tensor_model_parallel_size=8,
                 full_sft=dict(tensor_model_parallel_size=8, pipeline_model_parallel_size=4,
                               **PIPELINE))
def finetune_config(*args, **kwargs):
    """Qwen2.5 72B fine-tuning: LoRA at TP8, full SFT at TP8 PP4."""
