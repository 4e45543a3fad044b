"""Qwen3 (dense): per-head RMSNorm on queries and keys (QK-norm), head_dim set on its own."""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.architectures.qwen2 import refuse_sliding_window
from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.hf_config import (check_decoder_provider, decoder_fields,
                                                 decoder_hf_config)
from mbridge_models.conversion.registry import Architecture


def provider_fields(config: dict) -> dict:
    refuse_sliding_window(config)
    if config.get("attention_bias"):
        raise ConversionError("Hugging Face config field attention_bias: True (bias on q/k/v "
                              "and o_proj) is not supported for qwen3")
    return {**decoder_fields(config), "qk_layernorm": True}


def hf_config(provider) -> dict:
    check_decoder_provider(provider, "qwen3")
    return {**decoder_hf_config(provider, "qwen3", "Qwen3ForCausalLM"),
            "attention_bias": False, "use_sliding_window": False,
            "sliding_window": None}


ARCHITECTURE = Architecture(name="qwen3", hf_architecture="Qwen3ForCausalLM",
                            model_types=("qwen3",),
                            mappings=(*d.DENSE, *d.QK_NORM), when=d.WHEN,
                            provider_fields=provider_fields, hf_config=hf_config)
