"""Tokenizers built from a TokenizerConfig, all with one interface (``base.Tokenizer``)."""

from mbridge_data.tokenizers.base import Tokenizer
from mbridge_data.tokenizers.build import SUPPORTED, build_tokenizer

__all__ = ["SUPPORTED", "Tokenizer", "build_tokenizer"]
