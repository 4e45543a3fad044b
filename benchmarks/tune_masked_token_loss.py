"""Sweep the Triton loss kernel's launch parameters on the GPU at hand (in place, bf16).

    PYTHONPATH=/tmp/site python3 benchmarks/tune_masked_token_loss.py

Prints, per shape, the fastest (BLOCK, num_warps, programs per SM) against the bandwidth floor
measured in the same run; the heuristic in mbridge_kernels._triton_loss is set from this.
"""

import itertools

import torch
from triton.testing import do_bench

from mbridge_kernels import _triton_loss


def main() -> None:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    src = torch.empty(2**29, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    bandwidth = 2 * src.numel() / (do_bench(lambda: dst.copy_(src), rep=200) * 1e-3)
    del src, dst
    print(f"{torch.cuda.get_device_name()}: {sms} SMs, copy {bandwidth / 1e12:.2f} TB/s")
    for tokens, vocab in [(8192, 32768), (8192, 128256), (8192, 151936)]:
        logits = torch.randn(tokens, vocab, device="cuda", dtype=torch.bfloat16)
        labels = torch.randint(0, vocab, (tokens,), device="cuda")
        floor_ms = 2 * logits.numel() * 2 / bandwidth * 1e3
        results = []
        for block, warps, per_sm in itertools.product((4096, 8192, 16384), (4, 8, 16),
                                                      (1, 2, 4, 8)):
            def run():
                _triton_loss.loss_forward(logits, labels, None, logits, ignore_index=-100,
                                          label_smoothing=0.0, z_loss_weight=0.0,
                                          block_size=block, num_warps_override=warps,
                                          programs_override=sms * per_sm)
            ms = do_bench(run, warmup=10, rep=60)
            results.append((ms, block, warps, per_sm))
        results.sort()
        default_ms = do_bench(lambda: _triton_loss.loss_forward(
            logits, labels, None, logits, ignore_index=-100, label_smoothing=0.0,
            z_loss_weight=0.0), warmup=10, rep=60)
        print(f"tokens {tokens} vocab {vocab}: floor {floor_ms:.3f} ms, "
              f"default {default_ms:.3f} ms ({floor_ms / default_ms:.0%} of floor)")
        for ms, block, warps, per_sm in results[:6]:
            print(f"  {ms:.3f} ms ({floor_ms / ms:.0%})  BLOCK {block} warps {warps} "
                  f"programs/SM {per_sm}")
        print(f"  worst {results[-1][0]:.3f} ms: {results[-1][1:]}")
        del logits


if __name__ == "__main__":
    main()
