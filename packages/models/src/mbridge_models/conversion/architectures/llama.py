"""Llama 2 / 3 / 3.1 / 3.2 (``llama3`` RoPE scaling included): LlamaForCausalLM."""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.hf_config import (check_decoder_provider, decoder_fields,
                                                 decoder_hf_config)
from mbridge_models.conversion.registry import Architecture


def provider_fields(config: dict) -> dict:
    if config.get("attention_bias"):
        raise ConversionError("Hugging Face config field attention_bias: True is not supported "
                              "for llama (bias on q/k/v and o_proj)")
    return decoder_fields(config)


def hf_config(provider) -> dict:
    check_decoder_provider(provider, "llama")
    if provider.add_qkv_bias or provider.qk_layernorm:
        raise ConversionError("provider fields add_qkv_bias / qk_layernorm: a llama checkpoint "
                              "has neither (qwen2 / qwen3 do)")
    return {**decoder_hf_config(provider, "llama", "LlamaForCausalLM"),
            "attention_bias": False, "mlp_bias": False}


ARCHITECTURE = Architecture(name="llama", hf_architecture="LlamaForCausalLM",
                            model_types=("llama",), mappings=d.DENSE, when=d.WHEN,
                            provider_fields=provider_fields, hf_config=hf_config)
