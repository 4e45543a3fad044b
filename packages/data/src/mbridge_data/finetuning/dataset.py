"""A fine-tuning split (one jsonl file) as a torch Dataset of ready samples, and its collate.

All records are read, checked and tokenized when the dataset is made (one batched tokenizer call
per template segment position), so a malformed line fails at start-up with its ``file:line``
rather than mid-training. Samples are variable length; ``collate`` pads a batch to its longest
sample (or to ``pad_to``), and attention is causal, so padding at the end needs no mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mbridge_data.errors import DataError, at_line
from mbridge_data.finetuning.sft import Sample, build_sample
from mbridge_data.finetuning.templates import RecordError, Templates, segments
from mbridge_data.jsonl import read_jsonl
from mbridge_data.tokenizers.base import Tokenizer

OPTIONS = ("prompt_template", "chat_template", "truncation_method", "add_bos", "add_eos",
           "answer_only_loss", "pad_to_max_length")


def sft_options(dataset_kwargs: dict | None) -> dict:
    """``dataset_kwargs`` checked against the options this dataset knows, defaults filled in."""
    kwargs = dict(dataset_kwargs or {})
    unknown = sorted(set(kwargs) - set(OPTIONS))
    if unknown:
        raise DataError(f"dataset.dataset_kwargs: unknown option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(OPTIONS)}")
    try:
        templates = Templates(
            prompt=kwargs.get("prompt_template", Templates().prompt),
            chat=kwargs.get("chat_template") or Templates().chat,
        )
    except ValueError as error:
        raise DataError(f"dataset.dataset_kwargs: {error}") from None
    truncation = kwargs.get("truncation_method", "left")
    if truncation not in ("left", "right"):
        raise DataError(f"dataset.dataset_kwargs.truncation_method: 'left' or 'right', got "
                        f"{truncation!r}")
    return {"templates": templates, "truncation": truncation,
            "add_bos": bool(kwargs.get("add_bos", False)),
            "add_eos": bool(kwargs.get("add_eos", True)),
            "answer_only_loss": bool(kwargs.get("answer_only_loss", True)),
            "pad_to_max_length": bool(kwargs.get("pad_to_max_length", False))}


def tokenize_file(path: str | Path, tokenizer: Tokenizer, seq_length: int,
                  options: dict, max_samples: int | None = None) -> list[Sample]:
    """Every record of one jsonl split as a Sample (in file order)."""
    path = Path(path)
    records: list[tuple[int, list[tuple[str, bool]]]] = []
    for number, record in read_jsonl(path):
        try:
            records.append((number, segments(record, options["templates"])))
        except RecordError as error:
            raise at_line(str(path), number, str(error)) from None
        if max_samples is not None and len(records) >= max_samples:
            break
    if not records:
        raise DataError(f"{path}: no records")
    flat_texts = [text for _, segs in records for text, _ in segs]
    flat_ids = tokenizer.tokenize_batch(flat_texts)
    samples, at = [], 0
    bos = tokenizer.bos if options["add_bos"] else None
    eos = tokenizer.eod if options["add_eos"] else None
    for number, segs in records:
        pieces = [(flat_ids[at + i], is_answer) for i, (_, is_answer) in enumerate(segs)]
        at += len(segs)
        sample = build_sample(pieces, seq_length, bos=bos, eos=eos,
                              truncation=options["truncation"],
                              answer_only_loss=options["answer_only_loss"])
        if len(sample) == 0:
            raise at_line(str(path), number, "the record tokenizes to fewer than 2 tokens")
        samples.append(sample)
    return samples


class SFTDataset(torch.utils.data.Dataset):
    """Samples of one split: dicts of tokens, labels, loss_mask, position_ids (unpadded)."""

    def __init__(self, path: str | Path, tokenizer: Tokenizer, seq_length: int,
                 dataset_kwargs: dict | None = None, max_num_samples: int | None = None):
        self.path = Path(path)
        self.seq_length = seq_length
        self.options = sft_options(dataset_kwargs)
        self.pad_id = tokenizer.pad if tokenizer.pad >= 0 else tokenizer.eod
        self.samples = tokenize_file(self.path, tokenizer, seq_length, self.options,
                                     max_num_samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        s = self.samples[index]
        return {"tokens": s.tokens, "labels": s.labels, "loss_mask": s.loss_mask,
                "position_ids": np.arange(len(s), dtype=np.int64)}

    def collate(self, batch: Sequence[dict]) -> dict[str, torch.Tensor]:
        pad_to = self.seq_length if self.options["pad_to_max_length"] else None
        return collate(batch, self.pad_id, pad_to)


def collate(batch: Sequence[dict], pad_id: int, pad_to: int | None = None,
            multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Pad to the longest sample (or ``pad_to``), rounded up to ``multiple_of``."""
    longest = max(len(item["tokens"]) for item in batch)
    width = max(longest, pad_to or 0)
    width = -(-width // multiple_of) * multiple_of
    out = {
        "tokens": torch.full((len(batch), width), pad_id, dtype=torch.int64),
        "labels": torch.full((len(batch), width), pad_id, dtype=torch.int64),
        "loss_mask": torch.zeros((len(batch), width), dtype=torch.float32),
        "position_ids": torch.arange(width, dtype=torch.int64).repeat(len(batch), 1),
    }
    for row, item in enumerate(batch):
        n = len(item["tokens"])
        out["tokens"][row, :n] = torch.from_numpy(np.asarray(item["tokens"], dtype=np.int64))
        out["labels"][row, :n] = torch.from_numpy(np.asarray(item["labels"], dtype=np.int64))
        out["loss_mask"][row, :n] = torch.from_numpy(np.asarray(item["loss_mask"],
                                                                dtype=np.float32))
    return out
