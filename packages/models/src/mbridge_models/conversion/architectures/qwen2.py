"""Qwen2 / Qwen2.5: Llama's layout plus q/k/v biases (fused like the weights)."""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.hf_config import (check_decoder_provider, decoder_fields,
                                                 decoder_hf_config)
from mbridge_models.conversion.registry import Architecture


def refuse_sliding_window(config: dict) -> None:
    if config.get("use_sliding_window"):
        raise ConversionError("Hugging Face config field use_sliding_window: True (sliding "
                              "window on some layers only) is not supported")


def provider_fields(config: dict) -> dict:
    refuse_sliding_window(config)
    return {**decoder_fields(config), "add_qkv_bias": True}


def hf_config(provider) -> dict:
    check_decoder_provider(provider, "qwen2")
    return {**decoder_hf_config(provider, "qwen2", "Qwen2ForCausalLM"),
            "use_sliding_window": False, "sliding_window": None}


ARCHITECTURE = Architecture(name="qwen2", hf_architecture="Qwen2ForCausalLM",
                            model_types=("qwen2",), mappings=(*d.DENSE, d.QKV_BIAS),
                            when=d.WHEN, provider_fields=provider_fields, hf_config=hf_config)
