"""Masked token loss and fused linear + loss on one GPU, ours beside the peers, in one process.

    PYTHONPATH=/tmp/site python3 benchmarks/masked_token_loss.py --out benchmarks/results [--quick]

Needs torch + triton + mbridge_kernels; Liger-Kernel and Cut Cross-Entropy are used when
importable and recorded as "not installed" otherwise. Each row is fwd+bwd of a summed loss
(`loss.backward()`, grad_output = 1), timed with triton.testing.do_bench (median, min/max,
IQR; L2 flushed between runs). Ceilings measured in the same run: device-to-device copy
bandwidth (bytes read + written) and the bf16 8192^3 matmul rate.

* Loss floor: one read of the logits + one write of the gradient at the copy bandwidth.
* Linear floor: 6·N·H·V FLOPs at the matmul rate.
* Peak extra memory: max allocated during fwd+bwd minus allocated before the call (inputs);
  for the linear variant the returned gradients (grad_hidden, grad_weight) are subtracted too
  ("extra beyond grads"), the raw figure is kept in the JSON.
In-place methods (ours in-place, Liger CE) overwrite the logits with the gradient, so repeated
runs see gradient values as logits; values stay in [-1, 1], which does not change the work.
Writes <out>/masked_token_loss-<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

import mbridge_kernels
from mbridge_kernels import _extension, linear_token_loss_sum, token_loss_sum

GiB = 1024**3


def _timings(fn, est_ms: float | None = None) -> dict:
    """do_bench with enough repetitions for a spread even on slow cases."""
    if est_ms is None:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        est_ms = (time.perf_counter() - t0) * 1e3
    rep = max(100.0, 8 * est_ms)
    times = do_bench(fn, warmup=max(25.0, 2 * est_ms), rep=rep, return_mode="all")
    times = sorted(times)
    q = statistics.quantiles(times, n=4) if len(times) >= 4 else [times[0], times[len(times) // 2], times[-1]]
    return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1],
            "p25_ms": q[0], "p75_ms": q[2], "runs": len(times)}


def _peak_extra(fn, before_call=None) -> int:
    if before_call:
        before_call()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def ceilings() -> dict:
    src = torch.empty(GiB // 2, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    copy_ms = do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    del src, dst
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = do_bench(lambda: a @ b, warmup=25, rep=200, return_mode="median")
    return {"copy_bytes_per_s": 2 * (GiB // 2) / (copy_ms * 1e-3),
            "matmul_flop_per_s": 2 * 8192**3 / (mm_ms * 1e-3)}


def peers() -> dict:
    found = {}
    try:
        import liger_kernel
        from liger_kernel.transformers.functional import (liger_cross_entropy,
                                                          liger_fused_linear_cross_entropy)
        found["liger"] = (getattr(liger_kernel, "__version__", None) or _dist_version("liger-kernel"),
                          liger_cross_entropy, liger_fused_linear_cross_entropy)
    except Exception as exc:  # noqa: BLE001
        found["liger"] = (f"not installed ({type(exc).__name__})", None, None)
    try:
        from cut_cross_entropy import linear_cross_entropy
        found["cce"] = (_dist_version("cut-cross-entropy"), linear_cross_entropy)
    except Exception as exc:  # noqa: BLE001
        found["cce"] = (f"not installed ({type(exc).__name__})", None)
    return found


def _dist_version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _ce_methods(found, compiled):
    liger_ce = found["liger"][1]
    methods = {
        "ours triton (in-place)": lambda x, y: token_loss_sum(x, y, inplace_backward=True,
                                                                 backend="triton")[0],
        "ours triton": lambda x, y: token_loss_sum(x, y, backend="triton")[0],
        "ours cuda (in-place)": (lambda x, y: token_loss_sum(x, y, inplace_backward=True,
                                                                backend="cuda")[0])
        if _extension.has_cuda_kernel() else None,
        "torch eager fp32 upcast": lambda x, y: F.cross_entropy(x.float(), y, reduction="sum"),
        "torch eager bf16": lambda x, y: F.cross_entropy(x, y, reduction="sum"),
        "torch.compile (fp32 upcast)": compiled,
        "liger CE": (lambda x, y: liger_ce(x, y, reduction="sum")) if liger_ce else None,
    }
    return methods


def bench_ce(tokens, vocab, found, compiled, ceil) -> list[dict]:
    rows = []
    logits = torch.randn(tokens, vocab, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, vocab, (tokens,), device="cuda")
    with torch.no_grad():
        expected = F.cross_entropy(logits.float(), labels, reduction="sum").item()
    logits_bytes = logits.numel() * logits.element_size()
    floor_ms = 2 * logits_bytes / ceil["copy_bytes_per_s"] * 1e3
    master = logits  # each method gets a fresh copy
    del logits
    for name, loss_fn in _ce_methods(found, compiled).items():
        row = {"tokens": tokens, "vocab": vocab, "method": name, "floor_ms": floor_ms}
        if loss_fn is None:
            row["status"] = "not installed" if "liger" in name else "unavailable"
            rows.append(row)
            continue
        x = master.clone().requires_grad_(True)
        try:
            got = loss_fn(x, labels)
            row["loss_rel_err"] = abs(got.item() - expected) / abs(expected)
            got.backward()
            x.grad = None
            x.data.copy_(master)

            def step():
                x.grad = None
                loss_fn(x, labels).backward()

            row["peak_extra_bytes"] = _peak_extra(step)
            row.update(_timings(step))
            row["extra_vs_logits"] = row["peak_extra_bytes"] / logits_bytes
            row["bandwidth_bytes_per_s"] = 2 * logits_bytes / (row["median_ms"] * 1e-3)
            row["floor_ratio"] = floor_ms / row["median_ms"]
            row["status"] = "ok"
        except torch.OutOfMemoryError:
            row["status"] = "OOM"
        except Exception as exc:  # noqa: BLE001
            row["status"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
            traceback.print_exc()
        del x
        torch.cuda.empty_cache()
        rows.append(row)
        print(_fmt_row(row), flush=True)
    return rows


def bench_linear(tokens, vocab, hidden_size, found, ceil) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    hidden = torch.randn(tokens, hidden_size, device="cuda", dtype=torch.bfloat16)
    weight = (torch.randn(vocab, hidden_size, device="cuda") / hidden_size**0.5).bfloat16()
    labels = torch.randint(0, vocab, (tokens,), device="cuda")
    logits_bytes = tokens * vocab * 2
    floor_ms = 6 * tokens * hidden_size * vocab / ceil["matmul_flop_per_s"] * 1e3
    liger_flce, cce = found["liger"][2], found["cce"][1]
    methods = {
        "ours fused linear": lambda h, w, y: linear_token_loss_sum(h, w, y)[0],
        "ours fused linear (chunk 1024)": lambda h, w, y: linear_token_loss_sum(
            h, w, y, chunk_tokens=1024)[0],
        "torch (bf16 logits, fp32 CE)": lambda h, w, y: F.cross_entropy(
            (h @ w.t()).float(), y, reduction="sum"),
        "liger fused linear CE": (lambda h, w, y: liger_flce(h, w, y, reduction="sum"))
        if liger_flce else None,
        "cut cross-entropy": (lambda h, w, y: cce(h, w, y, reduction="sum")) if cce else None,
    }
    expected = None
    for name, loss_fn in methods.items():
        row = {"tokens": tokens, "vocab": vocab, "hidden": hidden_size, "method": name,
               "floor_ms": floor_ms}
        if loss_fn is None:
            row["status"] = "not installed"
            rows.append(row)
            continue
        h = hidden.clone().requires_grad_(True)
        w = weight.clone().requires_grad_(True)
        try:
            got = loss_fn(h, w, labels)
            got.backward()
            if expected is None:  # ours runs first; later rows are compared with it
                expected = got.item()
            row["loss_rel_diff_vs_ours"] = abs(got.item() - expected) / abs(expected)

            def clear():
                h.grad = None
                w.grad = None

            def step():
                clear()
                loss_fn(h, w, labels).backward()

            # Clear first, so the baseline does not hold the previous call's gradients.
            raw = _peak_extra(step, before_call=clear)
            grads = h.numel() * 2 + w.numel() * 2
            row["peak_extra_raw_bytes"] = raw
            row["peak_extra_bytes"] = raw - grads
            row["extra_vs_logits"] = row["peak_extra_bytes"] / logits_bytes
            row.update(_timings(step))
            row["floor_ratio"] = floor_ms / row["median_ms"]
            row["tflop_per_s"] = 6 * tokens * hidden_size * vocab / (row["median_ms"] * 1e-3) / 1e12
            row["status"] = "ok"
        except torch.OutOfMemoryError:
            row["status"] = "OOM"
        except Exception as exc:  # noqa: BLE001
            row["status"] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
            traceback.print_exc()
        h.grad = w.grad = None
        del h, w
        torch.cuda.empty_cache()
        rows.append(row)
        print(_fmt_row(row), flush=True)
    return rows


def _fmt_row(row) -> str:
    if row.get("status") != "ok":
        return f"{row['tokens']}x{row['vocab']} {row['method']}: {row.get('status')}"
    return (f"{row['tokens']}x{row['vocab']} {row['method']}: {row['median_ms']:.3f} ms "
            f"[{row['min_ms']:.3f}, {row['max_ms']:.3f}] floor {row['floor_ms']:.3f} ms "
            f"({row['floor_ratio']:.0%}), extra {row['peak_extra_bytes'] / GiB:.3f} GiB")


def _find(rows, vocab, method, tokens=8192):
    for r in rows:
        if r["vocab"] == vocab and r["method"] == method and r["tokens"] == tokens \
                and r.get("status") == "ok":
            return r
    return None


def targets(ce_rows, lin_rows) -> list[tuple[str, str]]:
    """The issue's targets at 8192 tokens x 128256 vocab, as (target, verdict) lines."""
    out = []
    ours = _find(ce_rows, 128256, "ours triton (in-place)")
    if ours:
        eager = _find(ce_rows, 128256, "torch eager bf16")
        liger = _find(ce_rows, 128256, "liger CE")
        out.append(("fused loss >= 75% of the floor's speed",
                    f"{ours['floor_ratio']:.0%} -> {'met' if ours['floor_ratio'] >= 0.75 else 'NOT met'}"))
        if eager:
            s = eager["median_ms"] / ours["median_ms"]
            out.append((">= 4x faster than torch eager bf16", f"{s:.2f}x -> {'met' if s >= 4 else 'NOT met'}"))
        if liger:
            s = liger["median_ms"] / ours["median_ms"]
            out.append(("faster than Liger CE", f"{s:.2f}x -> {'met' if s > 1 else 'NOT met'}"))
        out.append(("zero extra logits-sized memory in place",
                    f"{ours['extra_vs_logits']:.2%} of logits -> "
                    f"{'met' if ours['extra_vs_logits'] < 0.01 else 'NOT met'}"))
    lin = _find(lin_rows, 128256, "ours fused linear")
    if lin:
        out.append(("fused linear extra memory <= 5% of logits",
                    f"{lin['extra_vs_logits']:.2%} -> {'met' if lin['extra_vs_logits'] <= 0.05 else 'NOT met'}"))
        r = lin["median_ms"] / lin["floor_ms"]
        out.append(("fused linear time <= 1.2x matmul floor", f"{r:.2f}x -> {'met' if r <= 1.2 else 'NOT met'}"))
        for peer in ("cut cross-entropy", "liger fused linear CE"):
            p = _find(lin_rows, 128256, peer)
            if p:
                s = p["median_ms"] / lin["median_ms"]
                out.append((f"faster than {peer}", f"{s:.2f}x -> {'met' if s > 1 else 'NOT met'}"))
    return out


