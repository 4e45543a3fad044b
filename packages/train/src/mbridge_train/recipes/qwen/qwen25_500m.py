"""Qwen2.5 0.5B (Qwen/Qwen2.5-0.5B)."""

from mbridge_models.presets import Qwen25ModelProvider500M

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen25ModelProvider500M, **PRETRAIN)
def pretrain_config(*args, **kwargs):
    """Qwen2.5 0.5B pretraining: TP1, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen25ModelProvider500M)
def finetune_config(*args, **kwargs):
    """Qwen2.5 0.5B fine-tuning: LoRA or full SFT at TP1."""
