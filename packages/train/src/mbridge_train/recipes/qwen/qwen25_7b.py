"""Qwen2.5 7B (Qwen/Qwen2.5-7B)."""

from mbridge_models.presets import Qwen25ModelProvider7B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen25ModelProvider7B, **PRETRAIN, tensor_model_parallel_size=2)
def pretrain_config(*args, **kwargs):
    """Qwen2.5 7B pretraining: TP2, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen25ModelProvider7B,
                 full_sft=dict(tensor_model_parallel_size=2))
def finetune_config(*args, **kwargs):
    """Qwen2.5 7B fine-tuning: LoRA at TP1, full SFT at TP2."""
