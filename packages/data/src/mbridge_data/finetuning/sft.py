"""One fine-tuning sample: tokenized segments -> tokens, labels and loss mask within seq_length.

The full sequence (optional BOS, the segments, EOS) is shifted by one: ``tokens = ids[:-1]``,
``labels = ids[1:]``, and a label is trained on exactly when it belongs to an answer segment
(EOS counts as answer: the model learns to stop). Too long a sequence loses prompt tokens first
("left": the oldest, "right": those nearest the answer); only when no prompt is left is the answer
cut at its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TRUNCATION = ("left", "right")


@dataclass(frozen=True)
class Sample:
    tokens: np.ndarray  # int64 [n]
    labels: np.ndarray  # int64 [n]
    loss_mask: np.ndarray  # uint8 [n]

    def __len__(self) -> int:
        return len(self.tokens)


def build_sample(
    pieces: Sequence[tuple[Sequence[int], bool]],
    seq_length: int,
    *,
    bos: int | None = None,
    eos: int | None = None,
    truncation: str = "left",
    answer_only_loss: bool = True,
) -> Sample:
    """``pieces``: (token ids, is_answer) per segment. Result has at most ``seq_length`` tokens."""
    ids: list[int] = []
    answer: list[bool] = []
    protected: list[bool] = []
    if bos is not None:
        ids.append(bos), answer.append(False), protected.append(True)
    for piece, is_answer in pieces:
        ids.extend(piece)
        answer.extend([is_answer] * len(piece))
        protected.extend([False] * len(piece))
    if eos is not None:
        ids.append(eos), answer.append(True), protected.append(False)
    ids_a = np.asarray(ids, dtype=np.int64)
    answer_a = np.asarray(answer, dtype=bool)
    keep = _truncate(answer_a, np.asarray(protected, dtype=bool), seq_length + 1, truncation)
    ids_a, answer_a = ids_a[keep], answer_a[keep]
    mask = answer_a[1:] if answer_only_loss else np.ones(len(ids_a) - 1, dtype=bool)
    return Sample(ids_a[:-1].copy(), ids_a[1:].copy(), mask.astype(np.uint8))


def _truncate(answer: np.ndarray, protected: np.ndarray, limit: int, how: str) -> np.ndarray:
    keep = np.ones(len(answer), dtype=bool)
    excess = len(answer) - limit
    if excess <= 0:
        return keep
    if how not in TRUNCATION:
        raise ValueError(f"truncation_method must be one of {TRUNCATION}, got {how!r}")
    prompt = np.flatnonzero(~answer & ~protected)
    drop = prompt[:excess] if how == "left" else prompt[len(prompt) - min(excess, len(prompt)):]
    keep[drop] = False
    excess -= len(drop)
    if excess > 0:  # the answer alone is too long: cut its end
        keep[np.flatnonzero(keep)[len(np.flatnonzero(keep)) - excess:]] = False
    return keep
