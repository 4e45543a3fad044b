"""Process-group start-up: torchrun's or SLURM's environment, a lone process; CPU ranks over gloo."""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket

import torch
from mbridge_config.launch import LaunchEnv, detect

from mbridge_models import runtime


def initialize_distributed(dist_config=None, launch: LaunchEnv | None = None) -> torch.device:
    """Start torch.distributed (if not yet) and return this rank's device.

    Rank, world size and rank 0's address come from ``launch`` or, by default, from the
    launcher's environment (torchrun, SLURM srun, or none: see mbridge_config.launch); they are
    written back as the torchrun variables, so a SLURM launch looks like torchrun to the rest.
    Without CUDA, mbridge's CPU runtime is activated and gloo is used, whatever the config
    asks for, so the same script runs on a laptop.
    """
    on_cpu = runtime.activate()
    if not torch.distributed.is_initialized():
        launch = launch or detect()
        if launch.master_port is None:
            launch = dataclasses.replace(launch, master_port=_free_port())
        launch.export()
        backend = "gloo" if on_cpu else getattr(dist_config, "distributed_backend", "nccl")
        timeout = datetime.timedelta(minutes=getattr(dist_config, "distributed_timeout_minutes",
                                                     10) or 10)
        if not on_cpu:
            torch.cuda.set_device(launch.local_rank)
        torch.distributed.init_process_group(
            backend, rank=launch.rank, world_size=launch.world_size, timeout=timeout,
            store=_attempt_store(launch, timeout))
    return runtime.training_device()


def _attempt_store(launch: LaunchEnv, timeout: datetime.timedelta):
    """Under torchrun, the store with a key prefix of this attempt (``TORCHELASTIC_RESTART_COUNT``);
    None elsewhere (torch's env:// start). A restarted job (``--max-restarts``) reuses its
    agent's store, where the previous attempt's keys remain: without the prefix the new ranks
    read the dead ranks' addresses and the gloo (or NCCL) start fails."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if attempt is None:
        return None
    store, _, _ = next(torch.distributed.rendezvous(
        "env://", rank=launch.rank, world_size=launch.world_size, timeout=timeout))
    return torch.distributed.PrefixStore(f"mbridge/attempt_{attempt}/", store)


def world_size() -> int:
    """The started process group's size, else the one the launcher describes (for checks that
    run before the process group starts)."""
    if torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return detect().world_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_last_rank_logger() -> bool:
    """The rank that prints: last pipeline stage, first tensor/context/data-parallel rank."""
    from megatron.core import parallel_state as ps

    return (ps.is_pipeline_last_stage(ignore_virtual=True)
            and ps.get_tensor_model_parallel_rank() == 0
            and ps.get_data_parallel_rank(with_context_parallel=True) == 0)


def destroy_process_group() -> None:
    """End torch.distributed if it was started (for the process that owns it, e.g. the CLI,
    once pretrain/finetune have returned: they leave the process group to their caller)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
