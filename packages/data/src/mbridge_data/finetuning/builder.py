"""Fine-tuning datasets from a FinetuningDatasetConfig: ``dataset_root`` holds training.jsonl,
validation.jsonl and test.jsonl; validation/test are read only when ``do_validation`` /
``do_test`` ask for them.

With ``packed_sequence_specs.packed_sequence_size > 0`` the training and validation splits are
packed offline once (rank 0 first when distributed) into
``DATASET_ROOT/packed/<tokenizer>/{training,validation}_<size>.npz`` (or the spec's explicit
paths) and reused while their inputs are unchanged. The packing efficiency is in the metadata
file next to them and on ``PackedDataset.split.efficiency``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from mbridge_data.errors import DataError
from mbridge_data.finetuning.dataset import SFTDataset, sft_options, tokenize_file
from mbridge_data.tokenizers.base import Tokenizer

logger = logging.getLogger(__name__)
SPLIT_FILES = {"train": "training.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"}


def split_path(root: str | Path, split: str) -> Path:
    path = Path(root) / SPLIT_FILES[split]
    if not path.is_file():
        flag = {"validation": " (or set do_validation=False)", "test": " (or set do_test=False)"}
        raise DataError(f"{path}: missing {split} split of dataset.dataset_root"
                        f"{flag.get(split, '')}")
    return path


def build_finetuning_datasets(cfg, tokenizer: Tokenizer, vocab_size: int | None = None) -> tuple:
    """(train, validation, test) datasets; None for a split that is switched off.
    ``vocab_size``: the model's embedding rows; a tokenized id at or above it is a DataError
    naming the split's file (the ids are materialized here, so the check is a max)."""
    if not cfg.dataset_root:
        raise DataError("dataset.dataset_root: needs the folder holding training.jsonl")
    root = Path(cfg.dataset_root)
    if not root.is_dir():
        raise DataError(f"dataset.dataset_root: {root} is not a directory")
    wanted = {"train": True, "validation": cfg.do_validation, "test": cfg.do_test}
    paths = {split: split_path(root, split) for split, on in wanted.items() if on}
    out = {}
    for split, path in paths.items():
        limit = cfg.max_train_samples if split == "train" else None
        if cfg.packed and split in ("train", "validation"):
            out[split] = _packed(cfg, tokenizer, split, path, limit)
        else:
            out[split] = SFTDataset(path, tokenizer, cfg.seq_length, cfg.dataset_kwargs, limit)
        if vocab_size is not None:
            _check_ids(out[split], vocab_size, path)
    return out.get("train"), out.get("validation"), out.get("test")


def _check_ids(dataset, vocab_size: int, source: Path) -> None:
    packed = getattr(dataset, "split", None)
    arrays = [packed.tokens] if packed is not None else [
        s.tokens for s in getattr(dataset, "samples", [])]
    largest = max((int(a.max()) for a in arrays if len(a)), default=-1)
    if largest >= vocab_size:
        raise DataError(f"{source}: tokenized to id {largest}, out of the model's vocabulary "
                        f"(model.vocab_size={vocab_size}); use the model's own tokenizer")


def packed_paths(cfg, tokenizer: Tokenizer, split: str) -> tuple[Path, Path]:
    specs = cfg.packed_sequence_specs
    size = specs.packed_sequence_size
    name = specs.tokenizer_model_name or tokenizer.name
    folder = Path(cfg.dataset_root) / "packed" / name
    stem = "training" if split == "train" else "validation"
    explicit = specs.packed_train_data_path if split == "train" else specs.packed_val_data_path
    data = Path(explicit) if explicit else folder / f"{stem}_{size}.npz"
    meta = (Path(specs.packed_metadata_path) if specs.packed_metadata_path and split == "train"
            else data.with_name(f"{data.stem}_metadata.json"))
    return data, meta


def _fingerprint(cfg, tokenizer: Tokenizer, path: Path, limit: int | None) -> dict:
    stat = path.stat()
    specs = cfg.packed_sequence_specs
    tok = json.dumps(tokenizer.unique_identifiers, sort_keys=True, default=str)
    return {"source": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "tokenizer": hashlib.sha256(tok.encode()).hexdigest()[:16],
            "seq_length": cfg.seq_length, "max_samples": limit,
            "pack_size": specs.packed_sequence_size, "pad_seq_to_mult": specs.pad_seq_to_mult or 1,
            "dataset_kwargs": json.dumps(cfg.dataset_kwargs or {}, sort_keys=True, default=str)}


def prepare_packed(cfg, tokenizer: Tokenizer, split: str, source: Path,
                   limit: int | None = None):
    """Pack ``source`` into its file unless an up-to-date one exists; return the PackedSplit."""
    from mbridge_data.packing.files import load_packed, pack_samples, save_packed

    data, meta = packed_paths(cfg, tokenizer, split)
    fingerprint = _fingerprint(cfg, tokenizer, source, limit)
    found = load_packed(data, fingerprint)
    if found is not None:
        return found
    specs = cfg.packed_sequence_specs
    samples = tokenize_file(source, tokenizer, cfg.seq_length, sft_options(cfg.dataset_kwargs),
                            limit)
    packed = pack_samples(samples, specs.packed_sequence_size, specs.pad_seq_to_mult or 1)
    info = save_packed(packed, data, fingerprint, meta)
    logger.info("packed %s: %d sequences into %d packs of %d, efficiency %.1f%%", source,
                info["num_sequences"], info["num_packs"], info["pack_size"],
                100 * info["packing_efficiency"])
    return packed


def _packed(cfg, tokenizer: Tokenizer, split: str, source: Path, limit: int | None):
    import torch.distributed as dist

    from mbridge_data.packing.dataset import PackedDataset

    if dist.is_available() and dist.is_initialized():
        if dist.get_rank() == 0:
            prepare_packed(cfg, tokenizer, split, source, limit)
        dist.barrier()
    packed = prepare_packed(cfg, tokenizer, split, source, limit)
    pad_id = tokenizer.pad if tokenizer.pad >= 0 else tokenizer.eod
    return PackedDataset(packed, pad_id, cfg.packed_sequence_specs.pad_cu_seqlens)
