"""Llama 3.2 3B (meta-llama/Llama-3.2-3B): fits one GPU without model parallelism."""

from mbridge_models.presets import Llama32ModelProvider3B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe

PRETRAIN = PretrainSpec(__name__, Llama32ModelProvider3B)
FINETUNE = FinetuneSpec(__name__, Llama32ModelProvider3B)


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Llama 3.2 3B pretraining: TP1 PP1, 8K sequences, GBS 512, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Llama 3.2 3B fine-tuning: LoRA (dim 32, alpha 32) or full SFT, both at TP1."""
    return build_finetune(FINETUNE.bind(arguments))
