"""Fused Triton and C++/CUDA kernels for mbridge: masked token loss (plain, vocab-parallel,
fused with the output linear layer)."""

from .masked_token_loss import masked_token_loss
from .reference import linear_masked_token_loss_reference, masked_token_loss_reference

__all__ = [
    "masked_token_loss",
    "masked_token_loss_reference",
    "linear_masked_token_loss_reference",
]

__version__ = "0.1.0"
