"""Dataset and dataloader configs: pretraining (GPT), fine-tuning, packing, mock data.

Plain dataclasses: mbridge-data turns them into megatron-core's dataset builders, so this module
stays free of dataset code. ``blend`` and ``blend_weights`` are separate lists, as in the Megatron
Bridge API (NeMo 2.0 zipped them as ["30", "path1", "70", "path2"]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(kw_only=True)
class DataloaderConfig:
    """Options of the torch DataLoader built for a dataset."""

    dataloader_type: Literal["single", "cyclic", "external"] | None = "single"
    """single: each sample once per epoch in order of the sampler; cyclic: endless reshuffled."""
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = False
    data_sharding: bool = True
    """Shard the sampler by data-parallel rank (each rank reads only its own samples)."""


@dataclass(kw_only=True)
class GPTDatasetConfig(DataloaderConfig):
    """Pretraining data from megatron-core indexed datasets (``.bin``/``.idx`` path prefixes)."""

    sequence_length: int
    blend: list[str] | None = None
    """Path prefixes of the datasets to draw from (train/valid/test split by ``split``)."""
    blend_weights: list[float] | None = None
    """Relative weight of each ``blend`` entry (None: proportional to size)."""
    blend_per_split: list[list[str] | None] | None = None
    """Separate [train, valid, test] path lists instead of one blend split by ``split``."""
    blend_weights_per_split: list[list[float] | None] | None = None
    split: str | None = "949,50,1"
    """Train/valid/test proportions of each blend entry, e.g. "949,50,1"."""
    random_seed: int = 1234
    reset_position_ids: bool = False
    reset_attention_mask: bool = False
    eod_mask_loss: bool = False
    create_attention_mask: bool = False
    """Build a [1, s, s] mask per sample. Only needed with ``reset_attention_mask`` (masking
    across documents); a plain causal mask is what the model applies anyway, and passing one
    keeps SDPA off its fastest (flash) kernels."""
    path_to_cache: str | None = None
    """Where index files (shuffle, sample, document indices) are cached and reused."""
    mmap_bin_files: bool = True
    num_dataset_builder_threads: int = 1


@dataclass(kw_only=True)
class MockGPTDatasetConfig(GPTDatasetConfig):
    """Synthetic token sequences of ``sequence_length`` (no files): for tests and benchmarks."""

    blend: None = None
    blend_per_split: None = None


@dataclass(kw_only=True)
class PackedSequenceSpecs:
    """Offline packing of fine-tuning samples into sequences of ``packed_sequence_size``."""

    packed_sequence_size: int = -1
    """Tokens per pack; a positive value turns packing on."""
    tokenizer_model_name: str | None = None
    """Names the packed files, so packs made with another tokenizer are not reused."""
    packed_train_data_path: str | None = None
    packed_val_data_path: str | None = None
    packed_metadata_path: str | None = None
    pad_cu_seqlens: bool = False
    """Pad cu_seqlens to a constant length (needed for CUDA graphs)."""
    pad_seq_to_mult: int | None = 1
    """Pad each sequence to a multiple of this (context parallelism needs 2 x CP)."""


@dataclass(kw_only=True)
class FinetuningDatasetConfig(DataloaderConfig):
    """Fine-tuning data: ``dataset_root`` holding training.jsonl / validation.jsonl / test.jsonl."""

    dataset_root: str | None = None
    seq_length: int
    dataloader_type: Literal["single", "cyclic", "external"] | None = "cyclic"
    """cyclic (default here): a fine-tune runs for train_iters over as many reshuffled epochs of
    the training split as that takes; single: one ordered pass, which must be long enough."""
    seed: int = 1234
    memmap_workers: int = 1
    max_train_samples: int | None = None
    packed_sequence_specs: PackedSequenceSpecs | None = None
    dataset_kwargs: dict[str, Any] | None = field(default=None)
    """Extra options for the dataset (prompt template, truncation field, ...)."""
    do_validation: bool = True
    do_test: bool = True

    @property
    def packed(self) -> bool:
        specs = self.packed_sequence_specs
        return specs is not None and specs.packed_sequence_size > 0
