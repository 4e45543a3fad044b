"""Llama 3.1 8B (meta-llama/Llama-3.1-8B): as Llama 3 8B, trained on 8K sequences."""

from mbridge_models.presets import Llama31ModelProvider8B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe


@pretrain_recipe(Llama31ModelProvider8B, context_parallel_size=2)
def pretrain_config(*args, **kwargs):
    """Llama 3.1 8B pretraining: TP1 PP1 CP2, 8K sequences, GBS 512, cosine 3e-4 -> 3e-5."""


@finetune_recipe(Llama31ModelProvider8B, peft_fields=dict(dim=8, alpha=16),
                 full_sft=dict(tensor_model_parallel_size=2))
def finetune_config(*args, **kwargs):
    """Llama 3.1 8B fine-tuning: LoRA (dim 8, alpha 16) at TP1, or full SFT at TP2."""
