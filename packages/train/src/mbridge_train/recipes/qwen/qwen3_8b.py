"""Qwen3 8B (Qwen/Qwen3-8B)."""

from mbridge_models.presets import Qwen3ModelProvider8B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen3ModelProvider8B, **PRETRAIN, tensor_model_parallel_size=4)
def pretrain_config(*args, **kwargs):
    """Qwen3 8B pretraining: TP4, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen3ModelProvider8B,
                 full_sft=dict(tensor_model_parallel_size=2))
def finetune_config(*args, **kwargs):
    """Qwen3 8B fine-tuning: LoRA at TP1, full SFT at TP2."""
