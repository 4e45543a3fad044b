"""Hugging Face <-> megatron-core conversion: a mapping registry (one module per architecture
under ``architectures/``), config translation, and weight streaming on any TP / PP layout."""

from mbridge_models.conversion.errors import ConversionError
from mbridge_models.conversion.registry import (Architecture, get_architecture,
                                                list_supported_models, provider_from_hf_config,
                                                supports)

__all__ = ["Architecture", "ConversionError", "get_architecture", "list_supported_models",
           "provider_from_hf_config", "supports"]
