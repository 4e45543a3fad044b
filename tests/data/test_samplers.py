"""Samplers: every index once per epoch across data-parallel ranks; resuming at any
consumed_samples continues exactly where an uninterrupted run would be."""

from __future__ import annotations

from itertools import islice

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mbridge_data.loaders import build_dataloader, build_pretraining_data_loader
from mbridge_data.samplers import MegatronPretrainingRandomSampler, MegatronPretrainingSampler

shapes = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 12))  # mbs, dp, steps


def single(total, consumed, mbs, dp, rank, drop_last=True):
    return list(MegatronPretrainingSampler(total, consumed, mbs, rank, dp, drop_last))


def cyclic(total, consumed, mbs, dp, rank, sharding, seed=3):
    return MegatronPretrainingRandomSampler(None, total, consumed, mbs, rank, dp, sharding, seed)


@given(shapes, st.integers(0, 7))
def test_single_sampler_covers_each_index_once_across_ranks(shape, extra):
    mbs, dp, steps = shape
    total = mbs * dp * steps + extra % (mbs * dp)  # a partial last step is dropped
    per_rank = [single(total, 0, mbs, dp, r) for r in range(dp)]
    seen = [i for batches in per_rank for b in batches for i in b]
    assert sorted(seen) == list(range(mbs * dp * steps))
    assert all(len(b) == mbs for batches in per_rank for b in batches)
    # Step s of every rank together is one contiguous global batch.
    for s in range(steps):
        assert sorted(i for r in range(dp) for i in per_rank[r][s]) == list(
            range(s * mbs * dp, (s + 1) * mbs * dp))


@given(shapes, st.data())
def test_single_sampler_resumes_identically(shape, data):
    mbs, dp, steps = shape
    total = mbs * dp * steps
    done = data.draw(st.integers(0, steps - 1))
    for r in range(dp):
        assert single(total, done * mbs * dp, mbs, dp, r) == single(total, 0, mbs, dp, r)[done:]


@given(shapes, st.booleans(), st.integers(0, 2))
def test_cyclic_sampler_covers_each_index_once_per_epoch(shape, sharding, epoch):
    mbs, dp, steps = shape
    total = mbs * dp * steps
    per_rank = []
    for r in range(dp):
        batches = list(islice(iter(cyclic(total, 0, mbs, dp, r, sharding)), steps * (epoch + 1)))
        per_rank.append(batches[steps * epoch:])
    seen = [i for batches in per_rank for b in batches for i in b]
    assert sorted(seen) == list(range(total))
    if sharding:  # each rank reads only its own contiguous shard
        shard = total // dp
        for r, batches in enumerate(per_rank):
            assert all(r * shard <= i < (r + 1) * shard for b in batches for i in b)


@given(shapes, st.booleans(), st.data())
def test_cyclic_sampler_resumes_identically_across_epochs(shape, sharding, data):
    mbs, dp, steps = shape
    total = mbs * dp * steps + data.draw(st.integers(0, mbs * dp - 1))
    consumed_steps = data.draw(st.integers(0, 3 * steps))
    for r in range(dp):
        straight = list(islice(iter(cyclic(total, 0, mbs, dp, r, sharding)), consumed_steps + 5))
        resumed = list(islice(iter(cyclic(total, consumed_steps * mbs * dp, mbs, dp, r,
                                          sharding)), 5))
        assert resumed == straight[consumed_steps:]


def test_epochs_are_reshuffled_and_seeded():
    a = list(islice(iter(cyclic(64, 0, 4, 1, 0, False, seed=1)), 32))
    b = list(islice(iter(cyclic(64, 0, 4, 1, 0, False, seed=1)), 32))
    c = list(islice(iter(cyclic(64, 0, 4, 1, 0, False, seed=2)), 32))
    assert a == b and a != c and a[:16] != a[16:]


@pytest.mark.parametrize("args, message", [
    ((10, 10, 2, 0, 1), "leaves nothing"), ((10, 0, 2, 2, 2), "outside"),
    ((0, 0, 1, 0, 1), "no samples"), ((10, 0, 0, 0, 1), "must be >= 1"),
])
def test_sampler_arguments_are_checked(args, message):
    with pytest.raises(ValueError, match=message):
        MegatronPretrainingSampler(*args)
    with pytest.raises(ValueError, match="not a multiple"):
        MegatronPretrainingRandomSampler(None, 40, 6, 4, 0, 1)


class Squares(torch.utils.data.Dataset):
    def __len__(self):
        return 24

    def __getitem__(self, i):
        return {"x": torch.tensor(i * i)}


def test_dataloader_honours_the_config_and_resumes():
    from mbridge_config import GPTDatasetConfig

    cfg = GPTDatasetConfig(sequence_length=8, num_workers=2, persistent_workers=True,
                           pin_memory=True, dataloader_type="single")
    loader = build_dataloader(Squares(), cfg, micro_batch_size=3, consumed_samples=6,
                              data_parallel_rank=1, data_parallel_size=2)
    assert loader.num_workers == 2 and loader.persistent_workers
    assert loader.pin_memory == torch.cuda.is_available()
    xs = [b["x"].tolist() for b in loader]
    assert xs == [[i * i for i in range(s + 3, s + 6)] for s in range(6, 24, 6)]
    cfg.num_workers, cfg.dataloader_type = 0, "cyclic"
    loader = build_dataloader(Squares(), cfg, micro_batch_size=4)
    assert not loader.persistent_workers  # torch refuses it without worker processes
    assert len(list(islice(iter(loader), 20))) == 20  # endless
    assert build_pretraining_data_loader(None, 0, "single", 1, 0) is None
    assert build_pretraining_data_loader([1, 2], 0, "external", 1, 0) == [1, 2]
    with pytest.raises(ValueError, match="dataloader_type"):
        build_pretraining_data_loader(Squares(), 0, "batchy", 1, 0)
    import mbridge.data.samplers as shim

    assert shim.build_pretraining_data_loader is build_pretraining_data_loader
