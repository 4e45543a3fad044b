"""Packed samples as a torch Dataset: each item is one pack with cu_seqlens.

``cu_seqlens`` marks where each sequence starts and ends inside the pack, so attention kernels
(THD layout) never attend across sequences; position ids restart at every sequence. Each sequence
is padded to a multiple of ``pad_seq_to_mult`` and the pack's unused tail is a last, fully
masked segment, so ``cu_seqlens[-1]`` is always the pack size. ``seq_ids`` gives each token's
sample index in the unpacked split (-1 for the filler).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mbridge_data.packing.files import PackedSplit, padded


class PackedDataset(torch.utils.data.Dataset):
    def __init__(self, split: PackedSplit, pad_id: int, pad_cu_seqlens: bool = False):
        self.split = split
        self.pad_id = pad_id
        self.pad_cu_seqlens = pad_cu_seqlens
        self._token_starts = np.concatenate([[0], np.cumsum(split.seq_lens)])
        # With pad_cu_seqlens every item has the same cu_seqlens length (CUDA graphs need it).
        self.cu_seqlens_len = split.pack_size // split.pad_seq_to_mult + 2

    def __len__(self) -> int:
        return self.split.num_packs

    def __getitem__(self, index: int) -> dict[str, np.ndarray | int]:
        s, size, mult = self.split, self.split.pack_size, self.split.pad_seq_to_mult
        tokens = np.full(size, self.pad_id, dtype=np.int64)
        labels = np.full(size, self.pad_id, dtype=np.int64)
        loss_mask = np.zeros(size, dtype=np.uint8)
        position_ids = np.zeros(size, dtype=np.int64)
        seq_ids = np.full(size, -1, dtype=np.int64)
        bounds = [0]
        first, last = int(s.pack_starts[index]), int(s.pack_starts[index + 1])
        at = 0
        for seq in range(first, last):
            n = int(s.seq_lens[seq])
            src = slice(int(self._token_starts[seq]), int(self._token_starts[seq]) + n)
            tokens[at:at + n] = s.tokens[src]
            labels[at:at + n] = s.labels[src]
            loss_mask[at:at + n] = s.loss_mask[src]
            width = padded(n, mult)
            position_ids[at:at + width] = np.arange(width)
            seq_ids[at:at + width] = s.sample_ids[seq]
            at += width
            bounds.append(at)
        if at < size:  # the filler: its own segment, never trained on
            position_ids[at:] = np.arange(size - at)
            bounds.append(size)
        cu = np.asarray(bounds, dtype=np.int32)
        max_seqlen = int(np.diff(cu).max())
        if self.pad_cu_seqlens:
            cu = np.concatenate([cu, np.full(self.cu_seqlens_len - len(cu), -1, np.int32)])
        return {"tokens": tokens, "labels": labels, "loss_mask": loss_mask,
                "position_ids": position_ids, "seq_ids": seq_ids, "cu_seqlens": cu,
                "max_seqlen": max_seqlen}

    def collate(self, batch: Sequence[dict]) -> dict[str, torch.Tensor]:
        return collate_packed(batch)


def collate_packed(batch: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Stack packs; cu_seqlens are padded with -1 to a common length and
    ``cu_seqlens_argmin`` gives each row's count of valid entries."""
    out = {key: torch.from_numpy(np.stack([item[key] for item in batch]))
           for key in ("tokens", "labels", "position_ids", "seq_ids")}
    out["loss_mask"] = torch.from_numpy(np.stack([item["loss_mask"] for item in batch])).float()
    width = max(len(item["cu_seqlens"]) for item in batch)
    cu = torch.full((len(batch), width), -1, dtype=torch.int32)
    valid = []
    for row, item in enumerate(batch):
        c = torch.from_numpy(item["cu_seqlens"])
        cu[row, :len(c)] = c
        valid.append(int((c >= 0).sum()))
    out["cu_seqlens"] = cu
    out["cu_seqlens_argmin"] = torch.tensor(valid, dtype=torch.int64)
    out["max_seqlen"] = torch.tensor([item["max_seqlen"] for item in batch], dtype=torch.int32)
    return out
