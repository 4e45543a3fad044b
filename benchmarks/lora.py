"""LoRA linear on one GPU: ours beside mbridge-peft's unfused path, HF PEFT, torch.compile and
the frozen base GEMM alone (the floor), in one process; ``--e2e``: a Llama 3.2 1B step, LoRA vs
full SFT.

    PYTHONPATH=/tmp/site python3 benchmarks/lora.py --out benchmarks/results
    PYTHONPATH=/tmp/site python3 benchmarks/lora.py --e2e --out benchmarks/results
    uv run python benchmarks/lora.py --smoke --out /tmp/lora   # CPU: reference + interpreter

Layer mode imports only torch, triton, peft and mbridge_kernels (megatron-core may be absent).
Llama-3-8B shapes (4096->4096 o_proj, 4096->6144 fused qkv, 4096->28672 gated fc1, 14336->4096
fc2), 8192 tokens, bf16, ranks 8/16/64 (and dropout 0.1 at rank 16). Rows:

* ``floor``: the frozen base alone: forward ``x W^T``; fwd+bwd = that + dX only.
* ``ours``: ``mbridge_kernels.lora_linear(backend="triton")``; ``ours (triton always)``: its
  Triton kernels also where cuBLAS serves without dropout (``kernel_policy="always"``).
* ``mbridge-peft unfused``: the composition mbridge-peft ran before the fused op
  (``F.linear(x, W) + s * F.linear(F.linear(dropout(x), A), B)``), which is also the
  plain-PyTorch reference; ``torch.compile``: that composition compiled (dynamic shapes).
* ``HF PEFT``: peft's LoRA ``Linear`` (``get_peft_model``), adapters in bf16 like ours.

Timing: triton.testing.do_bench (CUDA events, warm-up, L2 flushed), median and [min, max],
IQR. Forward runs with autograd recording (as in training); fwd+bwd is ``y.backward(dy)``.
Writes <out>/lora-<device>.json and .md (``lora-e2e-...`` for --e2e).
"""

from __future__ import annotations

import os
import sys

if "--smoke" in sys.argv:  # before triton's first import (see mbridge_kernels._triton_loss)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mbridge_kernels  # noqa: E402
from mbridge_kernels import lora as kernel_lora  # noqa: E402
from mbridge_kernels import lora_linear  # noqa: E402

SHAPES = {"4096->4096": (4096, 4096), "4096->6144 qkv": (4096, 6144),
          "4096->28672 fc1": (4096, 28672), "14336->4096 fc2": (14336, 4096)}
RANKS = (8, 16, 64)
DROPOUT_RANK = 16


def unfused(x, w, a, b, scale, p):
    """mbridge-peft's composition before the fused op (mbridge_peft.compute down/up)."""
    y = F.linear(x, w)
    h = F.linear(F.dropout(x, p, True) if p else x, a)
    return y + F.linear(h, b) * scale


def _timings(fn, smoke: bool) -> dict:
    if smoke:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    else:
        from triton.testing import do_bench

        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        est = (time.perf_counter() - t0) * 1e3
        times = do_bench(fn, warmup=max(10.0, 2 * est), rep=max(60.0, 10 * est),
                         return_mode="all")
    times = sorted(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [times[0], 0, times[-1]]
    return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1],
            "p25_ms": q[0], "p75_ms": q[2], "runs": len(times)}


def _hf_peft(k, m, r, p, w, a, b, device, dtype):
    """peft's LoRA Linear around an nn.Linear holding W, adapters set to A, B."""
    try:
        from peft import LoraConfig, get_peft_model
    except Exception as exc:  # noqa: BLE001
        return None, f"not installed ({type(exc).__name__})"
    holder = torch.nn.Module()
    holder.proj = torch.nn.Linear(k, m, bias=False)
    config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=p, target_modules=["proj"])
    try:
        model = get_peft_model(holder, config, autocast_adapter_dtype=False)
    except TypeError:  # older peft: no autocast_adapter_dtype
        model = get_peft_model(holder, config)
    layer = model.base_model.model.proj.to(device=device, dtype=dtype)
    with torch.no_grad():
        layer.base_layer.weight.copy_(w)
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
    layer.base_layer.weight.requires_grad_(False)
    layer.train()
    import peft

    return layer, peft.__version__


