"""Fused Triton and C++/CUDA kernels for mbridge: masked token loss (plain, vocab-parallel,
fused with the output linear layer) and the LoRA linear."""

from .linear_loss import linear_masked_token_loss
from .lora import lora_linear
from .lora_reference import lora_linear_reference
from .token_loss import masked_token_loss
from .reference import linear_masked_token_loss_reference, masked_token_loss_reference
from .vocab_parallel import vocab_parallel_masked_token_loss

__all__ = [
    "masked_token_loss",
    "linear_masked_token_loss",
    "vocab_parallel_masked_token_loss",
    "masked_token_loss_reference",
    "linear_masked_token_loss_reference",
    "lora_linear",
    "lora_linear_reference",
]

__version__ = "0.1.0"
