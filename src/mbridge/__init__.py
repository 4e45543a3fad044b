"""mbridge: the Megatron-Bridge-compatible meta-package."""

__version__ = "0.1.0"
