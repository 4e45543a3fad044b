"""Pretraining datasets from a GPTDatasetConfig, through megatron-core's own builder.

``blend`` + ``blend_weights`` (one distribution cut by ``split``) or ``blend_per_split`` (separate
train/valid/test lists) become megatron-core's ``BlendedMegatronDatasetBuilder`` of ``GPTDataset``;
``MockGPTDatasetConfig`` (or no blend at all) gives ``MockGPTDataset``. Everything that can be
wrong with the inputs is checked here first, so the user sees one line naming the field or the
file instead of an assertion from inside megatron-core.

The document/sample/shuffle index files go to ``<path_to_cache>/data-<digest>`` (default
``path_to_cache``: a ``cache`` folder beside the first dataset) and are reused by later runs.
The digest is the data files' identity (size + mtime_ns of every .bin/.idx,
``indexed.identity``): a dataset preprocessed again to the same prefix gets fresh indices, not
stale ones (megatron-core keys its cache by path only, and failed with an IndexError deep
inside). Token ids the model has no embedding row for are refused first (``vocab_size``), one
line naming the file. When torch.distributed is initialised, megatron-core builds the indices
on rank 0 first and the other ranks then load them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from mbridge_data.errors import DataError
from mbridge_data.indexed import check_indexed_pair, check_token_ids, identity_digest
from mbridge_data.tokenizers.base import Tokenizer

SPLITS = ("train", "valid", "test")


def _check_blend(field: str, prefixes, weights) -> tuple[tuple[list[str], list[float] | None],
                                                          list[int]]:
    """((prefixes, weights) as megatron-core takes a blend, each dataset's document count)."""
    if not prefixes:
        raise DataError(f"dataset.{field}: empty list of dataset prefixes")
    prefixes = [str(p) for p in prefixes]
    if weights is not None:
        weights = [float(w) for w in weights]
        if len(weights) != len(prefixes):
            raise DataError(f"dataset.{field.replace('blend', 'blend_weights')}: {len(weights)} "
                            f"weights for {len(prefixes)} datasets; give one weight per dataset")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise DataError(f"dataset.{field.replace('blend', 'blend_weights')}: weights must be "
                            f">= 0 with a positive sum, got {weights}")
    # The index stores each document's start and the end: one boundary more than documents.
    documents = [check_indexed_pair(prefix)[1] - 1 for prefix in prefixes]
    return (prefixes, weights), documents


def _check_split(split: str | None) -> str:
    numbers = re.findall(r"[.0-9]+", split or "")
    if not split or not 1 <= len(numbers) <= 3 or sum(map(float, numbers)) <= 0:
        raise DataError(f"dataset.split: expected up to three comma-separated proportions such "
                        f"as '949,50,1', got {split!r}")
    return split


def is_mock(cfg) -> bool:
    return getattr(cfg, "blend", None) is None and not any(getattr(cfg, "blend_per_split", None)
                                                           or [])


def megatron_config(cfg, tokenizer: Tokenizer):
    """megatron-core's GPTDatasetConfig for our GPTDatasetConfig (checked on the way)."""
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig as CoreConfig

    if cfg.sequence_length is None or cfg.sequence_length < 1:
        raise DataError(f"dataset.sequence_length: must be >= 1, got {cfg.sequence_length}")
    blend = blend_per_split = None
    split = cfg.split
    first_prefix = None
    if cfg.blend_per_split is not None and any(cfg.blend_per_split):
        if cfg.blend is not None:
            raise DataError("dataset.blend_per_split: give either blend or blend_per_split")
        if len(cfg.blend_per_split) != 3:
            raise DataError(f"dataset.blend_per_split: needs [train, valid, test] (None for an "
                            f"unused split), got {len(cfg.blend_per_split)} entries")
        weights_per_split = cfg.blend_weights_per_split or [None] * 3
        if len(weights_per_split) != 3:
            raise DataError("dataset.blend_weights_per_split: needs [train, valid, test] entries")
        blend_per_split = []
        for name, prefixes, weights in zip(SPLITS, cfg.blend_per_split, weights_per_split):
            if prefixes is None:
                blend_per_split.append(None)
                continue
            blend_per_split.append(_check_blend(f"blend_per_split[{name}]", prefixes, weights)[0])
            first_prefix = first_prefix or blend_per_split[-1][0][0]
        split = None
    elif cfg.blend is not None:
        blend, documents = _check_blend("blend", cfg.blend, cfg.blend_weights)
        split = _check_split(cfg.split)
        first_prefix = blend[0][0]
    cache = cfg.path_to_cache
    if cache is None and first_prefix is not None:
        cache = str(Path(first_prefix).parent / "cache")
    prefixes = data_prefixes(blend, blend_per_split)
    if cache is not None and prefixes:
        cache = str(Path(cache) / f"data-{identity_digest(prefixes)}")
    core = CoreConfig(
        random_seed=cfg.random_seed,
        sequence_length=cfg.sequence_length,
        blend=blend,
        blend_per_split=blend_per_split,
        split=split,
        path_to_cache=cache,
        mmap_bin_files=cfg.mmap_bin_files,
        num_dataset_builder_threads=cfg.num_dataset_builder_threads,
        tokenizer=tokenizer,
        reset_position_ids=cfg.reset_position_ids,
        reset_attention_mask=cfg.reset_attention_mask,
        eod_mask_loss=cfg.eod_mask_loss,
        create_attention_mask=cfg.create_attention_mask,
    )
    if blend is not None:
        _check_splits_have_documents(core, documents)
    return core


def data_prefixes(blend, blend_per_split) -> list[str]:
    """Every dataset prefix of a megatron-core blend / blend_per_split, in order, once."""
    parts = [blend] if blend is not None else list(blend_per_split or [])
    return list(dict.fromkeys(p for part in parts if part is not None for p in part[0]))


def build_pretraining_datasets(
    cfg,
    tokenizer: Tokenizer,
    train_valid_test_num_samples: Sequence[int | None],
    is_built_on_rank: Callable[[], bool] | None = None,
    vocab_size: int | None = None,
) -> tuple:
    """(train, valid, test) datasets, each None when its split is empty.

    ``train_valid_test_num_samples``: how many samples each split must provide (megatron-core
    repeats epochs to reach it). ``is_built_on_rank``: whether this rank needs the datasets
    (default: every rank; with pipeline parallelism only the first and last stages do).
    ``vocab_size``: the model's embedding rows; a token id at or above it is a DataError.
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, MockGPTDataset

    if len(train_valid_test_num_samples) != 3:
        raise DataError("train_valid_test_num_samples: needs [train, valid, test] sample counts")
    core = megatron_config(cfg, tokenizer)
    if vocab_size is not None:
        for prefix in data_prefixes(core.blend, core.blend_per_split):
            check_token_ids(prefix, vocab_size, core.path_to_cache)
    cls = MockGPTDataset if core.mock else GPTDataset
    try:
        builder = BlendedMegatronDatasetBuilder(
            cls, list(train_valid_test_num_samples), is_built_on_rank or (lambda: True), core
        )
        return tuple(builder.build())
    except AssertionError as error:  # megatron-core reports bad inputs by assert
        raise DataError(f"dataset: megatron-core could not build the datasets: {error}") from None


def _check_splits_have_documents(core, documents: list[int]) -> None:
    """Every split with a share must get documents of every blended dataset: megatron-core
    asserts without a message on an empty one, or loops forever when samples are asked of it.
    Its rule: split i of a dataset of N documents is documents [round(b0 * N), round(b1 * N))."""
    for prefix, count in zip(core.blend[0], documents):
        for name, bookends in zip(SPLITS, core.split_matrix):
            if bookends is None:
                continue
            begin, end = (int(round(b * float(count))) for b in bookends)
            if end <= begin:
                raise DataError(f"dataset.split: {core.split!r} leaves none of the {count} "
                                f"documents of {prefix} for the {name} split; give it a larger "
                                f"share, or 0 to have no {name} split")
