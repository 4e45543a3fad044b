"""The fused masked token loss on a CPU (its C++ op: loss and gradient in one pass over the
logits) beside torch's cross-entropy forward + backward, fp32 and bf16.

    uv run python benchmarks/cpu_loss.py --out benchmarks/results [--repeats 7]

Shapes: 2048 x 2048 (the quickstart model's loss: 16 x 128 tokens, vocabulary 2048) and
512 x 128256 (Llama 3's vocabulary). Median and min-max of --repeats calls after a warm-up;
the floor is the bytes the op must move (read the logits, write the gradient) over the copy
bandwidth measured in the same run (``torch.Tensor.copy_`` of 256 MiB). Writes
<out>/cpu_loss-cpu<N>.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import commit, write_json, write_text  # noqa: E402

SHAPES = [(2048, 2048, torch.float32), (512, 128256, torch.float32),
          (512, 128256, torch.bfloat16)]


def timed(fn, repeats: int) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return times


def copy_gbps() -> float:
    src = torch.empty(256 << 20, dtype=torch.uint8)
    dst = torch.empty_like(src)
    best = min(timed(lambda: dst.copy_(src), 5))
    return 2 * src.numel() / best / 1e9  # read + write


def candidates(logits, labels):
    from mbridge_kernels import token_loss_sum

    leaf = logits.detach().clone().requires_grad_(True)

    def ours():
        token_loss_sum(leaf, labels, backend="cpp")[0].backward()
        leaf.grad = None

    def torch_ce():
        F.cross_entropy(leaf, labels, reduction="sum").backward()
        leaf.grad = None

    return {"ours (cpp)": ours, "torch cross_entropy": torch_ce}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    bandwidth = copy_gbps()
    rows = []
    for tokens, vocab, dtype in SHAPES:
        logits = torch.randn(tokens, vocab, dtype=dtype)
        labels = torch.randint(0, vocab, (tokens,))
        floor = 2 * logits.numel() * logits.element_size() / (bandwidth * 1e9)
        for name, fn in candidates(logits, labels).items():
            times = timed(fn, args.repeats)
            median = statistics.median(times)
            rows.append({"shape": f"{tokens} x {vocab}", "dtype": str(dtype).split(".")[1],
                         "what": name, "ms_median": median * 1e3, "ms_min": min(times) * 1e3,
                         "ms_max": max(times) * 1e3, "m_logits_per_s": tokens * vocab / median
                         / 1e6, "x_floor": median / floor})
            print(rows[-1], flush=True)
    cores = os.cpu_count()
    command = "uv run python benchmarks/cpu_loss.py"
    result = {"device": f"CPU, {cores} cores", "commit": commit(), "command": command,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "copy_gbps": bandwidth, "rows": rows}
    lines = [f"# Fused masked token loss on the CPU (fwd + grad), {cores} cores", "",
             f"commit {result['commit']}; `{command}`; torch {torch.__version__}, "
             f"{result['threads']} threads; copy bandwidth {bandwidth:.1f} GB/s (floor = read "
             "the logits + write the gradient at that rate)", "",
             "| shape | dtype | what | ms (median, min-max) | M logits/s | x floor |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['shape']} | {r['dtype']} | {r['what']} | {r['ms_median']:.1f} "
              f"({r['ms_min']:.1f}-{r['ms_max']:.1f}) | {r['m_logits_per_s']:.0f} | "
              f"{r['x_floor']:.1f} |" for r in rows]
    write_json(args.out / f"cpu_loss-cpu{cores}.json", result)
    write_text(args.out / f"cpu_loss-cpu{cores}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
