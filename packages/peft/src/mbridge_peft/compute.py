"""The low-rank product ``scale * B (A x)``: the one place a fused LoRA kernel would plug in.

mbridge-kernels has no LoRA kernel yet, so this is the plain PyTorch path (two GEMMs through the
rank-``r`` bottleneck, never materialising ``B @ A``). A fused kernel would replace
``low_rank_product`` with the same signature and this function stays its reference and test
oracle (DESIGN.md: every fused kernel has a plain-PyTorch reference beside it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def low_rank_product(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * x A^T B^T`` for x [..., in], A [r, in], B [out, r]."""
    return F.linear(F.linear(x, a), b) * scale


def down(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``x A^T``: the first half, for layouts that communicate in the rank-r bottleneck."""
    return F.linear(x, a)


def up(h: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * h B^T``: the second half."""
    return F.linear(h, b) * scale


def delta_weight(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale * B @ A`` in float32 (merging and DoRA's norms need it exact)."""
    return scale * (b.float() @ a.float())
