"""Nemotron-H 47B (nvidia/Nemotron-H-47B-Base-8K, hybrid Mamba-2 / attention):
one 8-GPU node, TP8 with sequence parallelism."""

from mbridge_models.presets import NemotronHModelProvider47B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.nemotronh._nemotronh import LORA, PRETRAIN


@pretrain_recipe(NemotronHModelProvider47B, **PRETRAIN, tensor_model_parallel_size=8)
def pretrain_config(*args, **kwargs):
    """Nemotron-H 47B pretraining: TP8 SP, 8K sequences, GBS 768, cosine 3e-4 -> 3e-5."""


@finetune_recipe(NemotronHModelProvider47B, peft_fields=LORA, tensor_model_parallel_size=4,
                 sequence_parallel=True,
                 full_sft=dict(tensor_model_parallel_size=8))
def finetune_config(*args, **kwargs):
    """Nemotron-H 47B fine-tuning: LoRA at TP4 SP, full SFT at TP8 SP."""
