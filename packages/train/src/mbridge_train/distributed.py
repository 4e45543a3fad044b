"""Process-group start-up: torchrun's environment, a lone process, or CPU ranks over gloo."""

from __future__ import annotations

import datetime
import os
import socket

import torch

from mbridge_models import runtime


def initialize_distributed(dist_config=None) -> torch.device:
    """Start torch.distributed (if not yet) and return this rank's device.

    Without CUDA, mbridge's CPU runtime is activated and gloo is used, whatever the config
    asks for, so the same script runs on a laptop.
    """
    on_cpu = runtime.activate()
    if not torch.distributed.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            os.environ["MASTER_PORT"] = str(_free_port())
        backend = "gloo" if on_cpu else getattr(dist_config, "distributed_backend", "nccl")
        timeout = datetime.timedelta(minutes=getattr(dist_config, "distributed_timeout_minutes",
                                                     10) or 10)
        if not on_cpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(
            backend, rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)), timeout=timeout)
    return runtime.training_device()


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
