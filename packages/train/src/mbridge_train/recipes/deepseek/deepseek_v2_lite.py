"""DeepSeek-V2-Lite (deepseek-ai/DeepSeek-V2-Lite, 16B total / 2.4B active): 64 experts over 8
expert-parallel ranks, no tensor or pipeline parallelism."""

from mbridge_models.presets import DeepSeekV2LiteModelProvider

from mbridge_config import ConfigContainer
from mbridge_config.overrides import apply_overrides
from mbridge_train.recipes.build import build_finetune, build_pretrain
from mbridge_train.recipes.spec import FinetuneSpec, PretrainSpec, recipe

# Full-rank queries (q_lora_rank=None): MLA's projections are q_proj, kv_down_proj, kv_up_proj.
LORA_TARGETS = ["linear_q_proj", "linear_kv_down_proj", "linear_kv_up_proj", "linear_proj",
                "linear_fc1", "linear_fc2"]
PRETRAIN = PretrainSpec(__name__, DeepSeekV2LiteModelProvider, expert_model_parallel_size=8,
                        train_iters=1_000_000, seq_length=4096)
FINETUNE = FinetuneSpec(__name__, DeepSeekV2LiteModelProvider, expert_model_parallel_size=8,
                        peft_fields=dict(target_modules=LORA_TARGETS))
SETTINGS = {"model.recompute_granularity": "full", "model.recompute_method": "uniform",
            "model.recompute_num_layers": 1, "model.moe_router_dtype": "fp32"}
"""Full activation recomputation, one layer at a time, and the router in fp32."""


@recipe(PRETRAIN)
def pretrain_config(**arguments) -> ConfigContainer:
    """DeepSeek-V2-Lite pretraining: EP8, full recompute, 4K sequences, GBS 512."""
    return apply_overrides(build_pretrain(PRETRAIN.bind(arguments)), SETTINGS)


@recipe(FINETUNE)
def finetune_config(**arguments) -> ConfigContainer:
    """DeepSeek-V2-Lite fine-tuning: LoRA on the MLA and MLP linears, or full SFT, at EP8."""
    return apply_overrides(build_finetune(FINETUNE.bind(arguments)), SETTINGS)
