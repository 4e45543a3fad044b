"""Whole training loop, Llama-style ~1B model: mbridge's pretrain() beside plain megatron-core.

    PYTHONPATH=/tmp/site python3 benchmarks/train_loop.py --out benchmarks/results [--tiny]

One process, one GPU, the same architecture and batch for every row (bf16, distributed optimizer,
grad clipping, seq 2048, micro-batch 4, one micro-batch per step):

- ``megatron-core``: what a megatron-core user writes without Transformer Engine: GPTModel with
  megatron's local layer spec, DDP, get_megatron_optimizer, OptimizerParamScheduler and
  get_forward_backward_func driven by a minimal loop; the loss is the model's own vocab-parallel
  cross entropy (labels passed to GPTModel).
- ``megatron-core + mbridge spec``: the same minimal loop with mbridge's local layer spec (SDPA
  attention), to separate the layer spec from the rest.
- ``mbridge pretrain``: ``mbridge.training.pretrain(cfg, forward_step)`` with a ConfigContainer
  (MockGPTDatasetConfig, ``mixed_precision="bf16_mixed"``) and the stock GPT step (logits to the
  fused masked-token-loss kernel): data loading, logging, the scheduler, everything included.

Step time is wall clock per optimizer step (synchronised every step: the loss is read back);
warm-up steps are dropped. TFLOP/s = mbridge_models.counting.flops_per_token (6 x active
parameters incl. the output layer, causal attention) x tokens / step time, the same accounting
for every row; MFU against the bf16 8192^3 matmul rate measured in the same run.
Writes <out>/train_loop-<device>.json and .md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from llama_bench import (LLAMA_1B, TINY, add_row, init_single_rank, matmul_tflops,
                         per_token_loss_step, provider_for, random_batches, run_result,
                         step_stats, sync, write_results)

from mbridge_models import runtime

def _reset_memory() -> None:
    """Free the previous row's model and optimizer (megatron's DDP hooks form reference cycles,
    so they outlive their function until a collection) before the next peak is measured."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def plain_megatron(shape: dict, spec: str, micro_batch: int, steps: int, warmup: int) -> dict:
    """The minimal megatron-core loop (no mbridge training code)."""
    from megatron.core import parallel_state
    from megatron.core.distributed import (DistributedDataParallel,
                                           DistributedDataParallelConfig, finalize_model_grads)
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed
    from megatron.core.transformer.module import Float16Module

    _reset_memory()
    config = provider_for(shape, "mbridge_local")  # a TransformerConfig; the spec is chosen below
    config.finalize()
    parallel_state.initialize_model_parallel()
    torch.manual_seed(1234)
    model_parallel_cuda_manual_seed(1234)
    try:
        layer_spec = (get_gpt_layer_local_spec(normalization="RMSNorm") if spec == "local"
                      else config.layer_spec())
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        model = GPTModel(config=config, transformer_layer_spec=layer_spec,
                         vocab_size=config.padded_vocab_size(),
                         max_sequence_length=shape["seq_length"], position_embedding_type="rope",
                         rotary_base=500000, share_embeddings_and_output_weights=False).to(device)
        if config.bf16:
            model = Float16Module(config, model)
        ddp = DistributedDataParallelConfig(use_distributed_optimizer=True,
                                            grad_reduce_in_fp32=True)
        model = [DistributedDataParallel(config, ddp, model)]
        optimizer = get_megatron_optimizer(
            OptimizerConfig(optimizer="adam", lr=3e-4, min_lr=3e-5, weight_decay=0.1,
                            clip_grad=1.0, bf16=config.bf16, params_dtype=config.params_dtype,
                            use_distributed_optimizer=True), model)
        scheduler = OptimizerParamScheduler(
            optimizer, init_lr=0.0, max_lr=3e-4, min_lr=3e-5, lr_warmup_steps=micro_batch,
            lr_decay_steps=(steps + warmup) * micro_batch, lr_decay_style="cosine",
            start_wd=0.1, end_wd=0.1, wd_incr_steps=(steps + warmup) * micro_batch,
            wd_incr_style="constant")
        config.grad_scale_func = optimizer.scale_loss
        config.finalize_model_grads_func = finalize_model_grads

        data, times = random_batches(shape, micro_batch, device), []
        forward_backward = get_forward_backward_func()
        for step in range(warmup + steps):
            sync()
            start = time.perf_counter()
            model[0].zero_grad_buffer()
            optimizer.zero_grad()
            reduced = forward_backward(
                forward_step_func=per_token_loss_step, data_iterator=data, model=model,
                num_microbatches=1, seq_length=shape["seq_length"],
                micro_batch_size=micro_batch, forward_only=False)
            optimizer.step()
            scheduler.step(increment=micro_batch)
            float(reduced[0]["lm loss"])
            sync()
            if step >= warmup:
                times.append(time.perf_counter() - start)
        return _row(f"megatron-core{' + mbridge spec' if spec == 'local' else ''}", config,
                    times, micro_batch)
    finally:
        parallel_state.destroy_model_parallel()


