"""Loss functions for forward steps, and the reduction of what they report.

A forward step's loss function returns one of the patterns megatron-core's schedule accepts:
``(loss, metadata)``, ``(loss, num_tokens, metadata)`` (token-aware), or anything with
``collect_non_loss_data=True`` (inference). Metadata values are either a scalar or a
``[value_sum, count]`` pair; ``reduce_reported`` turns the per-micro-batch dicts into numbers
averaged over micro-batches and data-parallel ranks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

import mbridge_kernels

LM_LOSS = "lm loss"


def masked_token_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor,
                      labels: torch.Tensor | None = None):
    """Token-aware loss pattern ``(loss_sum, num_tokens, {"lm loss": [loss_sum, num_tokens]})``.

    ``output_tensor`` is either per-token losses ([b, s], what megatron's GPTModel returns when
    given labels), or logits ([b, s, V_local]) when ``labels`` is given: then the fused kernel of
    mbridge-kernels computes the loss without materialising fp32 log-probabilities (the
    vocab-parallel variant when the logits are sharded over tensor-parallel ranks).
    """
    if labels is None:
        mask = loss_mask.reshape(-1).float()
        loss_sum = torch.sum(output_tensor.reshape(-1).float() * mask)
        num_tokens = mask.sum()
    else:
        loss_sum, num_tokens = logits_loss(output_tensor, labels, loss_mask)
    num_tokens = num_tokens.detach().to(torch.int)
    report = torch.stack([loss_sum.detach().clone().float(), num_tokens.float()])
    return loss_sum, num_tokens, {LM_LOSS: report}


def logits_loss(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor | None):
    """(loss_sum, num_tokens) over the counted tokens, from full or vocab-sharded logits."""
    from megatron.core import parallel_state

    tp = (parallel_state.get_tensor_model_parallel_world_size()
          if parallel_state.model_parallel_is_initialized() else 1)
    if tp == 1:
        return mbridge_kernels.masked_token_loss(logits, labels, loss_mask)
    rank = parallel_state.get_tensor_model_parallel_rank()
    local = logits.size(-1)
    return mbridge_kernels.vocab_parallel_masked_token_loss(
        logits, labels, loss_mask, vocab_start=rank * local, vocab_size=local * tp,
        group=parallel_state.get_tensor_model_parallel_group())


def reduce_reported(reported: Sequence[Mapping[str, object]],
                    group: torch.distributed.ProcessGroup | None = None) -> dict[str, float]:
    """Average each reported value over micro-batches, then over the ranks of ``group``.

    A ``[sum, count]`` pair is summed on both parts before dividing (an exact per-token mean
    however tokens are spread); a scalar is averaged uniformly.
    """
    if not reported:
        return {}
    names = list(reported[0])
    pairs, scalars = [], []
    for name in names:
        values = [torch.as_tensor(r[name], dtype=torch.float64).detach().cpu().reshape(-1)
                  for r in reported]
        if values[0].numel() == 2:
            pairs.append((name, torch.stack(values).sum(0)))
        elif values[0].numel() == 1:
            scalars.append((name, torch.cat(values).mean().reshape(1)))
        else:
            raise ValueError(f"reported value {name!r} must be a scalar or a [sum, count] pair, "
                             f"got {values[0].numel()} numbers")
    flat = torch.cat([v for _, v in pairs] + [v for _, v in scalars]) if names else None
    world = 1
    if group is not None or (torch.distributed.is_available() and torch.distributed.is_initialized()):
        world = torch.distributed.get_world_size(group)
        if world > 1:
            flat = _all_reduce_sum(flat, group)
    out, offset = {}, 0
    for name, _ in pairs:
        total, count = flat[offset].item(), flat[offset + 1].item()
        out[name] = total / count if count else math.nan
        offset += 2
    for name, _ in scalars:
        out[name] = flat[offset].item() / world
        offset += 1
    return out


def _all_reduce_sum(values: torch.Tensor, group) -> torch.Tensor:
    backend = torch.distributed.get_backend(group)
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    values = values.to(device)
    torch.distributed.all_reduce(values, group=group)
    return values.cpu()
