"""Nemotron-H 8B (nvidia/Nemotron-H-8B-Base-8K, hybrid Mamba-2 / attention):
one 8-GPU node, TP2 with sequence parallelism."""

from mbridge_models.presets import NemotronHModelProvider8B

from mbridge_train.recipes._common import finetune_recipe, pretrain_recipe
from mbridge_train.recipes.nemotronh._nemotronh import LORA, PRETRAIN


@pretrain_recipe(NemotronHModelProvider8B, **PRETRAIN, tensor_model_parallel_size=2)
def pretrain_config(*args, **kwargs):
    """Nemotron-H 8B pretraining: TP2 SP, 8K sequences, GBS 768, cosine 3e-4 -> 3e-5."""


@finetune_recipe(NemotronHModelProvider8B, peft_fields=LORA,
                 full_sft=dict(tensor_model_parallel_size=2, sequence_parallel=True))
def finetune_config(*args, **kwargs):
    """Nemotron-H 8B fine-tuning: LoRA at TP1, full SFT at TP2 SP."""
