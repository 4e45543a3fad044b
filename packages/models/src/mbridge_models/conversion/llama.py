"""Llama-style Hugging Face checkpoints (Llama, Mistral, Qwen2) <-> megatron-core GPTModel.

Hugging Face keeps q/k/v and gate/up as separate projections; megatron fuses them (see
``layout``). Both use the rotate-half RoPE convention on non-interleaved halves, which is
megatron's default (``rotary_interleaved=False``), so no permutation of q/k rows is needed.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from mbridge_models.conversion.layout import fuse_gated, fuse_qkv, split_gated, split_qkv
from mbridge_models.gpt_provider import GPTModelProvider

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")

# megatron linear (inside decoder.layers.<i>.) -> its Hugging Face projections and how its
# output rows split between them.
LINEARS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "self_attention.linear_qkv": (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                                  "qkv"),
    "self_attention.linear_proj": (("self_attn.o_proj",), None),
    "mlp.linear_fc1": (("mlp.gate_proj", "mlp.up_proj"), "gated"),
    "mlp.linear_fc2": (("mlp.down_proj",), None),
}
_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


class ConversionError(ValueError):
    """A Hugging Face config or checkpoint this converter cannot represent in megatron-core."""


def _get(config: Any, name: str, default: Any = None) -> Any:
    return config.get(name, default) if isinstance(config, Mapping) else getattr(config, name, default)


def _rope_theta(config: Any) -> float:
    """transformers >= 5 keeps RoPE settings in ``rope_parameters``; older ones use rope_theta."""
    params = _get(config, "rope_parameters") or _get(config, "rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise ConversionError(f"rope type {kind!r} is not supported (only the default RoPE)")
    return float(params.get("rope_theta", _get(config, "rope_theta", 10000.0)))


def provider_from_hf_config(config: Any, **overrides: Any) -> GPTModelProvider:
    """A GPTModelProvider with the architecture of a Llama-style Hugging Face config.

    ``config`` is a transformers config object or its dict; ``overrides`` set provider fields
    (parallelism, precision, layer spec) on top.
    """
    model_type = _get(config, "model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConversionError(f"model_type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}")
    if _get(config, "hidden_act", "silu") != "silu":
        raise ConversionError(f"hidden_act {_get(config, 'hidden_act')!r}: only silu (SwiGLU) is supported")
    if _get(config, "mlp_bias", False) or (model_type != "qwen2" and _get(config, "attention_bias", False)):
        raise ConversionError("attention_bias / mlp_bias on every projection is not supported")
    heads = _get(config, "num_attention_heads")
    head_dim = _get(config, "head_dim") or _get(config, "hidden_size") // heads
    fields = dict(
        num_layers=_get(config, "num_hidden_layers"),
        hidden_size=_get(config, "hidden_size"),
        ffn_hidden_size=_get(config, "intermediate_size"),
        num_attention_heads=heads,
        num_query_groups=_get(config, "num_key_value_heads") or heads,
        kv_channels=head_dim,
        vocab_size=_get(config, "vocab_size"),
        seq_length=_get(config, "max_position_embeddings", 4096),
        normalization="RMSNorm",
        layernorm_epsilon=_get(config, "rms_norm_eps", 1e-6),
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=model_type == "qwen2",
        position_embedding_type="rope",
        rotary_base=_rope_theta(config),
        share_embeddings_and_output_weights=bool(_get(config, "tie_word_embeddings", False)),
        hidden_dropout=0.0,
        attention_dropout=float(_get(config, "attention_dropout", 0.0) or 0.0),
        init_method_std=_get(config, "initializer_range", 0.02),
        hf_model_id=_get(config, "_name_or_path") or None,
    )
    fields.update(overrides)
    return GPTModelProvider(**fields)


def hf_to_megatron(hf_state: Mapping[str, torch.Tensor], provider: GPTModelProvider,
                   fused_norms: bool = False) -> dict[str, torch.Tensor]:
    """A Hugging Face LlamaForCausalLM state dict as megatron GPTModel state-dict entries.

    ``fused_norms``: the Transformer Engine layer spec folds the pre-attention / pre-MLP norms
    into ``linear_qkv`` / ``linear_fc1`` (``layer_norm_weight``); the local spec keeps them as
    ``input_layernorm`` / ``pre_mlp_layernorm``. Tensors are full (tensor-parallel size 1).
    """
    hf = dict(hf_state)
    groups = provider.num_query_groups or provider.num_attention_heads
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        if key not in hf:
            raise ConversionError(f"Hugging Face checkpoint has no {key}")
        return hf.pop(key)

    out["embedding.word_embeddings.weight"] = _pad_vocab(take("model.embed_tokens.weight"), provider)
    for i in range(provider.num_layers):
        src, dst = f"model.layers.{i}.", f"decoder.layers.{i}."
        attn_norm = "self_attention.linear_qkv.layer_norm_weight" if fused_norms else "input_layernorm.weight"
        mlp_norm = "mlp.linear_fc1.layer_norm_weight" if fused_norms else "pre_mlp_layernorm.weight"
        out[dst + attn_norm] = take(src + "input_layernorm.weight")
        out[dst + mlp_norm] = take(src + "post_attention_layernorm.weight")
        for kind in ("weight", "bias"):
            names = [f"{src}self_attn.{p}_proj.{kind}" for p in "qkv"]
            if kind == "bias" and names[0] not in hf:
                continue
            out[f"{dst}self_attention.linear_qkv.{kind}"] = fuse_qkv(*map(take, names), groups)
        out[dst + "self_attention.linear_proj.weight"] = take(src + "self_attn.o_proj.weight")
        out[dst + "mlp.linear_fc1.weight"] = fuse_gated(take(src + "mlp.gate_proj.weight"),
                                                        take(src + "mlp.up_proj.weight"))
        out[dst + "mlp.linear_fc2.weight"] = take(src + "mlp.down_proj.weight")
    out["decoder.final_layernorm.weight"] = take("model.norm.weight")
    if not provider.share_embeddings_and_output_weights:
        out["output_layer.weight"] = _pad_vocab(take("lm_head.weight"), provider)
    hf.pop("lm_head.weight", None)  # tied checkpoints may still list it
    leftover = [k for k in hf if not k.endswith("rotary_emb.inv_freq")]
    if leftover:
        raise ConversionError(f"Hugging Face tensors with no megatron place: {', '.join(sorted(leftover)[:5])}")
    return out


def _pad_vocab(weight: torch.Tensor, provider: GPTModelProvider) -> torch.Tensor:
    """Padded vocabulary rows (megatron pads to a TP-friendly size) are zero."""
    rows = provider.padded_vocab_size()
    if rows < weight.shape[0]:
        raise ConversionError(f"vocabulary of {weight.shape[0]} rows does not fit the provider's {rows}")
    return F.pad(weight, (0, 0, 0, rows - weight.shape[0]))


def load_hf_weights(model: torch.nn.Module, hf_state: Mapping[str, torch.Tensor],
                    provider: GPTModelProvider) -> None:
    """Copy a Hugging Face state dict into a GPTModel built with tensor/pipeline size 1."""
    if provider.tensor_model_parallel_size != 1 or provider.pipeline_model_parallel_size != 1:
        raise ConversionError("load_hf_weights fills an unsharded model (tensor and pipeline "
                              "parallel size 1); shard afterwards")
    target = model.state_dict()
    fused = any(k.endswith("linear_qkv.layer_norm_weight") for k in target)
    converted = hf_to_megatron(hf_state, provider, fused_norms=fused)
    missing = [k for k in target if k not in converted and not k.endswith("_extra_state")]
    if missing:
        raise ConversionError(f"megatron tensors the checkpoint does not fill: {', '.join(missing[:5])}")
    with torch.no_grad():
        for key, value in converted.items():
            if key not in target:
                raise ConversionError(f"the model has no tensor {key} (layer spec mismatch?)")
            if target[key].shape != value.shape:
                raise ConversionError(f"{key}: checkpoint shape {tuple(value.shape)} != model "
                                      f"shape {tuple(target[key].shape)}")
            target[key].copy_(value)


def hf_linear_names(megatron_name: str) -> tuple[tuple[str, ...], str | None] | None:
    """``decoder.layers.3.mlp.linear_fc1`` -> (("model.layers.3.mlp.gate_proj", ...), "gated");
    None for linears with no Hugging Face counterpart here."""
    match = _LAYER.match(megatron_name)
    if not match or match.group(2) not in LINEARS:
        return None
    index, suffix = match.groups()
    names, split = LINEARS[suffix]
    return tuple(f"model.layers.{index}.{n}" for n in names), split


def split_output_rows(tensor: torch.Tensor, split: str | None,
                      provider: GPTModelProvider) -> tuple[torch.Tensor, ...]:
    """A fused megatron output-row tensor as its Hugging Face projections' rows."""
    if split is None:
        return (tensor,)
    if split == "gated":
        return split_gated(tensor)
    return split_qkv(tensor, provider.num_attention_heads,
                     provider.num_query_groups or provider.num_attention_heads)
