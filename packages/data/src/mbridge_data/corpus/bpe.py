"""Train a byte-level BPE tokenizer (GPT-2 style) on a corpus with the Rust ``tokenizers`` library.

Byte-level means every string is encodable and decodes back exactly. Saved as a HuggingFace
``tokenizer.json`` plus a ``tokenizer_config.json`` naming its special tokens, so
``TokenizerConfig(tokenizer_type="HuggingFaceTokenizer", tokenizer_model=DIR)`` loads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from mbridge_data.atomic import write_text_atomic

EOD, PAD = "<|endoftext|>", "<|pad|>"


def train_byte_level_bpe(texts: Iterable[str], vocab_size: int = 8192,
                         min_frequency: int = 2) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    # Runs of spaces are tokens of their own and digits are one token each, so a word is the
    # same token wherever it stands (first in a list, after a space, in an answer) and numbers
    # are written digit by digit: what a small model needs to copy and to count.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(" +"), "isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOD, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok: Tokenizer, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / "tokenizer.json", tok.to_str())
    config = {"eos_token": EOD, "pad_token": PAD, "bos_token": None,
              "model_max_length": 1 << 20, "tokenizer_class": "PreTrainedTokenizerFast"}
    write_text_atomic(directory / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    return directory
