"""Hugging Face config.json <-> GPTModelProvider fields shared by the decoder families.

Each architecture file calls ``decoder_fields`` (HF -> provider) and ``decoder_hf_config``
(provider -> HF, for exports of models that never had a config.json) and adds its own keys.
Anything megatron-core cannot represent is refused naming the config field.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch.nn.functional as F

from mbridge_models.conversion.errors import ConversionError

# megatron-core's RotaryEmbedding._apply_scaling fixes these llama3 parameters; only ``factor``
# is a GPTModel argument (rope_scaling_factor).
_LLAMA3_FIXED = {"low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192}


def as_dict(config: Any) -> dict:
    """A transformers config object, or its dict, as a plain dict."""
    if isinstance(config, Mapping):
        return dict(config)
    if hasattr(config, "to_dict"):
        return config.to_dict()
    raise ConversionError(f"Hugging Face config: expected a dict or a transformers config, got "
                          f"{type(config).__name__}")


def require(config: Mapping, name: str) -> Any:
    value = config.get(name)
    if value is None:
        raise ConversionError(f"Hugging Face config field {name!r} is missing")
    return value


def rope_fields(config: Mapping) -> dict:
    """rotary_base / rope_scaling / rope_scaling_factor from ``rope_parameters`` (transformers
    >= 5) or ``rope_scaling`` + ``rope_theta`` (older config.json files)."""
    params = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
    kind = params.get("rope_type", params.get("type", "default"))
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    fields = {"position_embedding_type": "rope", "rotary_base": theta}
    if kind == "default":
        return fields
    if kind != "llama3":
        raise ConversionError(f"Hugging Face config field rope_parameters.rope_type: {kind!r} is "
                              "not supported (default or llama3)")
    for name, fixed in _LLAMA3_FIXED.items():
        if float(params.get(name, fixed)) != fixed:
            raise ConversionError(f"Hugging Face config field rope_parameters.{name}: "
                                  f"{params.get(name)!r}; megatron-core's llama3 RoPE scaling "
                                  f"fixes it to {fixed:g}")
    fields.update(rope_scaling=True, rope_scaling_factor=float(require(params, "factor")))
    return fields


def decoder_fields(config: Mapping) -> dict:
    """Provider fields of a pre-norm RMSNorm + SwiGLU + RoPE decoder (Llama and relatives)."""
    if config.get("hidden_act", "silu") != "silu":
        raise ConversionError(f"Hugging Face config field hidden_act: {config.get('hidden_act')!r};"
                              " only silu (SwiGLU) is supported")
    if config.get("mlp_bias"):
        raise ConversionError("Hugging Face config field mlp_bias: True is not supported")
    return {**shape_fields(config), "normalization": "RMSNorm",
            "layernorm_epsilon": float(config.get("rms_norm_eps", 1e-6)),
            "gated_linear_unit": True, "activation_func": F.silu, "add_bias_linear": False,
            "add_qkv_bias": False}


def shape_fields(config: Mapping) -> dict:
    """The fields every decoder family reads alike: sizes, vocabulary, tied embeddings,
    dropout, initialisation and RoPE."""
    heads = require(config, "num_attention_heads")
    hidden = require(config, "hidden_size")
    fields = dict(
        num_layers=require(config, "num_hidden_layers"),
        hidden_size=hidden,
        ffn_hidden_size=require(config, "intermediate_size"),
        num_attention_heads=heads,
        num_query_groups=config.get("num_key_value_heads") or heads,
        kv_channels=config.get("head_dim") or hidden // heads,
        vocab_size=require(config, "vocab_size"),
        seq_length=config.get("max_position_embeddings") or 4096,
        share_embeddings_and_output_weights=bool(config.get("tie_word_embeddings", False)),
        hidden_dropout=0.0,
        attention_dropout=float(config.get("attention_dropout", 0.0) or 0.0),
        init_method_std=float(config.get("initializer_range", 0.02)),
        hf_model_id=config.get("_name_or_path") or None,
    )
    fields.update(rope_fields(config))
    return fields


def decoder_hf_config(provider: Any, model_type: str, architecture: str) -> dict:
    """The inverse of ``decoder_fields``: a config.json for a provider (no original one)."""
    heads = provider.num_attention_heads
    config = {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": provider.vocab_size,
        "hidden_size": provider.hidden_size,
        "intermediate_size": provider.ffn_hidden_size,
        "num_hidden_layers": provider.num_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": provider.num_query_groups or heads,
        "head_dim": provider.kv_channels or provider.hidden_size // heads,
        "hidden_act": "silu",
        "max_position_embeddings": provider.seq_length,
        "rms_norm_eps": provider.layernorm_epsilon,
        "tie_word_embeddings": bool(provider.share_embeddings_and_output_weights),
        "attention_dropout": provider.attention_dropout,
        "initializer_range": provider.init_method_std,
        "rope_theta": float(provider.rotary_base),
    }
    if provider.rope_scaling:
        config["rope_scaling"] = {"rope_type": "llama3", "factor": provider.rope_scaling_factor,
                                  **_LLAMA3_FIXED}
    return config


def check_provider(provider: Any, name: str, wanted: Mapping[str, Any],
                   activation: str | None = None) -> None:
    """Refuse a provider whose fields differ from ``wanted`` (or whose activation function is
    not ``activation``) for a ``name`` checkpoint, naming the provider field."""
    for field, value in wanted.items():
        if getattr(provider, field) != value:
            raise ConversionError(f"provider field {field}={getattr(provider, field)!r}: a "
                                  f"{name} checkpoint needs {value!r}")
    if activation and getattr(provider.activation_func, "__name__", "") != activation:
        raise ConversionError(f"provider field activation_func: a {name} checkpoint needs "
                              f"{activation}")


def check_decoder_provider(provider: Any, name: str) -> None:
    """Refuse providers the decoder mappings cannot export (naming the provider field)."""
    check_provider(provider, name, {"normalization": "RMSNorm", "gated_linear_unit": True,
                                    "add_bias_linear": False, "position_embedding_type": "rope"},
                   activation="silu")


def check_moe_provider(provider: Any, name: str) -> None:
    """Refuse MoE providers a routed-MLP-in-every-layer checkpoint cannot hold (naming the
    provider field): dense layers, shared experts, other routers."""
    wanted = {"moe_layer_freq": 1, "moe_shared_expert_intermediate_size": None,
              "moe_router_score_function": "softmax", "moe_router_enable_expert_bias": False,
              "moe_router_topk_scaling_factor": None}
    if not provider.num_moe_experts:
        raise ConversionError(f"provider field num_moe_experts={provider.num_moe_experts!r}: a "
                              f"{name} checkpoint has experts")
    check_provider(provider, name, wanted)
