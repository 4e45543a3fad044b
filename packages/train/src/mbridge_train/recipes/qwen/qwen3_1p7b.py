"""Qwen3 1.7B (Qwen/Qwen3-1.7B)."""

from mbridge_models.presets import Qwen3ModelProvider1P7B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen3ModelProvider1P7B, **PRETRAIN)
def pretrain_config(*args, **kwargs):
    """Qwen3 1.7B pretraining: TP1, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen3ModelProvider1P7B)
def finetune_config(*args, **kwargs):
    """Qwen3 1.7B fine-tuning: LoRA or full SFT at TP1."""
