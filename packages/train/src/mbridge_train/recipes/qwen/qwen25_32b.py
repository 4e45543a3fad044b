"""Qwen2.5 32B (Qwen/Qwen2.5-32B)."""

from mbridge_models.presets import Qwen25ModelProvider32B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PIPELINE, PRETRAIN


@pretrain_recipe(Qwen25ModelProvider32B, **PRETRAIN, **PIPELINE,
                 tensor_model_parallel_size=8, pipeline_model_parallel_size=2)
def pretrain_config(*args, **kwargs):
    """Qwen2.5 32B pretraining: TP8 PP2, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen25ModelProvider32B, tensor_model_parallel_size=4,
                 full_sft=dict(tensor_model_parallel_size=8, pipeline_model_parallel_size=2,
                               **PIPELINE))
def finetune_config(*args, **kwargs):
    """Qwen2.5 32B fine-tuning: LoRA at TP4, full SFT at TP8 PP2."""
