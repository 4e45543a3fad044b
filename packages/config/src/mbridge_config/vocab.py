"""The vocab-size priority rule of the Megatron Bridge API, in one place.

1. The model provider's ``vocab_size`` is set: use it; it must be >= the tokenizer's vocab size;
   no padding (``should_pad_vocab=False``), e.g. to match a checkpoint.
2. It is None: take the tokenizer's vocab size and pad it (``should_pad_vocab=True``) up to a
   multiple of ``make_vocab_size_divisible_by x tensor_model_parallel_size``.
"""

from __future__ import annotations

from mbridge_config.errors import ConfigError


def padded_vocab_size(vocab_size: int, make_divisible_by: int, tensor_parallel: int) -> int:
    multiple = make_divisible_by * tensor_parallel
    return -(-vocab_size // multiple) * multiple


def resolve_vocab_size(
    model_vocab_size: int | None,
    tokenizer_vocab_size: int,
    make_divisible_by: int = 128,
    tensor_parallel: int = 1,
) -> tuple[int, bool]:
    """Return (vocab size the model is built with, whether it was padded)."""
    if model_vocab_size is None:
        return padded_vocab_size(tokenizer_vocab_size, make_divisible_by, tensor_parallel), True
    if model_vocab_size < tokenizer_vocab_size:
        raise ConfigError(
            f"{model_vocab_size} is smaller than the tokenizer's vocab size "
            f"{tokenizer_vocab_size}; set it >= {tokenizer_vocab_size} or None to derive it",
            field="model.vocab_size",
        )
    return model_vocab_size, False
