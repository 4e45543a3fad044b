"""Fused Triton and C++/CUDA kernels for mbridge: masked token loss (plain, vocab-parallel,
fused with the output linear layer) and the LoRA linear."""

from .linear_loss import linear_token_loss_sum
from .lora import lora_linear
from .lora_reference import lora_linear_reference
from .token_loss import token_loss_sum
from .reference import linear_token_loss_sum_reference, token_loss_sum_reference
from .vocab_parallel import vocab_parallel_token_loss_sum

__all__ = [
    "token_loss_sum",
    "linear_token_loss_sum",
    "vocab_parallel_token_loss_sum",
    "token_loss_sum_reference",
    "linear_token_loss_sum_reference",
    "lora_linear",
    "lora_linear_reference",
]
__version__ = "0.1.0"
