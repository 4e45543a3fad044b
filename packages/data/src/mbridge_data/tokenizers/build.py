"""``build_tokenizer(TokenizerConfig)`` and the vocab-size rule that follows from the tokenizer.

The config is read by attribute only, so a ``TokenizerConfig`` or any object with the same field
names works (the ``mbridge data`` CLI passes a namespace and so never imports megatron-core).
"""

from __future__ import annotations

from mbridge_data.errors import DataError
from mbridge_data.tokenizers.base import Tokenizer

SUPPORTED = ("GPT2BPETokenizer", "HuggingFaceTokenizer", "SentencePieceTokenizer",
             "GPTSentencePieceTokenizer", "Llama2Tokenizer", "NullTokenizer")


def build_tokenizer(config, **_ignored) -> Tokenizer:
    """The tokenizer ``config.tokenizer_type`` names, from the files the config points at."""
    kind = getattr(config, "tokenizer_type", None)
    if kind == "NullTokenizer":
        from mbridge_data.tokenizers.null import NullTokenizer

        return NullTokenizer(getattr(config, "vocab_size", None),
                             getattr(config, "null_tokenizer_eod_id", None),
                             getattr(config, "null_tokenizer_pad_id", -1))
    if kind == "HuggingFaceTokenizer":
        from mbridge_data.tokenizers.huggingface import HuggingFaceTokenizer

        return HuggingFaceTokenizer(
            getattr(config, "tokenizer_model", None),
            add_special_tokens=not getattr(config, "tokenizer_hf_no_include_special_tokens", False),
        )
    if kind == "GPT2BPETokenizer":
        from mbridge_data.tokenizers.huggingface import GPT2BPETokenizer

        return GPT2BPETokenizer(getattr(config, "vocab_file", None),
                                getattr(config, "merge_file", None))
    if kind in ("SentencePieceTokenizer", "GPTSentencePieceTokenizer", "Llama2Tokenizer"):
        from mbridge_data.tokenizers.sentencepiece import SentencePieceTokenizer

        return SentencePieceTokenizer(getattr(config, "tokenizer_model", None))
    raise DataError(f"tokenizer.tokenizer_type: {kind!r} is not supported; "
                    f"choose one of {', '.join(SUPPORTED)}")


def model_vocab_size(tokenizer: Tokenizer, model_vocab_size: int | None,
                     make_vocab_size_divisible_by: int = 128,
                     tensor_model_parallel_size: int = 1) -> tuple[int, bool]:
    """(vocab size to build the model with, whether it was padded), by the Megatron Bridge rule:
    the model's own ``vocab_size`` wins (>= the tokenizer's, unpadded); None takes the
    tokenizer's and pads it to a multiple of ``make_vocab_size_divisible_by x TP``."""
    from mbridge_config.vocab import resolve_vocab_size

    return resolve_vocab_size(model_vocab_size, tokenizer.vocab_size,
                              make_vocab_size_divisible_by, tensor_model_parallel_size)