def markdown(result) -> str:
    c = result["ceilings"]
    lines = [f"# Masked token loss benchmark — {result['device']}", "",
             f"torch {result['torch']}, triton {result['triton']}, mbridge-kernels "
             f"{result['mbridge_kernels']}, Liger {result['peers']['liger']}, "
             f"Cut Cross-Entropy {result['peers']['cce']}; {result['date']}; "
             f"command: `{result['command']}`", "",
             f"Ceilings in this run: D2D copy {c['copy_bytes_per_s'] / 1e12:.2f} TB/s (read + "
             f"write), bf16 8192³ matmul {c['matmul_flop_per_s'] / 1e12:.0f} TFLOP/s.", "",
             "## Loss, fwd+bwd, bf16 logits (median [min, max] ms)", "",
             "| tokens | vocab | method | median ms | [min, max] | floor ms | % of floor speed | "
             "GB/s | peak extra GiB | loss rel err |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["loss"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['tokens']} | {r['vocab']} | {r['method']} | {r.get('status')} "
                         f"| | {r['floor_ms']:.3f} | | | | |")
            continue
        lines.append(f"| {r['tokens']} | {r['vocab']} | {r['method']} | {r['median_ms']:.3f} | "
                     f"[{r['min_ms']:.3f}, {r['max_ms']:.3f}] | {r['floor_ms']:.3f} | "
                     f"{r['floor_ratio']:.0%} | {r['bandwidth_bytes_per_s'] / 1e9:.0f} | "
                     f"{r['peak_extra_bytes'] / GiB:.3f} | {r['loss_rel_err']:.1e} |")
    lines += ["", f"## Linear + loss, fwd+bwd, bf16, hidden {result['hidden']}", "",
              "| tokens | vocab | method | median ms | [min, max] | floor ms | floor/time | "
              "TFLOP/s | extra beyond grads GiB | loss rel diff vs ours |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["linear"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['tokens']} | {r['vocab']} | {r['method']} | {r.get('status')} "
                         f"| | {r['floor_ms']:.2f} | | | | |")
            continue
        lines.append(f"| {r['tokens']} | {r['vocab']} | {r['method']} | {r['median_ms']:.2f} | "
                     f"[{r['min_ms']:.2f}, {r['max_ms']:.2f}] | {r['floor_ms']:.2f} | "
                     f"{r['floor_ratio']:.0%} | {r['tflop_per_s']:.0f} | "
                     f"{r['peak_extra_bytes'] / GiB:.3f} | {r['loss_rel_diff_vs_ours']:.1e} |")
    lines += ["", "## Targets (8192 tokens x 128256 vocab)", ""]
    lines += [f"- {t}: {v}" for t, v in result["targets"]] or ["- (shape not run)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--quick", action="store_true", help="8192 tokens, 2 vocab sizes")
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--skip-linear", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("masked token loss benchmark: needs a CUDA device")
    started = time.time()
    device = torch.cuda.get_device_name()
    tokens_list = [8192] if args.quick else [8192, 16384]
    vocabs = [32768, 128256] if args.quick else [32768, 128256, 151936, 262144]

    t0 = time.time()
    cuda_ext = _extension.has_cuda_kernel()
    print(f"CUDA extension: {'built' if cuda_ext else 'unavailable'} ({time.time() - t0:.0f} s)")
    found = peers()
    ceil = ceilings()
    print(f"ceilings: copy {ceil['copy_bytes_per_s'] / 1e12:.2f} TB/s, "
          f"matmul {ceil['matmul_flop_per_s'] / 1e12:.0f} TFLOP/s", flush=True)
    compiled = torch.compile(lambda x, y: F.cross_entropy(x.float(), y, reduction="sum"),
                             dynamic=True)
    ce_rows, lin_rows = [], []
    for tokens in tokens_list:
        for vocab in vocabs:
            ce_rows += bench_ce(tokens, vocab, found, compiled, ceil)
    if not args.skip_linear:
        for tokens in tokens_list:
            for vocab in vocabs:
                lin_rows += bench_linear(tokens, vocab, args.hidden, found, ceil)
    result = {
        "device": device, "torch": torch.__version__, "triton": triton.__version__,
        "mbridge_kernels": mbridge_kernels.__version__, "python": platform.python_version(),
        "cuda_extension": cuda_ext, "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python3 " + " ".join(sys.argv), "hidden": args.hidden,
        "peers": {"liger": found["liger"][0], "cce": found["cce"][0]},
        "ceilings": ceil, "loss": ce_rows, "linear": lin_rows,
        "targets": targets(ce_rows, lin_rows), "wall_s": time.time() - started,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
    name = f"masked_token_loss{'-quick' if args.quick else ''}-{slug}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out / name}.json/.md in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
