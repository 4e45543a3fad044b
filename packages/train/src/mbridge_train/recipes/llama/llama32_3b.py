"""Llama 3.2 3B (meta-llama/Llama-3.2-3B): fits one GPU without model parallelism."""

from mbridge_models.presets import Llama32ModelProvider3B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe


@pretrain_recipe(Llama32ModelProvider3B)
def pretrain_config(*args, **kwargs):
    """Llama 3.2 3B pretraining: TP1 PP1, 8K sequences, GBS 512, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Llama32ModelProvider3B)
def finetune_config(*args, **kwargs):
    """Llama 3.2 3B fine-tuning: LoRA (dim 32, alpha 32) or full SFT, both at TP1."""
