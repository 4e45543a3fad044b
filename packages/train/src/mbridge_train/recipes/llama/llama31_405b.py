"""Llama 3.1 405B (meta-llama/Llama-3.1-405B): 256 GPUs; TP8 x PP8 (2 virtual stages) x CP4.

126 layers do not split over 16 stages; counting the embedding and the loss as one layer each
(128) makes 8 per stage, as Megatron Bridge does.
"""

import torch
from mbridge_models.presets import Llama31ModelProvider405B

from mbridge_config import ConfigContainer
from mbridge_config.overrides import apply_overrides
from mbridge_train.recipes.build import PIPELINE_SPLIT, build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe

PRETRAIN = PretrainSpec(__name__, Llama31ModelProvider405B, tensor_model_parallel_size=8,
                        pipeline_model_parallel_size=8, virtual_pipeline_model_parallel_size=2,
                        context_parallel_size=4, sequence_parallel=True,
                        pipeline_dtype=torch.bfloat16,
                        account_for_embedding_in_pipeline_split=True,
                        account_for_loss_in_pipeline_split=True)
FINETUNE = FinetuneSpec(__name__, Llama31ModelProvider405B, tensor_model_parallel_size=4,
                        pipeline_model_parallel_size=8, virtual_pipeline_model_parallel_size=8,
                        sequence_parallel=True, pipeline_dtype=torch.bfloat16,
                        global_batch_size=32, seq_length=2048,
                        peft_fields=dict(dim=16, alpha=32, target_modules=["linear_qkv"]),
                        full_sft=dict(tensor_model_parallel_size=8,
                                      pipeline_model_parallel_size=16,
                                      virtual_pipeline_model_parallel_size=None,
                                      global_batch_size=16))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """Llama 3.1 405B pretraining: TP8 PP8 VPP2 CP4 SP, 8K sequences, GBS 512."""
    return build_pretrain(PRETRAIN.bind(arguments))


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """Llama 3.1 405B fine-tuning: LoRA on linear_qkv at TP4 PP8 VPP8 (32 GPUs), or full SFT
    at TP8 PP16 (128 GPUs)."""
    return apply_overrides(build_finetune(FINETUNE.bind(arguments)), PIPELINE_SPLIT)
