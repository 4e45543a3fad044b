"""Qwen3 14B (Qwen/Qwen3-14B)."""

from mbridge_models.presets import Qwen3ModelProvider14B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.qwen._qwen import PRETRAIN


@pretrain_recipe(Qwen3ModelProvider14B, **PRETRAIN, tensor_model_parallel_size=8)
def pretrain_config(*args, **kwargs):
    """Qwen3 14B pretraining: TP8, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Qwen3ModelProvider14B, tensor_model_parallel_size=2,
                 full_sft=dict(tensor_model_parallel_size=4))
def finetune_config(*args, **kwargs):
    """Qwen3 14B fine-tuning: LoRA at TP2, full SFT at TP4."""
