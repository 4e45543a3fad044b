"""Qwen3 8B (Qwen/Qwen3-8B)."""

from mbridge_models.presets import Qwen3ModelProvider8B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.qwen._qwen import QwenPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = QwenPretrainSpec(__name__, Qwen3ModelProvider8B, tensor_model_parallel_size=4)
FINETUNE = FinetuneSpec(__name__, Qwen3ModelProvider8B,
                        full_sft=dict(tensor_model_parallel_size=2))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Qwen3 8B pretraining: TP4, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Qwen3 8B fine-tuning: LoRA at TP1, full SFT at TP2."""
    return build_finetune(FINETUNE.bind(arguments))
