"""The adapter arithmetic: the one place a fused LoRA kernel would plug in.

mbridge-kernels has no LoRA kernel yet, so these are plain PyTorch: two thin GEMMs through the
rank-r bottleneck (``B @ A`` is never formed in the forward). The product is split in two because
tensor parallelism may communicate in the bottleneck (see adapters). A fused kernel (dropout +
down-projection, or up-projection + add into the base output) would replace ``down`` / ``up``
with the same signatures, and these stay its reference and test oracle (DESIGN.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def down(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``x A^T`` for x [..., in], A [r, in] -> [..., r]."""
    return F.linear(x, a)


def up(h: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * h B^T`` for h [..., r], B [out, r] -> [..., out]."""
    return F.linear(h, b) * scale


def delta_weight(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * B @ A`` in float32 (merging and DoRA's norms need it exact)."""
    return scale * (b.float() @ a.float())
