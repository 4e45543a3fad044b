"""Packed fine-tuning data on disk: one ``.npz`` per split plus a metadata ``.json``.

The ``.npz`` holds the unpadded shifted samples (tokens, labels, loss mask) laid out pack by
pack, the length of each sequence and where each pack's sequences start, plus a fingerprint of
what it was made from (source file, tokenizer, lengths, options) so stale packs are rebuilt rather
than silently reused. Padding (``pad_seq_to_mult``, pack filler) is applied when loading. Written
atomically; no pickled objects.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbridge_data.atomic import write_bytes_atomic, write_text_atomic
from mbridge_data.errors import DataError
from mbridge_data.finetuning.sft import Sample
from mbridge_data.packing.ffd import first_fit_decreasing


def padded(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class PackedSplit:
    tokens: np.ndarray
    labels: np.ndarray
    loss_mask: np.ndarray
    seq_lens: np.ndarray  # per sequence, pack order
    sample_ids: np.ndarray  # per sequence, pack order: its index in the unpacked split
    pack_starts: np.ndarray  # [num_packs + 1] into seq_lens
    pack_size: int
    pad_seq_to_mult: int

    @property
    def num_packs(self) -> int:
        return len(self.pack_starts) - 1

    @property
    def efficiency(self) -> float:
        """Real tokens / pack capacity (padding to multiples and pack filler are the waste)."""
        return float(self.seq_lens.sum()) / max(1, self.num_packs * self.pack_size)


def pack_samples(samples: list[Sample], pack_size: int, pad_seq_to_mult: int = 1) -> PackedSplit:
    if pad_seq_to_mult < 1 or pack_size % pad_seq_to_mult:
        raise DataError(f"dataset.packed_sequence_specs: packed_sequence_size {pack_size} must be "
                        f"a multiple of pad_seq_to_mult {pad_seq_to_mult}")
    lengths = [len(s) for s in samples]
    sizes = [padded(n, pad_seq_to_mult) for n in lengths]
    try:
        packs = first_fit_decreasing(sizes, pack_size)
    except ValueError as error:
        raise DataError(f"dataset.packed_sequence_specs.packed_sequence_size: {error}; raise it "
                        f"to at least the seq_length") from None
    order = [i for pack in packs for i in pack]
    cat = (lambda name: np.concatenate([getattr(samples[i], name) for i in order])
           if order else np.zeros(0, np.int64))
    return PackedSplit(
        tokens=cat("tokens"), labels=cat("labels"), loss_mask=cat("loss_mask").astype(np.uint8),
        seq_lens=np.asarray([lengths[i] for i in order], dtype=np.int64),
        sample_ids=np.asarray(order, dtype=np.int64),
        pack_starts=np.cumsum([0] + [len(p) for p in packs], dtype=np.int64),
        pack_size=pack_size, pad_seq_to_mult=pad_seq_to_mult,
    )


def save_packed(split: PackedSplit, path: str | Path, fingerprint: dict,
                metadata_path: str | Path | None = None) -> dict:
    buffer = io.BytesIO()
    np.savez(buffer, tokens=split.tokens, labels=split.labels, loss_mask=split.loss_mask,
             seq_lens=split.seq_lens, sample_ids=split.sample_ids, pack_starts=split.pack_starts,
             pack_size=np.int64(split.pack_size), pad_seq_to_mult=np.int64(split.pad_seq_to_mult),
             fingerprint=np.frombuffer(json.dumps(fingerprint, sort_keys=True).encode(), np.uint8))
    write_bytes_atomic(path, buffer.getvalue())
    metadata = {
        "packed_file": str(path), "pack_size": split.pack_size, "num_packs": split.num_packs,
        "num_sequences": int(len(split.seq_lens)), "tokens": int(split.seq_lens.sum()),
        "packing_efficiency": round(split.efficiency, 6),
        "max_sequences_per_pack": int(np.diff(split.pack_starts).max(initial=0)),
        "pad_seq_to_mult": split.pad_seq_to_mult,
    }
    if metadata_path is not None:
        write_text_atomic(metadata_path, json.dumps(metadata, indent=2) + "\n")
    return metadata


def load_packed(path: str | Path, fingerprint: dict | None = None) -> PackedSplit | None:
    """The packed split at ``path``; None when missing or made from other inputs."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(z["fingerprint"].tobytes().decode())
            if fingerprint is not None and stored != json.loads(json.dumps(fingerprint)):
                return None
            return PackedSplit(z["tokens"], z["labels"], z["loss_mask"], z["seq_lens"],
                               z["sample_ids"], z["pack_starts"], int(z["pack_size"]), int(z["pad_seq_to_mult"]))
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{path}: not a readable packed-sequence file ({error}); delete it to "
                        "rebuild") from None
