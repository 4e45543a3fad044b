"""Tokenizers backed by the Rust ``tokenizers`` library: HuggingFace's tokenizer.json and GPT-2's
vocab.json + merges.txt.

Only local files are read (no hub downloads). The batched path uses ``encode_batch_fast``, which
runs on all cores and skips offset bookkeeping; this is what makes preprocessing fast.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers

from mbridge_data.errors import DataError
from mbridge_data.tokenizers.base import Tokenizer

# Spellings of the special tokens in common tokenizers, most common first.
EOD_NAMES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eot_id|>", "[EOS]", "<|im_end|>")
PAD_NAMES = ("<|pad|>", "<pad>", "[PAD]", "<|finetune_right_pad_id|>")
BOS_NAMES = ("<|begin_of_text|>", "<s>", "<bos>", "<|bos|>", "[BOS]")


class _RustTokenizer(Tokenizer):
    """Shared behaviour of tokenizers wrapping a ``tokenizers.Tokenizer``."""

    def __init__(self, tok: tokenizers.Tokenizer, source: str, add_special_tokens: bool = True,
                 special: dict[str, str | None] | None = None):
        self._tok = tok
        self._source = source
        self._add_special = add_special_tokens
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        special = special or {}
        self.eod = self._special_id(special.get("eos"), EOD_NAMES, "end-of-document")
        pad = self._special_id(special.get("pad"), PAD_NAMES, None)
        self.pad = -1 if pad is None else pad
        self.bos = self._special_id(special.get("bos"), BOS_NAMES, None)

    def _special_id(self, declared: str | None, names: Sequence[str], required: str | None):
        for name in ([declared] if declared else []) + list(names):
            token_id = self._tok.token_to_id(name)
            if token_id is not None:
                return token_id
        if required:
            raise DataError(
                f"{self._source}: no {required} token; expected one of {', '.join(names)}"
            )
        return None

    def tokenize(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=self._add_special).ids

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self._tok.encode_batch_fast(list(texts), add_special_tokens=self._add_special)
        return [e.ids for e in encodings]

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    @property
    def backend(self) -> tokenizers.Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (for callers that need its full API)."""
        return self._tok

    @property
    def name(self) -> str:
        return Path(self._source).stem if Path(self._source).is_file() else Path(self._source).name

    @property
    def unique_identifiers(self) -> dict:
        return super().unique_identifiers | {"source": str(Path(self._source).resolve())}


class HuggingFaceTokenizer(_RustTokenizer):
    """A HuggingFace fast tokenizer from a local ``tokenizer.json`` or a directory holding one.

    Special tokens come from the directory's ``tokenizer_config.json`` (``eos_token``,
    ``pad_token``, ``bos_token``) when present, else from the usual spellings.
    """

    def __init__(self, path: str, add_special_tokens: bool = True):
        file, special = _locate_tokenizer_json(path)
        try:
            tok = tokenizers.Tokenizer.from_file(str(file))
        except Exception as error:  # the Rust side raises a bare Exception
            raise DataError(f"{file}: not a readable tokenizer.json ({error})") from None
        self._path = path
        super().__init__(tok, str(file if Path(path).is_file() else path), add_special_tokens,
                         special)

    def __reduce__(self):
        return HuggingFaceTokenizer, (self._path, self._add_special)


class GPT2BPETokenizer(_RustTokenizer):
    """GPT-2's byte-level BPE from ``vocab.json`` + ``merges.txt``; EOD is ``<|endoftext|>``."""

    def __init__(self, vocab_file: str | None, merge_file: str | None):
        for field, value in (("vocab_file", vocab_file), ("merge_file", merge_file)):
            if not value:
                raise DataError(f"tokenizer.{field}: GPT2BPETokenizer needs it, got None")
            if not Path(value).is_file():
                raise DataError(f"tokenizer.{field}: {value} does not exist")
        try:
            bpe = models.BPE.from_file(vocab_file, merge_file)
        except Exception as error:
            raise DataError(f"{vocab_file} / {merge_file}: not a BPE vocab + merges pair "
                            f"({error})") from None
        tok = tokenizers.Tokenizer(bpe)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        self._files = (vocab_file, merge_file)
        super().__init__(tok, vocab_file, add_special_tokens=False,
                         special={"eos": "<|endoftext|>"})

    @property
    def name(self) -> str:
        return "gpt2-" + Path(self._files[0]).parent.name

    def __reduce__(self):
        return GPT2BPETokenizer, self._files


def _special_name(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _locate_tokenizer_json(path: str | None) -> tuple[Path, dict[str, str | None]]:
    if not path:
        raise DataError("tokenizer.tokenizer_model: HuggingFaceTokenizer needs a local "
                        "tokenizer.json or a directory holding one, got None")
    p = Path(path)
    if p.is_file():
        return p, {}
    if not p.is_dir():
        raise DataError(
            f"tokenizer.tokenizer_model: {path} is not a local directory or tokenizer.json "
            "(mbridge reads tokenizers from local files only; download it first)"
        )
    file = p / "tokenizer.json"
    if not file.is_file():
        raise DataError(f"{p}: no tokenizer.json (a fast tokenizer is needed; save one with "
                        "transformers' tokenizer.save_pretrained)")
    special: dict[str, str | None] = {}
    config = p / "tokenizer_config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
        except json.JSONDecodeError as error:
            raise DataError(f"{config}:{error.lineno}: not valid JSON ({error.msg})") from None
        special = {k: _special_name(data.get(f"{k}_token")) for k in ("eos", "pad", "bos")}
    return file, special
