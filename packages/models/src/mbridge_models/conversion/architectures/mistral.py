"""Mistral: Llama's weights; ``sliding_window`` becomes megatron's ``window_size``."""

from mbridge_models.conversion.architectures import _decoder as d
from mbridge_models.conversion.hf_config import (check_decoder_provider, decoder_fields,
                                                 decoder_hf_config)
from mbridge_models.conversion.registry import Architecture


def provider_fields(config: dict) -> dict:
    fields = decoder_fields(config)
    window = config.get("sliding_window")
    if window is not None and window < fields["seq_length"]:
        # HF: a query attends to itself and the window - 1 keys before it.
        fields["window_size"] = (int(window) - 1, 0)
    return fields


def hf_config(provider) -> dict:
    check_decoder_provider(provider, "mistral")
    window = provider.window_size
    return {**decoder_hf_config(provider, "mistral", "MistralForCausalLM"),
            "sliding_window": None if window is None else window[0] + 1}


ARCHITECTURE = Architecture(name="mistral", hf_architecture="MistralForCausalLM",
                            model_types=("mistral",), mappings=d.DENSE, when=d.WHEN,
                            provider_fields=provider_fields, hf_config=hf_config)
