"""Qwen2.5 14B (Qwen/Qwen2.5-14B)."""

from mbridge_models.presets import Qwen25ModelProvider14B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen25ModelProvider14B, **PRETRAIN, tensor_model_parallel_size=4)
def pretrain_config(*args, **kwargs):
    """Qwen2.5 14B pretraining: TP4, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen25ModelProvider14B, tensor_model_parallel_size=2,
                 full_sft=dict(tensor_model_parallel_size=4))
def finetune_config(*args, **kwargs):
    """Qwen2.5 14B fine-tuning: LoRA at TP2, full SFT at TP4."""
