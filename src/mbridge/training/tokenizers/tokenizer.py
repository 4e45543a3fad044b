"""`megatron.bridge.training.tokenizers.tokenizer`: build_tokenizer."""

from mbridge_data.tokenizers import build_tokenizer

__all__ = ["build_tokenizer"]
