"""The stock forward step for GPT-style models (pretraining, fine-tuning, packed sequences).

``forward_step(state, data_iterator, model)`` reads one micro-batch, runs the model to logits
and returns ``partial(masked_token_loss, loss_mask, labels=labels)``: the loss is computed by
the fused kernel of mbridge-kernels (vocab-parallel when TP > 1) instead of megatron's fp32
cross entropy.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from mbridge_models.runtime import training_device
from mbridge_train.losses import masked_token_loss

BATCH_KEYS = ("tokens", "labels", "loss_mask", "position_ids")


def get_batch(data_iterator, device: torch.device | None = None) -> dict[str, Any]:
    """Next micro-batch as a dict of tensors on ``device`` (the model's device by default)."""
    batch = next(data_iterator)
    if not isinstance(batch, dict):
        raise TypeError(f"the GPT step expects dict batches with {', '.join(BATCH_KEYS)}; "
                        f"got {type(batch).__name__}")
    missing = [k for k in ("tokens", "labels") if k not in batch]
    if missing:
        raise KeyError(f"batch lacks {', '.join(missing)} (has {', '.join(sorted(batch))})")
    device = device or training_device()
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def packed_seq_params(batch: dict[str, Any]):
    """PackedSeqParams (THD layout) from a packed micro-batch's ``cu_seqlens``, else None.

    Packed micro-batches hold one pack (micro_batch_size 1); ``cu_seqlens`` may be padded with
    -1 after the last boundary (``cu_seqlens_argmin`` then says where the real ones stop).
    """
    cu = batch.get("cu_seqlens")
    if cu is None:
        return None
    from megatron.core.packed_seq_params import PackedSeqParams

    if cu.dim() == 2:
        if cu.size(0) != 1:
            raise ValueError("packed sequences need micro_batch_size=1 (one pack per micro-batch)")
        cu = cu[0]
    if "cu_seqlens_argmin" in batch:
        cu = cu[: int(batch["cu_seqlens_argmin"].reshape(-1)[0])]
    else:
        cu = cu[cu >= 0]
    cu = cu.to(torch.int32)
    lengths = cu[1:] - cu[:-1]
    max_len = int(batch["max_seqlen"].reshape(-1)[0]) if "max_seqlen" in batch else int(
        lengths.max())
    return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu,
                           max_seqlen_q=max_len, max_seqlen_kv=max_len)


def forward_step(state, data_iterator, model, return_schedule_plan: bool = False):
    """Megatron Bridge's forward-step contract: returns (output, loss_func)."""
    if return_schedule_plan:
        raise NotImplementedError("return_schedule_plan (MoE all-to-all overlap schedule plans) "
                                  "is not supported by mbridge's GPT step")
    batch = get_batch(data_iterator)
    tokens, labels = batch["tokens"], batch["labels"]
    loss_mask = batch.get("loss_mask")
    if loss_mask is None:
        loss_mask = torch.ones_like(labels, dtype=torch.float)
    position_ids = batch.get("position_ids")
    if position_ids is None:
        position_ids = torch.arange(tokens.size(1), device=tokens.device).expand_as(tokens)
    logits = model(tokens, position_ids, _attention_mask(state, batch),
                   packed_seq_params=packed_seq_params(batch))
    return logits, partial(masked_token_loss, loss_mask, labels=labels)


def _attention_mask(state, batch: dict[str, Any]):
    """The batch's mask when it is more than causal (documents masked from each other), else None:
    the model's causal mask type is the same thing, and SDPA runs its flash kernels only when no
    explicit mask is passed."""
    dataset = getattr(getattr(state, "cfg", None), "dataset", None)
    if dataset is not None and not getattr(dataset, "reset_attention_mask", False):
        return None
    return batch.get("attention_mask")
