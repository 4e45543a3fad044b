"""Masked token loss over a vocabulary split across tensor-parallel ranks.

Each rank holds logits[:, vocab_start : vocab_start + V_local]. Only per-token statistics cross
ranks: one all-reduce(MAX) of the row maxima, then one all-reduce(SUM) of [sum-exp, target
logit, row sum] (row sum only with label smoothing). Every rank then knows each row's global
log-sum-exp and returns the same ``(loss_sum, num_tokens)``; the backward is local to the shard
(softmax from the global log-sum-exp) and needs no communication. Semantics as in
:mod:`mbridge_kernels.reference`, with V the full vocabulary size.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from . import token_loss as mtl
from .reference import loss_from_stats, loss_gradient, token_weights


def _global_stats(x: torch.Tensor, labels: torch.Tensor, vocab_start: int, smoothing: bool,
                  group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lse, target logit, row sum) of the full rows, from the local fp32 shard ``x``."""
    row_max = x.max(dim=-1).values
    dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
    local = labels - vocab_start
    in_shard = (local >= 0) & (local < x.shape[-1])
    target = x.gather(-1, torch.where(in_shard, local, 0).unsqueeze(-1)).squeeze(-1)
    stats = [torch.exp(x - row_max.unsqueeze(-1)).sum(dim=-1),
             torch.where(in_shard, target, torch.zeros_like(target))]
    if smoothing:
        stats.append(x.sum(dim=-1))
    packed = torch.stack(stats)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
    lse = row_max + torch.log(packed[0])
    row_sum = packed[2] if smoothing else torch.zeros_like(lse)
    return lse, packed[1], row_sum


class _VocabParallelLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shard, labels, weights, vocab_start, vocab_size, group, ignore_index,
                eps, z):
        x = shard.detach().reshape(-1, shard.shape[-1]).float()
        lse, target, row_sum = _global_stats(x, labels, vocab_start, eps != 0.0, group)
        loss = loss_from_stats(lse, target, row_sum, vocab_size=vocab_size,
                               label_smoothing=eps, z_loss_weight=z)
        w = token_weights(labels, weights, ignore_index, torch.float32)
        ctx.save_for_backward(shard, labels, w, lse)
        ctx.args = (vocab_start, vocab_size, eps, z)
        return torch.where(w != 0, w * loss, torch.zeros_like(loss)).sum()

    @staticmethod
    def backward(ctx, grad_output):
        shard, labels, w, lse = ctx.saved_tensors
        vocab_start, vocab_size, eps, z = ctx.args
        x = shard.reshape(-1, shard.shape[-1]).float()
        g = loss_gradient(x, labels - vocab_start, lse, w, vocab_size=vocab_size,
                          label_smoothing=eps, z_loss_weight=z) * grad_output.float()
        return g.to(shard.dtype).view(shard.shape), None, None, None, None, None, None, None, None


def vocab_parallel_token_loss_sum(
    logits_shard: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    *,
    vocab_start: int,
    vocab_size: int,
    group: dist.ProcessGroup | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    z_loss_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss_sum, num_tokens) of the full-vocabulary loss, from this rank's shard.

    logits_shard: [..., V_local], columns ``vocab_start .. vocab_start + V_local - 1`` of the
    ``vocab_size``-wide logits (shards may differ in width); labels are global vocabulary ids.
    Must be called by every rank of ``group``. The shard statistics are computed in fp32
    (a shard-sized fp32 temporary; the backward recomputes the softmax from the saved shard).
    """
    if logits_shard.shape[:-1] != labels.shape:
        raise ValueError(f"vocab_parallel_token_loss_sum: labels {tuple(labels.shape)} do not"
                         f" match logits {tuple(logits_shard.shape)} without the vocab dimension")
    if not 0 <= vocab_start <= vocab_size - logits_shard.shape[-1]:
        raise ValueError(f"vocab_parallel_token_loss_sum: shard [{vocab_start}, "
                         f"{vocab_start + logits_shard.shape[-1]}) is outside vocab_size "
                         f"{vocab_size}")
    labels_, weights, num_tokens = mtl.prepare(labels, loss_mask, ignore_index)
    loss_sum = _VocabParallelLoss.apply(logits_shard, labels_, weights, int(vocab_start),
                                        int(vocab_size), group, ignore_index,
                                        float(label_smoothing), float(z_loss_weight))
    return loss_sum, num_tokens
