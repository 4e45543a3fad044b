"""Model providers, presets, fast layer specs and the CPU runtime for megatron-core."""

__version__ = "0.1.0"
