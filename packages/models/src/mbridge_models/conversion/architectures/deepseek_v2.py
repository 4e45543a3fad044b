"""DeepSeek-V2: DeepSeek-V3's tensors (MLA, dense first layers, routed + shared experts) without
the selection bias; the router takes the top-k of a softmax over all experts, scaled by
``routed_scaling_factor`` and not renormalised (megatron: pre-softmax, top-k scaling factor).

``group_limited_greedy`` ranks expert groups by their best expert; megatron-core ranks them by
the sum of their best top-k / groups experts, the same only when that is one expert, so other
group settings are refused by name.
"""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.architectures import _moe
from mbridge_models.conversion.architectures import deepseek_v3 as v3
from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.registry import Architecture

NAME = "deepseek_v2"
MOE = (*_moe.MOE, *v3.SHARED)
WHEN = {m: c for m, c in v3.WHEN.items() if m != v3.EXPERT_BIAS.megatron}


def provider_fields(config: dict) -> dict:
    method = config.get("topk_method", "greedy")
    if method not in ("greedy", "group_limited_greedy"):
        raise ConversionError(f"Hugging Face config field topk_method: {method!r} is not "
                              f"supported for {NAME} (greedy or group_limited_greedy)")
    fields = v3.mla_moe_fields(config, NAME)
    if method == "greedy":
        fields.update(moe_router_num_groups=None, moe_router_group_topk=None)
    elif fields["moe_router_num_groups"] > 1 and (
            fields["moe_router_topk"] // fields["moe_router_group_topk"] != 1):
        raise ConversionError(
            f"Hugging Face config field topk_group: {config.get('topk_group')!r} with "
            f"num_experts_per_tok {fields['moe_router_topk']} is not supported for {NAME}: "
            "megatron-core ranks expert groups by more than their best expert")
    return {**fields, "moe_router_score_function": "softmax",
            "moe_router_enable_expert_bias": False}


def hf_config(provider) -> dict:
    raise ConversionError(f"provider without a Hugging Face config.json: writing a {NAME} "
                          "config.json from provider fields is not supported yet")


ARCHITECTURE = Architecture(
    name=NAME, hf_architecture="DeepseekV2ForCausalLM", model_types=(NAME,),
    mappings=(d.EMBEDDING, *v3.COMMON, *v3.MLA, *v3.DENSE_MLP, *MOE, d.FINAL_NORM, d.OUTPUT),
    when=WHEN, provider_fields=provider_fields, hf_config=hf_config,
    provider_class=v3._provider_class)
