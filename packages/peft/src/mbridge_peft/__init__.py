"""LoRA and DoRA adapters for megatron-core models."""

__version__ = "0.1.0"
