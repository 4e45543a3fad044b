"""Qwen3 0.6B (Qwen/Qwen3-0.6B)."""

from mbridge_models.presets import Qwen3ModelProvider600M

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen3ModelProvider600M, **PRETRAIN)
def pretrain_config(*args, **kwargs):
    """Qwen3 0.6B pretraining: TP1, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen3ModelProvider600M)
def finetune_config(*args, **kwargs):
    """Qwen3 0.6B fine-tuning: LoRA or full SFT at TP1."""
