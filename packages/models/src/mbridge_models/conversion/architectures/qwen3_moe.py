"""Qwen3-MoE: Qwen3's attention (QK-norm) with a softmax top-k routed MLP in every layer."""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.architectures import _moe
from mbridge_models.conversion.architectures.qwen3 import provider_fields as qwen3_fields
from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.hf_config import (check_decoder_provider, check_moe_provider,
                                                 decoder_hf_config, require)
from mbridge_models.conversion.registry import Architecture

NAME = "qwen3_moe"


def provider_fields(config: dict) -> dict:
    if int(config.get("decoder_sparse_step", 1)) != 1 or config.get("mlp_only_layers"):
        field = "mlp_only_layers" if config.get("mlp_only_layers") else "decoder_sparse_step"
        raise ConversionError(f"Hugging Face config field {field}: {config.get(field)!r} (dense "
                              f"MLP layers among the MoE ones) is not supported for {NAME}")
    experts = config.get("num_experts") or require(config, "num_local_experts")
    return {**qwen3_fields(config),
            "num_moe_experts": int(experts),
            "moe_router_topk": int(require(config, "num_experts_per_tok")),
            "moe_ffn_hidden_size": int(require(config, "moe_intermediate_size")),
            # HF: softmax over all experts, top-k, renormalised only with norm_topk_prob;
            # megatron: top-k of the logits then softmax (renormalised) unless pre_softmax.
            "moe_router_pre_softmax": not config.get("norm_topk_prob", False),
            "moe_router_score_function": "softmax",
            "moe_router_load_balancing_type": "aux_loss",
            "moe_aux_loss_coeff": float(config.get("router_aux_loss_coef", 0.001)),
            "moe_grouped_gemm": False, "moe_token_dispatcher_type": "alltoall"}


def hf_config(provider) -> dict:
    check_decoder_provider(provider, NAME)
    check_moe_provider(provider, NAME)
    if not provider.qk_layernorm or provider.add_qkv_bias:
        raise ConversionError(f"provider fields qk_layernorm / add_qkv_bias: a {NAME} checkpoint "
                              "has QK-norm and no q/k/v bias")
    return {**decoder_hf_config(provider, NAME, "Qwen3MoeForCausalLM"),
            "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
            "num_experts": provider.num_moe_experts, "num_experts_per_tok": provider.moe_router_topk,
            "moe_intermediate_size": provider.moe_ffn_hidden_size,
            "norm_topk_prob": not provider.moe_router_pre_softmax,
            "router_aux_loss_coef": provider.moe_aux_loss_coeff,
            "decoder_sparse_step": 1, "mlp_only_layers": []}


_DENSE_MLP = (d.LAYER[4].megatron, d.LAYER[5].megatron)  # linear_fc1 / linear_fc2

ARCHITECTURE = Architecture(
    name=NAME, hf_architecture="Qwen3MoeForCausalLM", model_types=(NAME,),
    mappings=(*(m for m in d.DENSE if m.megatron not in _DENSE_MLP), *d.QK_NORM, *_moe.MOE),
    when=d.WHEN, provider_fields=provider_fields, hf_config=hf_config)
