"""``checkpoint.async_save``: a save's file writes run in megatron-core's background worker while
training goes on.

The worker must not see weights the next optimizer step changes, so the tensors are staged
first. megatron stages to pinned host memory while training waits (~1 GB/s for a fresh pinned
buffer: 20 s for the 1B recipe's 17 GB); on a GPU with room for a second copy mbridge instead
snapshots them on the device (a device-to-device copy, ~13 ms for those 17 GB on an H200) and the
worker copies the snapshot to the host, writes it and computes the checksums of what it wrote
(``checksums.record_written``), so finalizing reads no shard again. The training process still
pays megatron's planning of the save: ~0.27 s for the 1B recipe on an H200, 0.14 s when
``ckpt_assume_constant_structure`` reuses the plan (measured).

A save is finished only when every rank's worker is done: then, in the finalize step
(collective, taken by the loop between steps), megatron writes the checkpoint's metadata and
mbridge moves the tracker to it. So a restart never sees a save whose write is still running,
and the next save, the end of training or an exit waits for the previous one first.

The worker: on a GPU, megatron-core's persistent worker (one spawned process per rank for the
whole run, ``checkpoint.use_persistent_ckpt_worker``); on the CPU runtime, a process forked per
save (a spawned worker would lose the CPU runtime's CUDA stand-ins). A write that fails in the
background stops the run with one CheckpointWriteError line naming the iteration and the rank.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import queue
from collections import deque
from dataclasses import dataclass
from typing import Callable

import torch

from mbridge_config.errors import MBridgeError


@dataclass
class _Pending:
    call: int
    iteration: int
    directory: str
    snapshot: list | None = None
    """The device copies the worker reads (through CUDA IPC): alive until finalized."""


_queue = None  # megatron's AsyncCallsQueue, created by the first async save of the process
_pending: deque[_Pending] = deque()


def persistent_worker(ckpt) -> bool:
    return bool(ckpt.use_persistent_ckpt_worker) and torch.cuda.is_available()


def prepare_results_queue(persistent: bool) -> None:
    """The queue the worker hands its write results back through must cross processes: a
    Manager queue (spawned for the persistent worker, forked on the CPU runtime), made once."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    current = filesystem_async._results_queue
    if current is not None and not isinstance(current, queue.Queue):
        return
    from multiprocessing.managers import SyncManager

    from mbridge_train.die_with_parent import die_with_parent

    manager = SyncManager(ctx=multiprocessing.get_context("spawn" if persistent else "fork"))
    manager.start(initializer=die_with_parent)
    filesystem_async._results_queue = manager.Queue()


def schedule(request, iteration: int, directory: str, finalize: Callable[[], None],
             persistent: bool) -> None:
    """Hand ``request`` (what ``dist_checkpointing.save(..., async_sharded_save=True)``
    returned) to the worker; ``finalize`` runs on every rank once all ranks' writes are done."""
    from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

    global _queue
    if _queue is None:
        _queue = AsyncCallsQueue(persistent=persistent)
    request.add_finalize_fn(finalize)
    snapshot = None
    if persistent and request.preload_fn is not None:
        request, snapshot = _snapshot_on_device(request)
    if snapshot is None and request.async_fn is not None:  # staged by megatron (or on a CPU)
        hashed = functools.partial(write_and_hash, request.async_fn, stage=False,
                                   parent=os.getpid())
        request = request._replace(async_fn=hashed)
    call = _queue.schedule_async_request(request)
    _pending.append(_Pending(call, iteration, directory, snapshot))


# megatron's persistent-worker request: async_fn(rank, write_buckets, results_queue), where a
# write bucket is (file, storage key, (bytes items, [(write item, tensor), ...])).
_BUCKETS = 1
_HEADROOM = 2 << 30  # bytes of device memory left free after the snapshot


