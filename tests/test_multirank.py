"""The multi-rank helper: results in rank order, every failure named with its traceback."""

import os
import time

import pytest
import torch
import torch.distributed as dist

from multirank import RankFailure, run_ranks

pytestmark = pytest.mark.multiproc


def _all_reduce_rank(rank, world_size, offset):
    t = torch.tensor([float(rank + offset)])
    dist.all_reduce(t)
    return rank, world_size, float(t)


def test_results_come_back_in_rank_order():
    assert run_ranks(_all_reduce_rank, 3, 10.0) == [(r, 3, 33.0) for r in range(3)]


def _rank_one_raises(rank, world_size):
    if rank == 1:
        raise ValueError("bad shard on rank one")
    return rank


def test_a_raising_rank_is_reported_with_its_traceback():
    with pytest.raises(RankFailure) as info:
        run_ranks(_rank_one_raises, 2)
    message = str(info.value)
    assert "1 of 2 ranks failed" in message
    assert "--- rank 1 (raised) ---" in message and "rank 0" not in message
    assert "ValueError: bad shard on rank one" in message and "_rank_one_raises" in message


def _rank_zero_dies(rank, world_size):
    if rank == 0:
        os._exit(3)
    return rank


def test_a_dying_rank_is_reported_with_its_exit_code():
    with pytest.raises(RankFailure, match=r"rank 0 \(died\) ---\nexited with code 3"):
        run_ranks(_rank_zero_dies, 2)


def _rank_one_fails_then_rank_zero_waits(rank, world_size):
    if rank == 1:
        raise RuntimeError("rank one gives up")
    dist.barrier()  # never completes: rank 1 is gone
    return rank


def test_ranks_left_waiting_on_a_failed_peer_are_stopped():
    started = time.monotonic()
    with pytest.raises(RankFailure) as info:
        run_ranks(_rank_one_fails_then_rank_zero_waits, 2, timeout=120)
    assert time.monotonic() - started < 60
    assert "rank one gives up" in str(info.value)
    assert "2 of 2 ranks failed" in str(info.value)


def _sleep_forever(rank, world_size):
    time.sleep(1000)


def test_a_hung_run_is_stopped_at_the_time_limit():
    with pytest.raises(RankFailure, match=r"rank 0 \(hung\)"):
        run_ranks(_sleep_forever, 1, timeout=2)
