"""s/step of a bf16 / fp16 run rehearsed on a CPU, by ``dist.cpu_compute_dtype``.

    uv run python benchmarks/cpu_precision.py --out benchmarks/results [--steps 3]

The spec's pretraining example (llama.llama3_8b) cut to 2 layers of width 64 with its 128K
vocabulary (where a CPU spends its time: the output layer), mock data, 2 micro-batches of
4 x 128 tokens per step, one process. Rows: plain fp32, then bf16_mixed and fp16_mixed under
each policy (``keep``: the CPU's own low-precision kernels; ``fp32``: fp32 arithmetic on
low-precision tensors; ``auto``: whichever this CPU needs, mbridge_train.cpu_precision). The
first step (warm-up) is dropped. Writes <out>/cpu_precision-cpu<N>.json and .md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
from pathlib import Path

ROWS = [("fp32", "auto"), ("bf16_mixed", "auto"), ("bf16_mixed", "fp32"), ("bf16_mixed", "keep"),
        ("fp16_mixed", "auto"), ("fp16_mixed", "fp32"), ("fp16_mixed", "keep")]


def config(precision: str, policy: str, steps: int, root: str):
    from mbridge.recipes.llama.llama3_8b import pretrain_config

    return pretrain_config(dir=root).apply_overrides([
        "model.num_layers=2", "model.hidden_size=64", "model.ffn_hidden_size=224",
        "model.num_attention_heads=4", "model.num_query_groups=2", "model.kv_channels=16",
        "model.context_parallel_size=1", "model.seq_length=128", "dataset.sequence_length=128",
        "model.vocab_size=128256", "train.micro_batch_size=4", "train.global_batch_size=8",
        f"train.train_iters={steps}", "train.eval_interval=null", "train.eval_iters=0",
        "scheduler.lr_warmup_iters=1", "scheduler.lr_decay_iters=100",
        "checkpoint.save=null", "checkpoint.save_interval=null", "logger.log_interval=1",
        "logger.tensorboard_dir=null", "dataset.num_workers=0", "train.manual_gc=false",
        # fp16's first steps overflow at the initial loss scale (skipped, as on a GPU).
        "ddp.check_for_nan_in_grad=false",
        f"mixed_precision={precision}", f"dist.cpu_compute_dtype={policy}"])


def measure(precision: str, policy: str, steps: int) -> dict:
    from mbridge.training import pretrain
    from mbridge.training.gpt_step import forward_step

    with tempfile.TemporaryDirectory() as root:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            run = pretrain(config(precision, policy, steps, root), forward_step)
    times = [h["step_time_s"] for h in run.history if "step_time_s" in h][1:]
    return {"precision": precision, "policy": policy,
            "fp32_arithmetic": "matmuls compute in fp32" in printed.getvalue(),
            "s_per_step": round(statistics.median(times), 2),
            "params_dtype": str(next(run.model[0].parameters()).dtype)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    import torch

    from mbridge_models import runtime

    rows = [measure(p, policy, args.steps) for p, policy in ROWS]
    name = f"cpu_precision-cpu{os.cpu_count()}"
    native = {str(d): runtime.native_matmul(d) for d in (torch.bfloat16, torch.float16)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"native_kernels": native, "rows": rows},
                                                 indent=2) + "\n")
    lines = [f"native low-precision kernels on this CPU: {native}", "",
             "| precision | cpu_compute_dtype | fp32 arithmetic | params | s/step |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['precision']} | {r['policy']} | {r['fp32_arithmetic']} | "
              f"{r['params_dtype']} | {r['s_per_step']} |" for r in rows]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
