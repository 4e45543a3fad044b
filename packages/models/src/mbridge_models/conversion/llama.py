"""Llama-style entry points kept for existing callers (mbridge_peft.hf_export, tests).

The conversion itself is the mapping registry (``registry``, ``architectures/``) and
``weights``; these functions pick the architecture from the provider's fields.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.registry import (get_architecture, list_supported_models,
                                                provider_from_hf_config)

SUPPORTED_MODEL_TYPES = ("deepseek_v3", "llama", "mistral", "qwen2", "qwen3", "qwen3_moe")

__all__ = ["ConversionError", "SUPPORTED_MODEL_TYPES", "hf_linear_names", "list_supported_models",
           "load_hf_weights", "provider_from_hf_config", "split_output_rows"]


def architecture_of(provider: Any):
    """The decoder family whose tensors a provider's model has (for callers without a config);
    every MoE provider is qwen3_moe's to accept or refuse (naming the field)."""
    if provider.num_moe_experts:
        return get_architecture("qwen3_moe")
    if provider.normalization == "LayerNorm" and provider.layernorm_zero_centered_gamma:
        return get_architecture("nemotron")
    if provider.qk_layernorm:
        return get_architecture("qwen3")
    return get_architecture("qwen2" if provider.add_qkv_bias else "llama")


def load_hf_weights(model: torch.nn.Module, hf_state: Mapping[str, torch.Tensor],
                    provider: Any) -> None:
    """Copy a Hugging Face state dict into a GPTModel (any tensor-parallel layout)."""
    from mbridge_models.conversion.weights import load_hf_weights as load

    load(model, hf_state, provider, architecture_of(provider))


def hf_linear_names(megatron_name: str, provider: Any = None
                    ) -> tuple[tuple[str, ...], str | None] | None:
    """``decoder.layers.3.mlp.linear_fc1`` -> (("model.layers.3.mlp.gate_proj", ...), "gated");
    None for modules that are not a decoder linear with a Hugging Face counterpart. The names
    are those of ``provider``'s family (Llama's without one)."""
    if ".layers." not in megatron_name or not megatron_name.split(".")[-1].startswith("linear_"):
        return None
    try:
        arch = get_architecture("llama") if provider is None else architecture_of(provider)
        mapping, values = arch.mapping_for(megatron_name + ".weight")
    except ConversionError:
        return None
    names = tuple(n.removesuffix(".weight") for n in mapping.hf_names(values))
    return names, {"direct": None}.get(mapping.kind, mapping.kind)


def split_output_rows(tensor: torch.Tensor, split: str | None,
                      provider: Any) -> tuple[torch.Tensor, ...]:
    """A fused megatron output-row tensor as its Hugging Face projections' rows."""
    from mbridge_models.conversion.layout import split_gated, split_qkv

    if split is None:
        return (tensor,)
    if split == "gated":
        return split_gated(tensor)
    return split_qkv(tensor, provider.num_attention_heads,
                     provider.num_query_groups or provider.num_attention_heads)
