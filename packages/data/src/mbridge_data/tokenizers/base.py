"""The one tokenizer interface mbridge's datasets use (and megatron-core's datasets accept).

megatron-core's GPTDataset reads ``vocab_size``, ``eod`` and ``pad`` from its tokenizer and
hashes ``unique_identifiers`` into the names of its cached index files, so every tokenizer here
provides those. ``pad`` is -1 when the tokenizer has no pad token (megatron-core's convention).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence


class Tokenizer(ABC):
    """text <-> token ids. Subclasses set ``vocab_size``, ``eod``, ``pad``, ``bos``."""

    vocab_size: int
    eod: int
    pad: int = -1
    bos: int | None = None

    @abstractmethod
    def tokenize(self, text: str) -> list[int]: ...

    @abstractmethod
    def detokenize(self, ids: Sequence[int]) -> str: ...

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Many texts at once; subclasses backed by a batched (multi-threaded) encoder override."""
        return [self.tokenize(t) for t in texts]

    @property
    def eos(self) -> int:
        return self.eod

    @property
    def name(self) -> str:
        """Short stable name, used to tell apart files made with different tokenizers."""
        return type(self).__name__

    @property
    def unique_identifiers(self) -> dict:
        """What identifies this tokenizer in megatron-core's cache-file hash."""
        return {"class": type(self).__name__, "vocab_size": self.vocab_size, "eod": self.eod}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eod={self.eod}, pad={self.pad})"
