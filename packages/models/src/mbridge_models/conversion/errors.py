"""The one error type of Hugging Face <-> Megatron conversion."""

from __future__ import annotations

from mbridge_config.errors import MBridgeError


class ConversionError(MBridgeError, ValueError):
    """A Hugging Face config or checkpoint (or a Megatron model) conversion cannot represent;
    the message names the tensor, file or config field."""
