"""Staying correct and stopping cleanly: the exit-signal handler, a collective stop decision
and the data-parallel weight-hash check.

Each decision here is taken by every rank together (a gather or an all-reduce), so all ranks
stop, save or fail at the same step; a rank deciding alone would leave the others waiting in
the next collective.
"""

from __future__ import annotations

import hashlib
import signal

import torch


class ExitSignal:
    """``train.exit_signal_handler``: catch ``train.exit_signal`` (default SIGTERM, what SLURM
    sends before preemption) and report it at the end of the step, on every rank at once."""

    def __init__(self, train_cfg):
        self.handler = None
        self.signal = None
        if train_cfg.exit_signal_handler:
            from megatron.training.dist_signal_handler import DistributedSignalHandler

            self.signal = signal.Signals(train_cfg.exit_signal)
            self.handler = DistributedSignalHandler(self.signal).__enter__()

    def received(self) -> bool:
        """True on every rank when any rank caught the signal (gathers over the world)."""
        return self.handler is not None and any(self.handler.signals_received())

    def release(self) -> None:
        if self.handler is not None:
            self.handler.release()
            self.handler = None


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any rank."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=collective_device(None))
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def collective_device(group) -> torch.device:
    if torch.distributed.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class WeightMismatchError(RuntimeError):
    """Data-parallel replicas hold different weights."""


def check_weight_hashes(model: list, step: int) -> None:
    """``train.check_weight_hash_across_dp_replicas_interval``: hash every parameter on each
    data-parallel rank and raise WeightMismatchError on every rank, naming the first parameter
    (in module order) whose bytes differ and the ranks holding each version. Expert parameters
    are compared over the expert data-parallel group, the rest over the data-parallel group.

    The hashes are computed on the host, so each parameter is copied off the device once: meant
    for an interval of hundreds of steps, not every step."""
    from megatron.core import parallel_state as ps

    dense, expert = [], []
    for chunk_index, chunk in enumerate(model):
        for name, param in chunk.named_parameters():
            entry = (chunk_index, name.removeprefix("module."), _digest(param))
            (dense if getattr(param, "allreduce", True) else expert).append(entry)
    groups = [(dense, ps.get_data_parallel_group())]
    if expert:
        groups.append((expert, ps.get_expert_data_parallel_group()))
    for entries, group in groups:
        if torch.distributed.get_world_size(group) == 1:
            continue
        local = torch.stack([digest for _, _, digest in entries]).to(collective_device(group))
        gathered = [torch.empty_like(local) for _ in range(torch.distributed.get_world_size(group))]
        torch.distributed.all_gather(gathered, local, group=group)
        gathered = [g.cpu() for g in gathered]
        ranks = torch.distributed.get_process_group_ranks(group)
        for index, (chunk_index, name, _) in enumerate(entries):
            versions: dict[bytes, list[int]] = {}
            for rank, hashes in zip(ranks, gathered):
                versions.setdefault(bytes(hashes[index].tolist()), []).append(rank)
            if len(versions) > 1:
                holders = "; ".join(f"ranks {r}" if len(r) > 1 else f"rank {r[0]}"
                                    for r in (sorted(v) for v in versions.values()))
                where = f" (model chunk {chunk_index})" if len(model) > 1 else ""
                raise WeightMismatchError(
                    f"weight hash check at step {step}: parameter '{name}'{where} differs "
                    f"between data-parallel replicas ({len(versions)} versions: {holders})")


def _digest(param: torch.Tensor) -> torch.Tensor:
    raw = param.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy()
    return torch.frombuffer(bytearray(hashlib.sha256(raw).digest()), dtype=torch.uint8)