def methods(k, m, r, p, w, a, b, scale, compiled, smoke, device, dtype):
    """name -> (forward(x), the adapter parameters it trains)."""
    out = {"floor": (lambda x: F.linear(x, w), []),
           "ours": (lambda x: lora_linear(x, w, None, a, b, scale, p, backend="triton"), [a, b])}
    if not p and not smoke:
        def always(x):
            saved = dict(kernel_lora.kernel_policy)
            kernel_lora.kernel_policy.update(down="always", dx_da="always")
            try:
                return lora_linear(x, w, None, a, b, scale, p, backend="triton")
            finally:
                kernel_lora.kernel_policy.update(saved)
        out["ours (triton always)"] = (always, [a, b])
    out["mbridge-peft unfused"] = (lambda x: unfused(x, w, a, b, scale, p), [a, b])
    if compiled is not None:
        out["torch.compile unfused"] = (lambda x: compiled(x, w, a, b, scale, p), [a, b])
    layer, version = _hf_peft(k, m, r, p, w, a, b, device, dtype)
    if layer is not None:
        params = [layer.lora_A["default"].weight, layer.lora_B["default"].weight]
        out["HF PEFT"] = (layer, params)
    return out, version


def bench_shape(name, k, m, tokens, ranks, dropout_rank, compiled, smoke, device, dtype):
    rows = []
    g = torch.Generator(device="cpu").manual_seed(0)
    x0 = (torch.randn(tokens, k, generator=g)).to(device, dtype)
    w = (torch.randn(m, k, generator=g) / k**0.5).to(device, dtype)
    dy = torch.randn(tokens, m, generator=g).to(device, dtype)
    cases = [(r, 0.0) for r in ranks] + ([(dropout_rank, 0.1)] if dropout_rank else [])
    peft_version = None
    for r, p in cases:
        a = (torch.randn(r, k, generator=g) / k**0.5).to(device, dtype).requires_grad_(True)
        b = (torch.randn(m, r, generator=g) * 0.01).to(device, dtype).requires_grad_(True)
        scale = 2.0
        table, peft_version = methods(k, m, r, p, w, a, b, scale, compiled, smoke, device, dtype)
        with torch.no_grad():
            want = lora_linear(x0, w, None, a, b, scale, 0.0, backend="reference") if not p \
                else None
        for method, (fn, params) in table.items():
            if method == "floor" and p:
                continue
            x = x0.clone().requires_grad_(True)
            row = {"shape": name, "in": k, "out": m, "tokens": tokens, "rank": r, "dropout": p,
                   "method": method}
            try:
                if want is not None and method != "floor":
                    with torch.no_grad():
                        got = fn(x0)
                    row["max_rel_err"] = float((got.float() - want.float()).abs().max()
                                               / want.float().abs().max())

                def forward():
                    fn(x)

                def step():
                    x.grad = None
                    for t in params:
                        t.grad = None
                    fn(x).backward(dy)

                step()
                row["fwd"] = _timings(forward, smoke)
                row["fwd_bwd"] = _timings(step, smoke)
                row["status"] = "ok"
            except Exception as exc:  # noqa: BLE001
                row["status"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
                traceback.print_exc()
            rows.append(row)
            print(_fmt(row), flush=True)
            del x
    return rows, peft_version


def _fmt(row) -> str:
    head = f"{row['shape']} r={row['rank']} p={row['dropout']} {row['method']}"
    if row.get("status") != "ok":
        return f"{head}: {row.get('status')}"
    return (f"{head}: fwd {row['fwd']['median_ms']:.3f} ms, fwd+bwd "
            f"{row['fwd_bwd']['median_ms']:.3f} ms")


def _find(rows, shape, rank, dropout, method):
    for r in rows:
        if (r["shape"], r["rank"], r["dropout"], r["method"]) == (shape, rank, dropout, method) \
                and r.get("status") == "ok":
            return r
    return None


def ratios(rows) -> None:
    """Add, to every row, its time over the floor's and HF PEFT's over its (same shape)."""
    for r in rows:
        if r.get("status") != "ok":
            continue
        floor = _find(rows, r["shape"], RANKS[0], 0.0, "floor") or \
            next((f for f in rows if f["shape"] == r["shape"] and f["method"] == "floor"), None)
        peft = _find(rows, r["shape"], r["rank"], r["dropout"], "HF PEFT")
        for mode in ("fwd", "fwd_bwd"):
            if floor and floor.get("status") == "ok":
                r[f"{mode}_vs_floor"] = r[mode]["median_ms"] / floor[mode]["median_ms"]
            if peft:
                r[f"{mode}_peft_speedup"] = peft[mode]["median_ms"] / r[mode]["median_ms"]


def targets(rows) -> list[tuple[str, str]]:
    """The issue's layer targets for 'ours', one line per (shape, rank) without dropout."""
    out = []
    for r in rows:
        if r["method"] != "ours" or r.get("status") != "ok" or r["dropout"]:
            continue
        f, fb = r.get("fwd_vs_floor"), r.get("fwd_bwd_vs_floor")
        s = r.get("fwd_bwd_peft_speedup")
        verdicts = [f"fwd {f:.3f}x floor ({'met' if f <= 1.05 else 'NOT met'})" if f else "",
                    f"fwd+bwd {fb:.3f}x floor ({'met' if fb <= 1.10 else 'NOT met'})"
                    if fb else "",
                    f"{s:.2f}x faster than HF PEFT fwd+bwd ({'met' if s >= 1.5 else 'NOT met'})"
                    if s else "HF PEFT not measured"]
        out.append((f"{r['shape']} r={r['rank']}", "; ".join(v for v in verdicts if v)))
    return out


def markdown(result) -> str:
    lines = [f"# LoRA linear benchmark — {result['device']}", "",
             f"torch {result['torch']}, triton {result['triton']}, peft {result['peft']}, "
             f"mbridge-kernels {result['mbridge_kernels']}, commit {result['commit']}; "
             f"{result['date']}; command: `{result['command']}`", "",
             f"{result['tokens']} tokens, {result['dtype']}; median [min, max] ms "
             "(do_bench, CUDA events); x floor = time / frozen-base time (fwd: x W^T; fwd+bwd: "
             "+ dX only); PEFT speed-up = HF PEFT time / this time.", "",
             "| shape | r | p | method | fwd ms | [min, max] | fwd x floor | fwd+bwd ms | "
             "[min, max] | fwd+bwd x floor | PEFT speed-up fwd / fwd+bwd | max rel err vs "
             "reference |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['shape']} | {r['rank']} | {r['dropout']} | {r['method']} | "
                         f"{r.get('status')} | | | | | | | |")
            continue
        fw, fb = r["fwd"], r["fwd_bwd"]
        sp = "/".join(f"{r[k]:.2f}x" if k in r else "-" for k in
                      ("fwd_peft_speedup", "fwd_bwd_peft_speedup"))
        err = f"{r['max_rel_err']:.1e}" if "max_rel_err" in r else ""
        lines.append(
            f"| {r['shape']} | {r['rank']} | {r['dropout']} | {r['method']} | "
            f"{fw['median_ms']:.3f} | [{fw['min_ms']:.3f}, {fw['max_ms']:.3f}] | "
            f"{r.get('fwd_vs_floor', float('nan')):.3f} | {fb['median_ms']:.3f} | "
            f"[{fb['min_ms']:.3f}, {fb['max_ms']:.3f}] | "
            f"{r.get('fwd_bwd_vs_floor', float('nan')):.3f} | {sp} | {err} |")
    lines += ["", "## Targets (ours, no dropout): fwd <= 1.05x floor, fwd+bwd <= 1.10x floor, "
              ">= 1.5x faster than HF PEFT", ""]
    lines += [f"- {t}: {v}" for t, v in result["targets"]] or ["- (not run)"]
    return "\n".join(lines) + "\n"


def _write(out: Path, stem: str, result: dict, text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", result["device"].lower()).strip("-")
    for suffix, body in ((".json", json.dumps(result, indent=1)), (".md", text)):
        path = out / f"{stem}-{slug}{suffix}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(body)
        tmp.replace(path)
    print(text)
    print(f"wrote {out}/{stem}-{slug}.json/.md")


def layer_main(args) -> None:
    import triton

    started = time.time()
    smoke = args.smoke
    if not smoke and not torch.cuda.is_available():
        raise SystemExit("lora benchmark: needs a CUDA device (or --smoke on the CPU)")
    device = torch.device("cpu" if smoke else "cuda")
    dtype = torch.float32 if smoke else torch.bfloat16
    if smoke:
        shapes, tokens, ranks, dropout_rank = {"64->48": (64, 48)}, 32, (8,), 8
        compiled = None
    else:
        shapes, tokens, ranks, dropout_rank = SHAPES, args.tokens, RANKS, DROPOUT_RANK
        compiled = torch.compile(unfused, dynamic=True)
    rows, peft_version = [], None
    for name, (k, m) in shapes.items():
        got, peft_version = bench_shape(name, k, m, tokens, ranks, dropout_rank, compiled,
                                        smoke, device, dtype)
        rows += got
        if not smoke:
            torch.cuda.empty_cache()
    ratios(rows)
    result = {"device": "cpu (smoke)" if smoke else torch.cuda.get_device_name(),
              "torch": torch.__version__, "triton": triton.__version__,
              "peft": peft_version or "not installed",
              "mbridge_kernels": mbridge_kernels.__version__, "python": platform.python_version(),
              "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "command": "python3 " + " ".join(sys.argv), "tokens": tokens, "dtype": str(dtype),
              "rows": rows, "targets": targets(rows), "wall_s": time.time() - started}
    _write(Path(args.out), "lora-smoke" if smoke else "lora", result, markdown(result))


def e2e_main(args) -> None:
    """llama.llama32_1b's fine-tune recipe (LoRA dim 32 / full SFT), seq 2048, micro-batch 8,
    global batch 32, mock data, through mbridge.training.pretrain (the loop finetune runs,
    without loading a base checkpoint: random weights time the same); median step time after
    the warm-up steps."""
    from llama_bench import init_single_rank, step_stats

    from mbridge.recipes.llama import llama32_1b
    from mbridge.training import pretrain
    from mbridge.training.config import MockGPTDatasetConfig, TokenizerConfig
    from mbridge.training.gpt_step import forward_step
    from mbridge_models import runtime
    from mbridge_peft import compute

    from mbridge_config import container

    # Timing only: random base weights stand in for the pretrained checkpoint a LoRA run needs.
    if container.rule_peft_needs_pretrained in container.RULES:
        container.RULES.remove(container.rule_peft_needs_pretrained)
    runtime.activate()
    init_single_rank(29541)
    rows = []
    variants = [("full SFT", None, "auto"), ("LoRA (fused op)", "lora", "auto"),
                ("LoRA (unfused, lora_backend=off)", "lora", "off")]
    for label, peft, backend in variants:
        if args.rows and label.split(" ")[0] + (" off" if backend == "off" else "") \
                not in args.rows.split(","):
            continue
        import gc

        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        compute.lora_backend = backend
        iters = args.warmup + args.steps
        cfg = llama32_1b.finetune_config(peft=peft, seq_length=args.seq, micro_batch_size=8,
                                         global_batch_size=32, train_iters=iters,
                                         lr_warmup_iters=1, lr_decay_iters=iters)
        cfg.dataset = MockGPTDatasetConfig(sequence_length=args.seq, num_workers=2,
                                           split="1,0,0", random_seed=1234)
        cfg.tokenizer = TokenizerConfig(tokenizer_type="NullTokenizer",
                                        vocab_size=cfg.model.vocab_size)
        cfg.checkpoint.save = cfg.checkpoint.load = cfg.checkpoint.save_interval = None
        cfg.checkpoint.pretrained_checkpoint = None
        cfg.logger.tensorboard_dir = None
        cfg.train.eval_interval, cfg.train.eval_iters = None, 0
        print(f"[lora e2e] {label}: {args.warmup}+{args.steps} steps", flush=True)
        try:
            run = pretrain(cfg, forward_step)
            times = [h["step_time_s"] for h in run.history if "split" not in h][args.warmup:]
            rows.append({"name": label, **step_stats(times),
                         "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30})
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            rows.append({"name": label, "status": f"error: {type(exc).__name__}: {exc}"[:300]})
        finally:
            run = None  # else the last run's model and optimizer count in the next one's peak
        print(rows[-1], flush=True)
    compute.lora_backend = "auto"
    full = next((r for r in rows if r["name"] == "full SFT" and "step_ms_median" in r), None)
    lines = [f"# LoRA vs full SFT step, llama.llama32_1b — {torch.cuda.get_device_name()}", "",
             f"seq {args.seq}, micro-batch 8, global batch 32, mock data, "
             f"{args.warmup} warm-up + {args.steps} timed steps; commit {commit()}; command: "
             f"`python3 {' '.join(sys.argv)}`", "",
             "| run | step ms (median) | min-max | IQR | x full SFT | peak GiB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "step_ms_median" not in r:
            lines.append(f"| {r['name']} | {r.get('status')} | | | | |")
            continue
        ratio = r["step_ms_median"] / full["step_ms_median"] if full else float("nan")
        r["vs_full_sft"] = ratio
        lines.append(f"| {r['name']} | {r['step_ms_median']:.1f} | {r['step_ms_min']:.1f}-"
                     f"{r['step_ms_max']:.1f} | {r['step_ms_p25']:.1f}-{r['step_ms_p75']:.1f} | "
                     f"{ratio:.2f} | {r['peak_memory_gib']:.1f} |")
    lines += ["", "Target: LoRA step <= 0.70x the full-SFT step."]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "commit": commit(), "command": "python3 " + " ".join(sys.argv),
              "seq": args.seq, "rows": rows}
    _write(Path(args.out), "lora-e2e", result, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--smoke", action="store_true", help="CPU: one tiny shape")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--e2e", action="store_true", help="recipe step time, LoRA vs full SFT")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", default="", help="e2e: subset, e.g. 'full,LoRA,LoRA off'")
    args = parser.parse_args()
    if args.e2e:
        e2e_main(args)
    else:
        layer_main(args)


if __name__ == "__main__":
    main()
