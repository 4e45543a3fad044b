"""Training step of a Llama-style ~1B model: our local layer spec beside megatron-core's own.

    PYTHONPATH=/tmp/site python3 benchmarks/layer_spec.py --out benchmarks/results [--tiny]

Same process, same model and weights initialisation, same training stack for every variant:
GPTModelProvider -> provide_distributed_model (megatron DDP, distributed optimizer, bf16
Float16Module) -> megatron Adam -> megatron's forward/backward schedule, vocab-parallel cross
entropy. Only ``transformer_layer_spec`` changes: "local" (megatron's local spec, unfused
attention), "mbridge_local" (ours: SDPA attention), and "te" when Transformer Engine is importable.

Per variant: warm-up steps, then timed steps (CUDA-synchronised wall clock per step); median,
min/max, IQR of the step time; tokens/s; model TFLOP/s = (6·N + 12·L·s·h)·tokens / step time
(N = parameters without embeddings, the Megatron paper's accounting, attention not halved for
causality); MFU against the bf16 8192^3 matmul rate measured in the same run; peak memory.
Writes <out>/layer_spec-<device>.json and .md. ``--tiny`` runs a small model (also on CPU).
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

def run_variant(shape, spec, micro_batch, steps, warmup) -> dict:
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
    from megatron.core.pipeline_parallel import get_forward_backward_func

    provider = provider_for(shape, spec)
    provider.initialize_model_parallel(seed=1234)
    try:
        bf16 = provider.bf16
        model = provider.provide_distributed_model(DistributedDataParallelConfig(
            use_distributed_optimizer=True, grad_reduce_in_fp32=True,
            overlap_grad_reduce=False))
        optimizer = get_megatron_optimizer(
            OptimizerConfig(optimizer="adam", lr=3e-4, clip_grad=1.0, bf16=bf16,
                            params_dtype=provider.params_dtype, use_distributed_optimizer=True),
            model)
        device = next(model[0].parameters()).device

        forward_backward = get_forward_backward_func()
        data = random_batches(shape, micro_batch, device)
        times, losses = [], []
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        for step in range(warmup + steps):
            sync()
            start = time.perf_counter()
            for chunk in model:
                chunk.zero_grad_buffer()
            optimizer.zero_grad()
            reduced = forward_backward(
                forward_step_func=per_token_loss_step, data_iterator=data, model=model,
                num_microbatches=1, seq_length=shape["seq_length"],
                micro_batch_size=micro_batch, forward_only=False)
            optimizer.step()
            sync()
            if step >= warmup:
                times.append(time.perf_counter() - start)
            losses.append(float(reduced[0]["lm loss"]))
        peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
        return _summary(provider, spec, times, losses, micro_batch, peak)
    finally:
        from megatron.core import parallel_state

        parallel_state.destroy_model_parallel()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _summary(provider, spec, times, losses, micro_batch, peak_gib) -> dict:
    from mbridge_models.layer_specs import resolve_choice

    h, layers, seq = provider.hidden_size, provider.num_layers, provider.seq_length
    kv = provider.num_query_groups * (h // provider.num_attention_heads)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * provider.ffn_hidden_size
    params = layers * per_layer + provider.vocab_size * h  # + output layer (untied)
    tokens = micro_batch * seq
    flops = (6 * params + 12 * layers * seq * h) * tokens
    stats = step_stats(times)
    median = stats["step_ms_median"] / 1e3
    return {"spec": spec, "resolved": resolve_choice(spec), **stats, "tokens_per_step": tokens,
            "tokens_per_s": tokens / median, "model_tflops": flops / median / 1e12,
            "parameters_counted": params, "peak_memory_gib": peak_gib, "losses": losses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--tiny", action="store_true", help="small model, few steps (smoke)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--specs", default="local,mbridge_local,te")
    args = parser.parse_args()

    runtime.activate()
    init_single_rank(29533)
    shape = TINY if args.tiny else LLAMA_1B
    rate = matmul_tflops()
    rows = []
    for spec in args.specs.split(","):
        if spec == "te":
            from mbridge_models.layer_specs import transformer_engine_usable

            if not transformer_engine_usable():
                rows.append({"spec": "te", "skipped": "Transformer Engine not importable"})
                continue
        print(f"[layer_spec] {spec}: building and training {args.warmup}+{args.steps} steps",
              flush=True)
        row = run_variant(shape, spec, args.micro_batch, args.steps, args.warmup)
        add_row(rows, row, rate, "layer_spec", spec)
    result = run_result(shape, args.micro_batch, rate, rows)
    write_results(Path(args.out), "layer_spec", "Training step, Llama-style model, layer specs "
                  "side by side", "spec", result, args.tiny)


if __name__ == "__main__":
    main()
