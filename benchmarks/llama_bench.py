"""What the training-step benchmarks share: the Llama-style model, the matmul ceiling, step-time
statistics and the JSON + markdown results (written to a temp name, then renamed)."""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

LLAMA_1B = dict(num_layers=16, hidden_size=2048, ffn_hidden_size=6144, num_attention_heads=16,
                num_query_groups=8, vocab_size=32768, seq_length=2048)
TINY = dict(num_layers=2, hidden_size=128, ffn_hidden_size=256, num_attention_heads=4,
            num_query_groups=2, vocab_size=512, seq_length=128)


def provider_for(shape: dict, spec: str):
    """Llama 3 style (RMSNorm, SwiGLU, RoPE base 500000, GQA, untied); bf16 on a GPU."""
    from mbridge_models.gpt_provider import GPTModelProvider

    on_gpu = torch.cuda.is_available()
    return GPTModelProvider(
        **shape, transformer_layer_spec=spec, normalization="RMSNorm", gated_linear_unit=True,
        activation_func=F.silu, add_bias_linear=False, position_embedding_type="rope",
        rotary_base=500000, share_embeddings_and_output_weights=False, hidden_dropout=0.0,
        attention_dropout=0.0, bias_activation_fusion=True, masked_softmax_fusion=False,
        bf16=on_gpu, params_dtype=torch.bfloat16 if on_gpu else torch.float32,
        init_method_std=0.02, deallocate_pipeline_outputs=True)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def matmul_tflops() -> float | None:
    """The bf16 8192^3 matmul rate of this GPU (the MFU denominator); None on a CPU."""
    if not torch.cuda.is_available():
        return None
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    start, runs = time.perf_counter(), 20
    for _ in range(runs):
        a @ b
    sync()
    return 2 * 8192**3 * runs / (time.perf_counter() - start) / 1e12


def step_stats(times: list[float]) -> dict:
    """Median, min/max and quartiles of step times, in ms."""
    median = statistics.median(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [min(times), median, max(times)]
    return {"step_ms_median": median * 1e3, "step_ms_min": min(times) * 1e3,
            "step_ms_max": max(times) * 1e3, "step_ms_p25": q[0] * 1e3,
            "step_ms_p75": q[2] * 1e3, "steps": len(times)}


def write_results(out: Path, stem: str, title: str, first_column: str, result: dict,
                  tiny: bool) -> None:
    """<out>/<stem>-<device>.json and .md: one table row per result["rows"] entry."""
    device = result["device"]
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-") + ("-tiny" if tiny else "")
    lines = [f"# {title} ({device})", "",
             f"shape {result['shape']}, micro-batch {result['micro_batch']}, "
             f"bf16={result['bf16']}, torch {result['torch']}; measured bf16 matmul "
             f"{result['matmul_bf16_tflops'] or 0:.0f} TFLOP/s", "",
             f"| {first_column} | step ms (median) | min–max | IQR | tokens/s | TFLOP/s | MFU | "
             "peak GiB |", "|---|---|---|---|---|---|---|---|"]
    key = "spec" if first_column == "spec" else "name"
    for row in result["rows"]:
        if "skipped" in row:
            lines.append(f"| {row[key]} | skipped: {row['skipped']} | | | | | | |")
            continue
        mfu, peak = row.get("mfu_vs_measured_matmul"), row["peak_memory_gib"]
        lines.append(
            f"| {row[key]} | {row['step_ms_median']:.1f} | {row['step_ms_min']:.1f}–"
            f"{row['step_ms_max']:.1f} | {row['step_ms_p25']:.1f}–{row['step_ms_p75']:.1f} | "
            f"{row['tokens_per_s']:.0f} | {row['model_tflops']:.1f} | "
            f"{'' if mfu is None else f'{mfu:.0%}'} | {'' if peak is None else f'{peak:.1f}'} |")
    for suffix, text in ((".json", json.dumps(result, indent=2)), (".md", "\n".join(lines) + "\n")):
        path = out / f"{stem}-{slug}{suffix}"
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    print("\n".join(lines))


def random_batches(shape: dict, micro_batch: int, device):
    """Endless (inputs, labels, positions) of one fixed random micro-batch: the data costs
    nothing, so the step time is the model's."""
    seq, vocab = shape["seq_length"], shape["vocab_size"]
    generator = torch.Generator(device="cpu").manual_seed(0)
    tokens = torch.randint(0, vocab, (micro_batch, seq + 1), generator=generator).to(device)
    positions = torch.arange(seq, device=device).expand(micro_batch, -1)
    while True:
        yield tokens[:, :-1], tokens[:, 1:], positions


def per_token_loss_step(data, chunk):
    """A minimal megatron forward step: labels into GPTModel (its fp32 vocab-parallel cross
    entropy), the mean over tokens as the loss."""
    inputs, labels, position_ids = next(data)
    per_token = chunk(inputs, position_ids, None, labels=labels)

    def loss_func(output):
        loss = output.float().mean()
        return loss, {"lm loss": loss.detach().clone()}

    return per_token, loss_func


def init_single_rank(port: int) -> None:
    """A one-process group (NCCL on a GPU, gloo on a CPU) unless one is up."""
    import os

    if torch.distributed.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(port))
    if torch.cuda.is_available():
        torch.cuda.set_device(0)
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo",
                                         rank=0, world_size=1)


def add_row(rows: list, row: dict, rate: float | None, tag: str, label: str) -> None:
    """Append ``row`` with its MFU against the measured matmul rate, and say it."""
    if rate:
        row["mfu_vs_measured_matmul"] = row["model_tflops"] / rate
    print(f"[{tag}] {label}: {row['step_ms_median']:.1f} ms/step, {row['tokens_per_s']:.0f} "
          f"tokens/s, {row['model_tflops']:.1f} TFLOP/s", flush=True)
    rows.append(row)


def run_result(shape: dict, micro_batch: int, rate: float | None, rows: list) -> dict:
    import platform

    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "python": platform.python_version(), "shape": shape,
            "micro_batch": micro_batch, "bf16": torch.cuda.is_available(),
            "matmul_bf16_tflops": rate, "rows": rows}
