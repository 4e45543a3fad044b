"""Qwen3 4B (Qwen/Qwen3-4B)."""

from mbridge_models.presets import Qwen3ModelProvider4B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen3ModelProvider4B, **PRETRAIN, tensor_model_parallel_size=2)
def pretrain_config(*args, **kwargs):
    """Qwen3 4B pretraining: TP2, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen3ModelProvider4B)
def finetune_config(*args, **kwargs):
    """Qwen3 4B fine-tuning: LoRA or full SFT at TP1."""
