"""torch DataLoaders over mbridge datasets with the data-parallel samplers.

``pin_memory`` applies only where CUDA exists (pinning is pointless on CPU and warns), and
``persistent_workers`` only with worker processes (torch refuses it otherwise), so one config
works on a laptop and on a GPU node.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mbridge_data.samplers import MegatronPretrainingRandomSampler, MegatronPretrainingSampler


def build_pretraining_data_loader(
    dataset,
    consumed_samples: int,
    dataloader_type: str | None,
    micro_batch_size: int,
    num_workers: int,
    data_sharding: bool = True,
    worker_init_fn: Callable | None = None,
    collate_fn: Callable | None = None,
    pin_memory: bool = True,
    persistent_workers: bool = False,
    data_parallel_rank: int = 0,
    data_parallel_size: int = 1,
    drop_last: bool = True,
    seed: int = 0,
):
    """A DataLoader yielding this rank's micro-batches from ``consumed_samples`` on.

    ``dataloader_type``: "single" (one ordered pass), "cyclic" (endless reshuffled epochs) or
    "external" (``dataset`` is already an iterable and is returned as is). None for no dataset.
    """
    if dataset is None:
        return None
    if dataloader_type == "external":
        return dataset
    if dataloader_type in (None, "single"):
        sampler = MegatronPretrainingSampler(len(dataset), consumed_samples, micro_batch_size,
                                             data_parallel_rank, data_parallel_size, drop_last)
    elif dataloader_type == "cyclic":
        sampler = MegatronPretrainingRandomSampler(
            dataset, len(dataset), consumed_samples, micro_batch_size, data_parallel_rank,
            data_parallel_size, data_sharding, seed)
    else:
        raise ValueError(f"dataset.dataloader_type: 'single', 'cyclic' or 'external', got "
                         f"{dataloader_type!r}")
    if collate_fn is None:
        collate_fn = getattr(dataset, "collate", None)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory and torch.cuda.is_available(),
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=collate_fn,
        worker_init_fn=worker_init_fn,
    )


def build_dataloader(dataset, cfg, micro_batch_size: int, consumed_samples: int = 0,
                     data_parallel_rank: int = 0, data_parallel_size: int = 1,
                     collate_fn: Callable | None = None, seed: int = 0):
    """``build_pretraining_data_loader`` with the options of a DataloaderConfig (any dataset
    config: GPTDatasetConfig, FinetuningDatasetConfig, ...)."""
    return build_pretraining_data_loader(
        dataset, consumed_samples, cfg.dataloader_type, micro_batch_size, cfg.num_workers,
        data_sharding=cfg.data_sharding, collate_fn=collate_fn, pin_memory=cfg.pin_memory,
        persistent_workers=cfg.persistent_workers, data_parallel_rank=data_parallel_rank,
        data_parallel_size=data_parallel_size, seed=seed,
    )
