"""Data-parallel batch samplers that resume exactly at ``consumed_samples``.

Both yield, per data-parallel rank, lists of ``micro_batch_size`` dataset indices. A global step
takes ``micro_batch_size x data_parallel_size`` samples, rank r getting the r-th slice, so the
ranks together read each sample of a step once. Restarting with the ``consumed_samples`` saved in
a checkpoint continues with the very next micro-batch, as if never stopped.

* ``MegatronPretrainingSampler`` ("single"): indices in order, one pass.
* ``MegatronPretrainingRandomSampler`` ("cyclic"): a fresh seeded permutation every epoch,
  endless. With ``data_sharding`` each rank permutes only its own contiguous shard of the data
  (better locality); without, one global permutation is dealt out across ranks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def _check(total: int, consumed: int, mbs: int, rank: int, size: int) -> None:
    if total <= 0:
        raise ValueError(f"no samples to draw from (total_samples={total})")
    if mbs <= 0 or size <= 0:
        raise ValueError(f"micro_batch_size ({mbs}) and data_parallel_size ({size}) must be >= 1")
    if not 0 <= rank < size:
        raise ValueError(f"data_parallel_rank {rank} is outside [0, {size})")
    if consumed < 0:
        raise ValueError(f"consumed_samples must be >= 0, got {consumed}")


class MegatronPretrainingSampler:
    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 data_parallel_rank: int = 0, data_parallel_size: int = 1,
                 drop_last: bool = True):
        _check(total_samples, consumed_samples, micro_batch_size, data_parallel_rank,
               data_parallel_size)
        if consumed_samples >= total_samples:
            raise ValueError(f"consumed_samples {consumed_samples} leaves nothing of "
                             f"{total_samples} samples")
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.data_parallel_rank = data_parallel_rank
        self.data_parallel_size = data_parallel_size
        self.drop_last = drop_last

    def __len__(self) -> int:
        return self.total_samples

    def __iter__(self) -> Iterator[list[int]]:
        step = self.micro_batch_size * self.data_parallel_size
        lo = self.data_parallel_rank * self.micro_batch_size
        for start in range(self.consumed_samples, self.total_samples, step):
            batch = list(range(start, min(start + step, self.total_samples)))
            if len(batch) < step and self.drop_last:
                return
            mine = batch[lo:lo + self.micro_batch_size]
            if mine:
                yield mine


class MegatronPretrainingRandomSampler:
    def __init__(self, dataset, total_samples: int, consumed_samples: int,
                 micro_batch_size: int, data_parallel_rank: int = 0,
                 data_parallel_size: int = 1, data_sharding: bool = True, seed: int = 0):
        _check(total_samples, consumed_samples, micro_batch_size, data_parallel_rank,
               data_parallel_size)
        step = micro_batch_size * data_parallel_size
        if total_samples < step:
            raise ValueError(f"{total_samples} samples do not fill one step of "
                             f"micro_batch_size x data_parallel_size = {step}")
        if consumed_samples % step:
            raise ValueError(f"consumed_samples {consumed_samples} is not a multiple of "
                             f"micro_batch_size x data_parallel_size = {step}")
        self.dataset = dataset
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.data_parallel_rank = data_parallel_rank
        self.data_parallel_size = data_parallel_size
        self.data_sharding = data_sharding
        self.seed = seed
        # The epoch covers whole steps only; the remainder is dropped (a different remainder
        # each epoch without sharding, since the permutation changes).
        self.samples_per_epoch = total_samples - total_samples % step

    def __len__(self) -> int:
        return self.total_samples

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This rank's indices for one epoch, in the order it reads them."""
        rng = np.random.default_rng([self.seed, epoch])
        mbs, size, rank = self.micro_batch_size, self.data_parallel_size, self.data_parallel_rank
        if self.data_sharding:
            shard = self.samples_per_epoch // size
            return rank * shard + rng.permutation(shard)
        order = rng.permutation(self.total_samples)[: self.samples_per_epoch]
        return order.reshape(-1, size, mbs)[:, rank, :].reshape(-1)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.consumed_samples, self.samples_per_epoch)
        start = offset // self.data_parallel_size
        while True:
            mine = self.epoch_indices(epoch)
            for at in range(start, len(mine), self.micro_batch_size):
                yield mine[at:at + self.micro_batch_size].tolist()
            epoch, start = epoch + 1, 0
