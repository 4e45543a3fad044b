"""Fused Triton and C++/CUDA kernels for mbridge: masked token loss, LoRA."""

__version__ = "0.1.0"
