"""Tokenizers, pretraining and fine-tuning datasets, sequence packing for mbridge.

Importing this package is cheap: the names below load their modules (and torch or megatron-core
where those need them) on first use, so ``mbridge data preprocess`` starts in well under a second.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "DataError": "mbridge_data.errors",
    "Tokenizer": "mbridge_data.tokenizers",
    "build_tokenizer": "mbridge_data.tokenizers",
    "preprocess": "mbridge_data.preprocess",
    "check_indexed_pair": "mbridge_data.indexed",
    "build_pretraining_datasets": "mbridge_data.pretraining",
    "build_finetuning_datasets": "mbridge_data.finetuning.builder",
    "SFTDataset": "mbridge_data.finetuning.dataset",
    "PackedDataset": "mbridge_data.packing.dataset",
    "first_fit_decreasing": "mbridge_data.packing.ffd",
    "MegatronPretrainingSampler": "mbridge_data.samplers",
    "MegatronPretrainingRandomSampler": "mbridge_data.samplers",
    "build_pretraining_data_loader": "mbridge_data.loaders",
    "build_dataloader": "mbridge_data.loaders",
    "build_corpus": "mbridge_data.corpus.pretraining",
    "load_corpus": "mbridge_data.corpus.pretraining",
    "write_instructions": "mbridge_data.corpus.instructions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mbridge_data' has no attribute {name!r}")
