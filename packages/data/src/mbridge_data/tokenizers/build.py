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
