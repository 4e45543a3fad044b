"""Nemotron-H 47B (nvidia/Nemotron-H-47B-Base-8K, hybrid Mamba-2 / attention):
one 8-GPU node, TP8 with sequence parallelism."""

from mbridge_models.presets import NemotronHModelProvider47B

from mbridge_config import ConfigContainer
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.nemotronh._nemotronh import LORA, NemotronHPretrainSpec
from mbridge_train.recipes.spec import FinetuneSpec, recipe

PRETRAIN = NemotronHPretrainSpec(__name__, NemotronHModelProvider47B, tensor_model_parallel_size=8)
FINETUNE = FinetuneSpec(__name__, NemotronHModelProvider47B, peft_fields=LORA,
                        tensor_model_parallel_size=4, sequence_parallel=True,
                        full_sft=dict(tensor_model_parallel_size=8))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Nemotron-H 47B pretraining: TP8 SP, 8K sequences, GBS 768, cosine 3e-4 -> 3e-5."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Nemotron-H 47B fine-tuning: LoRA at TP4 SP, full SFT at TP8 SP."""
    return build_finetune(FINETUNE.bind(arguments))
