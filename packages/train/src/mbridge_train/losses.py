"""The language-model loss of the forward steps (``gpt_step``), in the token-aware pattern of
the loss contract (``loss_contract``: what is reported and how it is reduced).

``masked_token_loss`` is Megatron Bridge's training loss; the kernels it calls are
mbridge-kernels' ``token_loss_sum`` family, which return (sum, count) only.
"""

from __future__ import annotations

import torch

import mbridge_kernels
from mbridge_train.loss_contract import LM_LOSS, token_mean


def masked_token_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor,
                      labels: torch.Tensor | None = None):
    """Token-aware loss pattern ``(loss_sum, num_tokens, {LM_LOSS: token_mean(loss_sum,
    num_tokens)})``.

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
    return loss_sum, num_tokens, {LM_LOSS: token_mean(loss_sum, num_tokens)}


def logits_loss(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor | None):
    """(loss_sum, num_tokens) over the counted tokens, from full or vocab-sharded logits."""
    from megatron.core import parallel_state

    tp = (parallel_state.get_tensor_model_parallel_world_size()
          if parallel_state.model_parallel_is_initialized() else 1)
    if tp == 1:
        return mbridge_kernels.token_loss_sum(logits, labels, loss_mask)
    rank = parallel_state.get_tensor_model_parallel_rank()
    local = logits.size(-1)
    return mbridge_kernels.vocab_parallel_token_loss_sum(
        logits, labels, loss_mask, vocab_start=rank * local, vocab_size=local * tp,
        group=parallel_state.get_tensor_model_parallel_group())