def mbridge_pretrain(shape: dict, micro_batch: int, steps: int, warmup: int) -> dict:
    from mbridge.training import pretrain
    from mbridge.training.config import (ConfigContainer, LoggerConfig, MockGPTDatasetConfig,
                                         OptimizerConfig, SchedulerConfig, TrainingConfig)
    from mbridge.training.gpt_step import forward_step

    _reset_memory()
    provider = provider_for(shape, "mbridge_local")
    on_gpu = torch.cuda.is_available()
    cfg = ConfigContainer(
        model=provider,
        train=TrainingConfig(micro_batch_size=micro_batch, global_batch_size=micro_batch,
                             train_iters=warmup + steps, eval_interval=None, eval_iters=0),
        optimizer=OptimizerConfig(optimizer="adam", lr=3e-4, min_lr=3e-5, weight_decay=0.1,
                                  clip_grad=1.0, use_distributed_optimizer=True),
        scheduler=SchedulerConfig(lr_decay_style="cosine", lr_warmup_iters=1),
        dataset=MockGPTDatasetConfig(sequence_length=shape["seq_length"], num_workers=2,
                                     split="1,0,0"),
        logger=LoggerConfig(log_interval=1),
        mixed_precision="bf16_mixed" if on_gpu else None)
    cfg.ddp.grad_reduce_in_fp32 = True
    run = pretrain(cfg, forward_step)
    times = [h["step_time_s"] for h in run.history if "split" not in h][warmup:]
    return _row("mbridge pretrain", cfg.model, times, micro_batch)


def _row(name: str, provider, times: list[float], micro_batch: int) -> dict:
    from mbridge_models.counting import flops_per_token

    tokens = micro_batch * provider.seq_length
    stats = step_stats(times)
    median = stats["step_ms_median"] / 1e3
    return {"name": name, **stats, "tokens_per_step": tokens, "tokens_per_s": tokens / median,
            "model_tflops": flops_per_token(provider) * tokens / median / 1e12,
            "peak_memory_gib": _peak_gib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--tiny", action="store_true", help="small model, few steps (smoke)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--rows", default="megatron-core,megatron-core+spec,mbridge")
    args = parser.parse_args()

    runtime.activate()
    init_single_rank(29534)
    shape = TINY if args.tiny else LLAMA_1B
    rate = matmul_tflops()
    rows = []
    for name in args.rows.split(","):
        print(f"[train_loop] {name}: {args.warmup}+{args.steps} steps", flush=True)
        if name == "mbridge":
            row = mbridge_pretrain(shape, args.micro_batch, args.steps, args.warmup)
        else:
            spec = "mbridge_local" if name.endswith("+spec") else "local"
            row = plain_megatron(shape, spec, args.micro_batch, args.steps, args.warmup)
        add_row(rows, row, rate, "train_loop", row["name"])
    result = run_result(shape, args.micro_batch, rate, rows)
    write_results(Path(args.out), "train_loop", "Training loop, Llama-style model: mbridge vs "
                  "plain megatron-core", "loop", result, args.tiny)


if __name__ == "__main__":
    main()
