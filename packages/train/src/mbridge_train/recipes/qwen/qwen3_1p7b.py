"""Qwen3 1.7B (Qwen/Qwen3-1.7B)."""

from mbridge_models.presets import Qwen3ModelProvider1P7B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.qwen._qwen import QwenPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = QwenPretrainSpec(__name__, Qwen3ModelProvider1P7B)
FINETUNE = FinetuneSpec(__name__, Qwen3ModelProvider1P7B)


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Qwen3 1.7B pretraining: TP1, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Qwen3 1.7B fine-tuning: LoRA or full SFT at TP1."""
    return build_finetune(FINETUNE.bind(arguments))
