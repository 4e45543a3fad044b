"""A bf16/fp16 run rehearsed on a CPU computes its matmuls in fp32 where the CPU is slow at them.

A CPU without native low-precision kernels (AVX512-BF16 / AMX for bf16, AVX512-FP16 / AMX-FP16
for fp16) multiplies them many times slower than fp32 (bf16 14x on one machine, fp16 6x on
another; a Llama-3-vocabulary fp16 rehearsal step 12.5 s instead of 2.5 s). Rather than train a different
model, mbridge keeps every tensor in the dtype the config asks for (bf16 parameters, fp32 main
parameters in the optimizer, bf16 activations) and widens only the arithmetic of matmuls and
attention (``mbridge_models.runtime.compute_in_fp32``), as a GPU's tensor cores do. So the model,
the optimizer and every checkpoint are exactly those of the same run on a GPU, and a checkpoint
moves between the two unchanged, optimizer state included.

``dist.cpu_compute_dtype`` chooses, on a CPU only (inert with CUDA):

* ``"auto"`` (default): fp32 arithmetic for a low-precision dtype this CPU has no native kernels
  for, the configured dtype where it has them;
* ``"fp32"``: always fp32 arithmetic for bf16/fp16 matmuls;
* ``"keep"``: the CPU's own bf16/fp16 kernels, for numerics checks of them.
"""

from __future__ import annotations

import torch

from mbridge_models import runtime

POLICIES = ("auto", "fp32", "keep")
FIELD = "dist.cpu_compute_dtype"


def requested_dtype(model) -> torch.dtype | None:
    """The low-precision dtype a (finalized) model config computes in, None for fp32."""
    if getattr(model, "bf16", False):
        return torch.bfloat16
    if getattr(model, "fp16", False):
        return torch.float16
    return None


def widened_dtype(policy: str, dtype: torch.dtype | None) -> torch.dtype | None:
    """The dtype whose matmuls this process computes in fp32 under ``policy`` (None: none)."""
    if dtype is None or not runtime.is_active() or policy == "keep":
        return None
    if policy == "fp32" or not runtime.native_matmul(dtype):
        return dtype
    return None


def configure(cfg) -> torch.dtype | None:
    """Set this run's CPU arithmetic (after the CPU runtime is active) and, when it widens,
    say so in one line on rank 0. Returns the widened dtype or None."""
    dtype = widened_dtype(getattr(cfg.dist, "cpu_compute_dtype", "auto"),
                          requested_dtype(cfg.model))
    runtime.compute_in_fp32([dtype] if dtype is not None else [])
    if dtype is not None and _rank() == 0:
        name = str(dtype).removeprefix("torch.")
        asked = cfg.mixed_precision if isinstance(cfg.mixed_precision, str) else name
        print(f" CPU: {name} matmuls compute in fp32 for speed (the config asks for {asked}; "
            f"parameters and checkpoints stay {name}); {FIELD}=keep keeps {name} arithmetic",
              flush=True)
    return dtype


def reset() -> None:
    """Back to the CPU's own arithmetic (at the end of a run)."""
    runtime.compute_in_fp32()


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
