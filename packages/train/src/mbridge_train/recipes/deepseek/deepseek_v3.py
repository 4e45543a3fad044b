"""DeepSeek-V3 (deepseek-ai/DeepSeek-V3, 671B total / 37B active): 1,024 GPUs; TP2 x PP16 with
256 experts over 64 expert-parallel ranks.

61 decoder layers + the multi-token-prediction layer do not split evenly, so the pipeline gets
an explicit layout (embedding with the first stage; MTP and loss with the last) for the
(PP, VPP) shapes listed in ``LAYOUTS``; other shapes fall back to megatron-core's even split.
"""

import torch
from mbridge_models.presets import DeepSeekV3ModelProvider

from mbridge_config import ConfigContainer, MixedPrecisionConfig
from mbridge_config.overrides import apply_overrides
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe


def _layout(stages: int, last: int) -> list[list[str]]:
    """``stages`` stages of 61 decoder layers: the first also holds the embedding, the last
    ``last`` decoder layers plus MTP and the loss; the rest share the remainder equally."""
    middle = (61 - last) // (stages - 1)
    first = 61 - last - middle * (stages - 2)
    return ([["embedding"] + ["decoder"] * first] + [["decoder"] * middle] * (stages - 2)
            + [["decoder"] * last + ["mtp", "loss"]])


LAYOUTS = {(4, 1): _layout(4, 13), (8, 1): _layout(8, 5), (4, 2): _layout(8, 5),
           (16, 1): _layout(16, 1), (8, 2): _layout(16, 1), (4, 4): _layout(16, 1)}
"""(pipeline, virtual pipeline) size -> layer layout over all pipeline x virtual stages."""


def set_pipeline_layout(cfg) -> None:
    """The layout for the config's (PP, VPP), unless one is set already or PP is 1."""
    model = cfg.model
    shape = (model.pipeline_model_parallel_size, model.virtual_pipeline_model_parallel_size or 1)
    if model.pipeline_model_parallel_layout is None and shape in LAYOUTS:
        model.pipeline_model_parallel_layout = [list(stage) for stage in LAYOUTS[shape]]


# bf16 gradients are reduced in bf16: at this scale fp32 buckets cost more than they save.
PRECISION = MixedPrecisionConfig(bf16=True, params_dtype=torch.bfloat16,
                                 pipeline_dtype=torch.bfloat16, grad_reduce_in_fp32=False)
SETTINGS = {"model.recompute_granularity": "selective", "model.moe_router_dtype": "fp32",
            "ddp.grad_reduce_in_fp32": False,
            "train.manual_gc_interval": 5, "train.manual_gc_eval": True}
LORA_TARGETS = ["linear_q_down_proj", "linear_q_up_proj", "linear_kv_down_proj",
                "linear_kv_up_proj", "linear_proj"]
PRETRAIN = PretrainSpec(__name__, DeepSeekV3ModelProvider, tensor_model_parallel_size=2,
                        pipeline_model_parallel_size=16, expert_model_parallel_size=64,
                        expert_tensor_parallel_size=1, sequence_parallel=True,
                        pipeline_dtype=torch.bfloat16, train_iters=1_000_000,
                        global_batch_size=4096, seq_length=4096, precision_config=PRECISION)
FINETUNE = FinetuneSpec(__name__, DeepSeekV3ModelProvider, tensor_model_parallel_size=2,
                        pipeline_model_parallel_size=8, expert_model_parallel_size=32,
                        expert_tensor_parallel_size=1, sequence_parallel=True,
                        pipeline_dtype=torch.bfloat16, precision_config=PRECISION,
                        peft_fields=dict(target_modules=LORA_TARGETS),
                        full_sft=dict(pipeline_model_parallel_size=16,
                                      expert_model_parallel_size=64))


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """DeepSeek-V3 pretraining: TP2 PP16 EP64 SP, selective recompute, 4K sequences, GBS 4096."""
    cfg = apply_overrides(build_pretrain(PRETRAIN.bind(arguments)), SETTINGS)
    set_pipeline_layout(cfg)
    return cfg


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """DeepSeek-V3 fine-tuning: LoRA on the MLA linears at TP2 PP8 EP32 (256 GPUs), or full SFT
    at TP2 PP16 EP64."""
    cfg = apply_overrides(build_finetune(FINETUNE.bind(arguments)), SETTINGS)
    set_pipeline_layout(cfg)
    return cfg
