"""SentencePiece models (``tokenizer_model`` = a ``.model`` file): Llama-2 style tokenizers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from mbridge_data.errors import DataError
from mbridge_data.tokenizers.base import Tokenizer


class SentencePieceTokenizer(Tokenizer):
    def __init__(self, model_file: str | None):
        if not model_file:
            raise DataError("tokenizer.tokenizer_model: SentencePieceTokenizer needs a .model "
                            "file, got None")
        if not Path(model_file).is_file():
            raise DataError(f"tokenizer.tokenizer_model: {model_file} does not exist")
        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        except Exception as error:
            raise DataError(f"{model_file}: not a SentencePiece model ({error})") from None
        self._model_file = str(model_file)
        self.vocab_size = self._sp.get_piece_size()
        eos = self._sp.eos_id()
        if eos < 0:
            raise DataError(f"{model_file}: the model has no end-of-sentence (</s>) piece")
        self.eod = eos
        self.pad = self._sp.pad_id()  # -1 when absent, as megatron-core expects
        self.bos = self._sp.bos_id() if self._sp.bos_id() >= 0 else None

    def tokenize(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(texts))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))

    @property
    def name(self) -> str:
        return Path(self._model_file).stem

    @property
    def unique_identifiers(self) -> dict:
        return super().unique_identifiers | {"source": str(Path(self._model_file).resolve())}

    def __reduce__(self):
        return SentencePieceTokenizer, (self._model_file,)
