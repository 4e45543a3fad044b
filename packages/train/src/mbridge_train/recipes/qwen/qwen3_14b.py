"""Qwen3 14B (Qwen/Qwen3-14B)."""

from mbridge_models.presets import Qwen3ModelProvider14B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.qwen._qwen import QwenPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = QwenPretrainSpec(__name__, Qwen3ModelProvider14B, tensor_model_parallel_size=8)
FINETUNE = FinetuneSpec(__name__, Qwen3ModelProvider14B, tensor_model_parallel_size=2,
                        full_sft=dict(tensor_model_parallel_size=4))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Qwen3 14B pretraining: TP8, 4K sequences, GBS 32, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Qwen3 14B fine-tuning: LoRA at TP2, full SFT at TP4."""
    return build_finetune(FINETUNE.bind(arguments))
