"""Llama 3.1 8B (meta-llama/Llama-3.1-8B): as Llama 3 8B, trained on 8K sequences."""

from mbridge_models.presets import Llama31ModelProvider8B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe

PRETRAIN = PretrainSpec(__name__, Llama31ModelProvider8B, context_parallel_size=2)
FINETUNE = FinetuneSpec(__name__, Llama31ModelProvider8B, peft_fields=dict(dim=8, alpha=16),
                        full_sft=dict(tensor_model_parallel_size=2))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Llama 3.1 8B pretraining: TP1 PP1 CP2, 8K sequences, GBS 512, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Llama 3.1 8B fine-tuning: LoRA (dim 8, alpha 16) at TP1, or full SFT at TP2."""
    return build_finetune(FINETUNE.bind(arguments))
