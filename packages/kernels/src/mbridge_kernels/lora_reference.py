"""Plain-PyTorch LoRA linear: the fallback of `lora_linear` and the test oracle.

``y = x W^T (+ bias) + scale * dropout(x) A^T B^T`` with autograd deriving every gradient (W is
used as given: frozen or not). Layouts (see `mbridge_kernels.lora`): the adapter is G blocks,
``A = [A_0; ...; A_{G-1}]`` ([G*r, in]) and B [out, r] whose row i belongs to block
``row_groups[i]``: output row i receives ``scale * dropout(x) A_g^T B[i]^T`` for its block g only.
G = 1 is the plain (dense) LoRA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dropout_mask_reference(shape, p: float, generator: torch.Generator | None = None,
                           device=None) -> torch.Tensor:
    """A keep mask (True = kept) with keep probability ``1 - p`` from torch's RNG."""
    return torch.rand(shape, generator=generator, device=device) >= p


def lora_linear_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float,
                          dropout_p: float = 0.0, *, mask: torch.Tensor | None = None,
                          generator: torch.Generator | None = None,
                          row_groups: torch.Tensor | None = None) -> torch.Tensor:
    """The LoRA linear by composition. ``mask`` (bool, x's shape) fixes the dropout draw;
    without it a mask is drawn from ``generator`` (or torch's default RNG) when ``dropout_p > 0``.
    """
    y = F.linear(x, weight, bias)
    if dropout_p > 0.0:
        if mask is None:
            mask = dropout_mask_reference(x.shape, dropout_p, generator, x.device)
        xd = x * mask.to(x.dtype) * (1.0 / (1.0 - dropout_p))
    else:
        xd = x
    rank = lora_b.shape[1]
    groups = lora_a.shape[0] // rank
    if groups == 1:
        return y + scale * F.linear(F.linear(xd, lora_a), lora_b)
    if row_groups is None:
        raise ValueError("lora_linear_reference: row_groups is needed when lora_a holds "
                         f"{groups} blocks of rank {rank}")
    delta = torch.zeros_like(y)
    for g in range(groups):
        rows = (row_groups == g).nonzero().flatten()
        block = F.linear(F.linear(xd, lora_a[g * rank:(g + 1) * rank]), lora_b[rows])
        delta = delta.index_add(-1, rows, block)
    return y + scale * delta
