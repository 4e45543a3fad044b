"""A byte-level tokenizer needing no files: ids 0..255 are UTF-8 bytes, then EOD.

Megatron's NullTokenizer reads space-separated integers; mbridge's is byte-level instead so that
any text round-trips (tests, mock runs, the smoke job) while keeping the same config fields:
``vocab_size`` (default 257), ``null_tokenizer_eod_id`` (default ``vocab_size - 1``) and
``null_tokenizer_pad_id`` (default -1, none).
"""

from __future__ import annotations

from collections.abc import Sequence

from mbridge_data.errors import DataError
from mbridge_data.tokenizers.base import Tokenizer

BYTES = 256


class NullTokenizer(Tokenizer):
    def __init__(self, vocab_size: int | None = None, eod_id: int | None = None, pad_id: int = -1):
        vocab_size = BYTES + 1 if vocab_size is None else int(vocab_size)
        eod = vocab_size - 1 if eod_id is None else int(eod_id)
        if vocab_size <= BYTES:
            raise DataError(
                f"tokenizer.vocab_size: NullTokenizer is byte-level and needs >= {BYTES + 1} "
                f"(256 bytes + EOD), got {vocab_size}"
            )
        if not BYTES <= eod < vocab_size:
            raise DataError(
                f"tokenizer.null_tokenizer_eod_id: must be in [{BYTES}, {vocab_size}) so it is "
                f"not a byte, got {eod}"
            )
        self.vocab_size, self.eod, self.pad = vocab_size, eod, int(pad_id)

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def detokenize(self, ids: Sequence[int]) -> str:
        return bytes(i for i in ids if 0 <= i < BYTES).decode("utf-8", errors="replace")

    def __reduce__(self):
        return NullTokenizer, (self.vocab_size, self.eod, self.pad)
