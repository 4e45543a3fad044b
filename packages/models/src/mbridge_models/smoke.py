"""Train a tiny megatron-core GPT for a few steps: the end-to-end check that the stack works here.

Real megatron-core pieces throughout: parallel_state, GPTModel (local layer spec),
DistributedDataParallel with the distributed optimizer, the Megatron Adam optimizer with grad
clipping, and the forward/backward schedule (pipelined when pipeline_parallel > 1). On a machine
without CUDA it runs on the CPU over gloo through ``mbridge_models.runtime``; with CUDA the
runtime stays inert and everything runs on the GPU over NCCL.

The data is a deterministic "next token = (3 * token + 1) mod vocab" sequence, so a working
stack drives the loss down quickly and a broken one does not.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
from mbridge_config.launch import detect

from mbridge_models import runtime


@dataclass
class SmokeResult:
    losses: list[float]  # one per step, averaged over micro-batches (last pipeline stage only)
    grad_norms: list[float]
    device: str
    seconds: float
    parameters: int  # on this rank
    notes: list[str] = field(default_factory=list)


def train_tiny_gpt(
    steps: int = 5,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 4,
    vocab_size: int = 128,
    seq_length: int = 32,
    micro_batch_size: int = 2,
    num_microbatches: int = 2,
    lr: float = 3e-3,
    bf16: bool = False,
    seed: int = 1234,
    on_step: Callable[[int, float | None, float], None] | None = None,
) -> SmokeResult:
    """Build and train the tiny model; initialises a 1-rank process group if none exists.

    ``on_step(step, loss, grad_norm)`` is called after every step (loss is None off the last
    pipeline stage).
    """
    from megatron.core import parallel_state
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
    from megatron.core.transformer import TransformerConfig
    from megatron.core.transformer.module import Float16Module

    start = time.perf_counter()
    on_cpu = runtime.activate()
    device = torch.device("cpu") if on_cpu else torch.device("cuda", torch.cuda.current_device())
    _ensure_process_group(on_cpu)
    owns_parallel_state = not parallel_state.model_parallel_is_initialized()
    if owns_parallel_state:
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=tensor_parallel,
            pipeline_model_parallel_size=pipeline_parallel,
        )
    try:
        torch.manual_seed(seed)
        model_parallel_cuda_manual_seed(seed)
        dtype = torch.bfloat16 if bf16 else torch.float32
        config = TransformerConfig(
            num_layers=num_layers,
            hidden_size=hidden_size,
            num_attention_heads=num_heads,
            tensor_model_parallel_size=tensor_parallel,
            pipeline_model_parallel_size=pipeline_parallel,
            pipeline_dtype=dtype,
            params_dtype=dtype,
            bf16=bf16,
            use_cpu_initialization=True,
            hidden_dropout=0.0,
            attention_dropout=0.0,
        )
        model = GPTModel(
            config=config,
            transformer_layer_spec=get_gpt_layer_local_spec(),
            vocab_size=vocab_size,
            max_sequence_length=seq_length,
            pre_process=parallel_state.is_pipeline_first_stage(),
            post_process=parallel_state.is_pipeline_last_stage(),
        ).to(device)
        if bf16:
            model = Float16Module(config, model)
        ddp_config = DistributedDataParallelConfig(
            use_distributed_optimizer=True, grad_reduce_in_fp32=True
        )
        model = DistributedDataParallel(config, ddp_config, model)
        optimizer = get_megatron_optimizer(
            OptimizerConfig(
                optimizer="adam", lr=lr, clip_grad=1.0, bf16=bf16,
                params_dtype=dtype, use_distributed_optimizer=True,
            ),
            [model],
        )
        forward_backward = get_forward_backward_func()
        batches = _pattern_batches(micro_batch_size, seq_length, vocab_size, device, seed)

        def forward_step(data_iterator, model):
            tokens, labels, position_ids = next(data_iterator)
            output = model(tokens, position_ids, None, labels=labels)

            def loss_func(per_token_loss):
                loss = per_token_loss.float().mean()
                # A copy: the schedule divides the returned loss by num_microbatches in place.
                return loss, {"lm loss": loss.detach().clone()}

            return output, loss_func

        losses, grad_norms = [], []
        for _ in range(steps):
            model.zero_grad_buffer()
            optimizer.zero_grad()
            reduced = forward_backward(
                forward_step_func=forward_step,
                data_iterator=batches,
                model=[model],
                num_microbatches=num_microbatches,
                seq_length=seq_length,
                micro_batch_size=micro_batch_size,
                forward_only=False,
            )
            _, grad_norm, _ = optimizer.step()
            loss = None
            if reduced:  # empty on every stage but the last
                loss = float(sum(r["lm loss"] for r in reduced) / len(reduced))
                losses.append(loss)
            grad_norms.append(float(grad_norm))
            if on_step is not None:
                on_step(len(grad_norms), loss, float(grad_norm))
        parameters = sum(p.numel() for p in model.parameters())
        return SmokeResult(losses, grad_norms, str(device), time.perf_counter() - start, parameters)
    finally:
        if owns_parallel_state:
            parallel_state.destroy_model_parallel()


def _pattern_batches(batch, seq_length, vocab_size, device, seed):
    """Endless micro-batches of sequences following next = (3 * token + 1) mod vocab."""
    generator = torch.Generator().manual_seed(seed)
    position_ids = torch.arange(seq_length, device=device).unsqueeze(0).expand(batch, -1)
    while True:
        first = torch.randint(0, vocab_size, (batch, 1), generator=generator)
        steps = [first]
        for _ in range(seq_length):
            steps.append((3 * steps[-1] + 1) % vocab_size)
        sequence = torch.cat(steps, dim=1).to(device)
        yield sequence[:, :-1], sequence[:, 1:], position_ids


def _ensure_process_group(on_cpu: bool) -> None:
    if dist.is_initialized():
        return
    launch = detect()  # torchrun's or SLURM's variables, or a lone process
    if launch.master_port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            launch = dataclasses.replace(launch, master_port=s.getsockname()[1])
    launch.export()
    if not on_cpu:
        torch.cuda.set_device(launch.local_rank)
    dist.init_process_group("gloo" if on_cpu else "nccl", rank=launch.rank,
                            world_size=launch.world_size)
