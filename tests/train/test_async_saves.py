"""checkpoint.async_save on CPU ranks: the write runs while training goes on, the tracker moves
only when it finished, and a write that fails in the background stops the run with one line
naming the iteration and the rank. (Exact resume with async saves: test_checkpointing.)"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from multirank import run_ranks

import tiny_run
from mbridge_train import checksums

pytestmark = pytest.mark.multiproc


@pytest.fixture(scope="module", autouse=True)
def _warm():
    tiny_run.preload()


def _patch_writer(body):
    """Replace megatron's per-item file write in this process; the forked writer inherits it."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    original = filesystem_async._write_item

    @functools.wraps(original)  # megatron inspects its signature
    def write_item(*args, **kwargs):
        body()
        return original(*args, **kwargs)

    filesystem_async._write_item = write_item


def _slow_write_run(rank, world, tmp):
    slowed = []

    def slow_first_write():
        if not slowed:
            slowed.append(True)
            time.sleep(3.0)

    _patch_writer(slow_first_write)
    cfg = tiny_run.config(train=dict(train_iters=4),
                          checkpoint=dict(save=tmp, save_interval=2, async_save=True))
    run, text = tiny_run.pretrain_captured(cfg)
    return text


def test_training_goes_on_while_the_write_runs_and_the_tracker_waits_for_it(tmp_path):
    (text,) = run_ranks(_slow_write_run, 1, str(tmp_path))
    lines = [line.strip() for line in text.splitlines()]
    started = lines.index(f"saving checkpoint {tmp_path}/iter_0000002 in the background")
    finished = lines.index(f"saved checkpoint {tmp_path}/iter_0000002")
    step3 = next(i for i, line in enumerate(lines) if line.startswith("iteration        3/"))
    assert started < step3 < finished  # step 3 ran during the 3 s write
    assert lines.index(f"saved checkpoint {tmp_path}/iter_0000004") > finished
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text().strip() == "4"
    for folder in ("iter_0000002", "iter_0000004"):  # the writer's checksums, merged
        assert (tmp_path / folder / "checksums.json").is_file()
        assert not list((tmp_path / folder).glob(".checksums.rank*"))
        assert checksums.verify(str(tmp_path / folder))[0] is None


def _failing_write_run(rank, world, tmp):
    from mbridge_train.async_saves import CheckpointWriteError
    from mbridge_train.checkpointing import read_tracker

    def full_disk():
        if rank == world - 1:
            raise OSError(28, "No space left on device")

    _patch_writer(full_disk)
    cfg = tiny_run.config(train=dict(train_iters=6),
                          checkpoint=dict(save=tmp, save_interval=2, async_save=True))
    try:
        tiny_run.pretrain_captured(cfg)
    except CheckpointWriteError as error:
        return dict(message=str(error), tracker=read_tracker(tmp))
    return dict(message=None)


def test_a_background_write_failure_stops_the_run_naming_iteration_and_rank(tmp_path):
    results = run_ranks(_failing_write_run, 2, str(tmp_path))
    for result in results:
        message = result["message"]
        assert message is not None and "\n" not in message
        assert "iteration 2" in message and "rank 1" in message, message
        assert "OSError" in message  # megatron's worker keeps only the exception's type
        assert result["tracker"] is None  # never moved to the failed save
    assert not os.path.exists(tmp_path / "iter_0000004")  # stopped at the failure


def _snapshot_run(rank, world, tmp):
    """Async saves at steps 2 and 4 (persistent worker, device snapshot on a GPU); the weights
    each save call saw, and those its checkpoint loads back."""
    import torch

    from mbridge_train import checkpointing, training

    seen = {}
    plain_save = training.save

    def recording_save(run):
        seen[run.state.train_state.step] = _weights(run.model)
        plain_save(run)

    training.save = recording_save
    cfg = tiny_run.config(train=dict(train_iters=4),
                          checkpoint=dict(save=tmp, save_interval=2, async_save=True))
    tiny_run.pretrain_captured(cfg)
    loaded = {}
    for step in (2, 4):
        cfg = tiny_run.config(train=dict(train_iters=4),
                              checkpoint=dict(load=tmp, ckpt_step=step))
        run = training.setup(cfg)
        loaded[step] = _weights(run.model)
        training.teardown()
    same = {step: all(torch.equal(seen[step][k], loaded[step][k]) for k in seen[step])
            for step in (2, 4)}
    return dict(same=same, differ=any(not torch.equal(seen[2][k], seen[4][k]) for k in seen[2]),
                snapshot=checkpointing.async_saves.persistent_worker(cfg.checkpoint))


def _weights(model) -> dict:
    return {f"{i}.{k}": v.detach().float().cpu().clone() for i, chunk in enumerate(model)
            for k, v in chunk.state_dict().items() if hasattr(v, "detach")}


_FRESH_PROCESS = """
import json, os, sys
sys.path[:0] = sys.argv[1:3]
from multirank import free_port
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0",
                  LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
import multiprocessing, test_async_saves
print(json.dumps(test_async_saves._snapshot_run(0, 1, sys.argv[3])), flush=True)
for child in multiprocessing.active_children():  # the checkpoint worker and its manager
    child.terminate()
os._exit(0)
"""


@pytest.mark.gpu
def test_persistent_worker_writes_the_weights_of_the_step_that_saved(tmp_path):
    # In a fresh process, as the one rank itself (no fork): this one has initialised CUDA
    # (the module's warm-up), and a forked rank cannot use CUDA after that.
    here = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(here), str(here.parent),
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["snapshot"]  # the persistent worker + device snapshot path ran
    assert result["differ"]  # training moved the weights between the saves
    assert result["same"] == {"2": True, "4": True}
