"""Nemotron-H 8B (nvidia/Nemotron-H-8B-Base-8K, hybrid Mamba-2 / attention):
one 8-GPU node, TP2 with sequence parallelism."""

from mbridge_models.presets import NemotronHModelProvider8B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.nemotronh._nemotronh import LORA, NemotronHPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = NemotronHPretrainSpec(__name__, NemotronHModelProvider8B, tensor_model_parallel_size=2)
FINETUNE = FinetuneSpec(__name__, NemotronHModelProvider8B, peft_fields=LORA,
                        full_sft=dict(tensor_model_parallel_size=2, sequence_parallel=True))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Nemotron-H 8B pretraining: TP2 SP, 8K sequences, GBS 768, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Nemotron-H 8B fine-tuning: LoRA at TP1, full SFT at TP2 SP."""
    return build_finetune(FINETUNE.bind(arguments))
