"""The adapter arithmetic of the unfused path, and which path LoRA layers take.

LoRA layers run through `mbridge_kernels.lora_linear` (base GEMM + adapter in one op per rank,
see `mbridge_peft.fused`) whenever the layer allows it; ``lora_backend`` is its backend:
"auto" (Triton on CUDA, the plain-PyTorch reference elsewhere), "triton", "reference", or
"off" for the unfused path below everywhere. The unfused path (DoRA, "post" dropout, TE
layers, ...) is two thin GEMMs through the rank-r bottleneck (``B @ A`` is never formed in the
forward), split in two because tensor parallelism may communicate in the bottleneck (see
adapters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

lora_backend = "auto"


def down(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``x A^T`` for x [..., in], A [r, in] -> [..., r]."""
    return F.linear(x, a)


def up(h: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * h B^T`` for h [..., r], B [out, r] -> [..., out]."""
    return F.linear(h, b) * scale


def delta_weight(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * B @ A`` in float32 (merging and DoRA's norms need it exact)."""
    return scale * (b.float() @ a.float())