def _snapshot_on_device(request):
    """``request`` writing device copies of its tensors, staged to the host by the worker
    (no ``preload_fn`` for training to wait on); unchanged when the copies would not fit."""
    args = list(request.async_fn_args)
    buckets = args[_BUCKETS]
    needed = sum(t.numel() * t.element_size() for _, _, (_, tensors) in buckets
                 for _, t in tensors if t.is_cuda)
    free, _ = torch.cuda.mem_get_info()
    if needed + _HEADROOM > free:
        return request, None
    snapshot = [(name, key, (items, [(item, t.detach().clone() if t.is_cuda else t)
                                     for item, t in tensors]))
                for name, key, (items, tensors) in buckets]
    torch.cuda.current_stream().synchronize()  # the worker reads the copies from another process
    args[_BUCKETS] = snapshot
    staged = functools.partial(write_and_hash, request.async_fn, stage=True, parent=os.getpid())
    return request._replace(async_fn=staged, async_fn_args=tuple(args), preload_fn=None), snapshot


def write_and_hash(write, rank, buckets, results_queue, *, stage: bool, parent: int):
    """In the worker: (``stage``) the device snapshot to host memory, then megatron's write,
    then the written files' checksums (``checksums.record_written``), so finalizing the save
    in the training process reads nothing. Pageable copies: a one-off pinned buffer of this
    size costs more than it saves. A writer whose training process was killed stops: it would
    otherwise go on filling a folder the restart cleans up or saves into again."""
    from mbridge_train import checksums
    from mbridge_train.die_with_parent import die_with_parent

    die_with_parent(parent)
    paths = [name for name, _, _ in buckets]
    if stage:
        buckets = [(name, key, (items, [(item, t.to("cpu")) for item, t in tensors]))
                   for name, key, (items, tensors) in buckets]
    write(rank, buckets, results_queue)
    del buckets
    checksums.record_written(paths, rank)


def finalize_finished(blocking: bool = False) -> list[int]:
    """Finalize the saves whose writes are done on every rank (all of them when ``blocking``);
    returns their iterations. Collective: every rank calls it at the same point."""
    if _queue is None or not _pending:
        return []
    from torch.distributed.checkpoint.api import CheckpointException  # a BaseException

    try:
        done = _queue.maybe_finalize_async_calls(blocking=blocking)
    except (Exception, CheckpointException) as error:  # noqa: BLE001 - one line instead
        failed = _pending[0]
        cause = _shared_cause(error)
        _abandon()
        raise CheckpointWriteError(f"{failed.directory}: the background save of iteration "
                                   f"{failed.iteration} failed on {cause}; the tracker still "
                                   "names the previous checkpoint") from None
    finished = []
    while _pending and _pending[0].call in done:
        finished.append(_pending.popleft().iteration)
    return finished


def wait() -> list[int]:
    """Block until every pending save is finished (collective)."""
    return finalize_finished(blocking=True)


def abort() -> None:
    """After a failure elsewhere: stop the worker without finalizing (finalizing is collective
    and the other ranks may be gone); an unfinalized save is never named by the tracker."""
    _abandon()


def _abandon() -> None:
    global _queue
    if _queue is not None:
        try:
            _queue.close(abort=True)
        except Exception:  # noqa: BLE001 - the worker may already be gone
            pass
    _queue = None
    _pending.clear()


class CheckpointWriteError(MBridgeError, RuntimeError):
    """A background checkpoint write failed."""


def _shared_cause(error: BaseException) -> str:
    """'rank R (Type: message)' of the first failing rank, the same on every rank: torch's
    CheckpointException lists the failures (rank -> (exception, traceback)) on the rank that
    gathered them, so that rank's reading is broadcast (every rank raised in the same
    finalize, so every rank is here)."""
    failures = getattr(error, "failures", None)
    if isinstance(failures, dict) and failures:
        rank = min(failures)
        cause = failures[rank]
        cause = cause[0] if isinstance(cause, tuple) else cause
        text = f"rank {rank} ({type(cause).__name__}: {_line(cause)})"
    else:
        text = f"rank {_rank()} ({type(error).__name__}: {_line(error)})"
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return text
    texts = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(texts, (bool(failures), text))
    known = [t for listed, t in texts if listed]
    return known[0] if known else text


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
